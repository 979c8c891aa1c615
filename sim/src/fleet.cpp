#include "sim/fleet.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <list>
#include <memory>
#include <optional>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "runtime/admission_queue.h"
#include "runtime/clock.h"
#include "runtime/engine.h"

namespace myriad::sim {

Status validate(const FleetOptions& o) {
  auto bad = [](const std::string& m) { return make_error(ErrorCode::kInvalidArgument, m); };
  if (o.workers < 1) return bad("workers must be >= 1");
  if (!(o.report_interval_ms > 0)) return bad("report interval must be > 0 ms");
  if (o.host_cache_adapters < 1) return bad("host cache must hold >= 1 adapter");
  if (o.adapter_rank < 1 || o.adapter_rank > o.device.max_adapter_rank)
    return bad("adapter rank must be in [1, " + std::to_string(o.device.max_adapter_rank) + "]");
  int32_t grouped = 0;
  for (const WorkerGroup& g : o.groups) {
    if (g.count < 1 || g.slots < 0 || g.slots > 1024)
      return bad("a worker group needs count >= 1 and slots in [0, 1024]");
    grouped += g.count;
  }
  if (grouped > o.workers)
    return bad("worker groups hold " + std::to_string(grouped) + " workers, more than --workers " +
               std::to_string(o.workers));
  for (const WorkerFailure& f : o.failures)
    if (f.worker < 0 || f.worker >= o.workers || !(f.at_s >= 0))
      return bad("a failure names worker " + std::to_string(f.worker) + " at " + std::to_string(f.at_s) +
                 " s: the worker must exist and the time be >= 0");
  if (o.max_waiting < 1) return bad("max waiting must be >= 1");
  return validate_scheduler_config(o.engine);
}

const char* sim_admission_name(SimAdmission a) {
  switch (a) {
    case SimAdmission::kEngine: return "engine";
    case SimAdmission::kTimeslice: return "timeslice";
    case SimAdmission::kFifo: return "fifo";
  }
  return "?";
}

Result<SimAdmission> parse_sim_admission(std::string_view s) {
  if (s == "engine") return SimAdmission::kEngine;
  if (s == "timeslice") return SimAdmission::kTimeslice;
  if (s == "fifo") return SimAdmission::kFifo;
  return make_error(ErrorCode::kInvalidArgument,
                    "unknown admission '" + std::string(s) + "' (engine, timeslice or fifo)");
}

namespace {

enum class Kind : uint8_t { kArrival, kStepDone, kLoadDone, kFetchDone, kReport, kWake, kFailure, kAdmit };

struct Event {
  double t = 0;
  uint64_t seq = 0;  // ties: in the order scheduled
  Kind kind = Kind::kArrival;
  int32_t worker = -1;
  uint64_t arg = 0;
};
struct Later {
  bool operator()(const Event& a, const Event& b) const { return a.t > b.t || (a.t == b.t && a.seq > b.seq); }
};

class Fleet;

class SimSource final : public AdapterSource {
 public:
  SimSource(Fleet& fleet, int32_t worker) : fleet_(fleet), worker_(worker) {}
  void fetch(const AdapterId& id, FetchDone done) override;

 private:
  Fleet& fleet_;
  int32_t worker_;
};

class SimSink final : public EventSink {
 public:
  SimSink(Fleet& fleet, int32_t worker) : fleet_(fleet), worker_(worker) {}
  void on_event(const RequestEvent& e) override;

 private:
  Fleet& fleet_;
  int32_t worker_;
};

struct Worker {
  std::unique_ptr<SimExecutor> exec;
  ManualClock clock;
  std::unique_ptr<SimSource> source;
  std::unique_ptr<SimSink> sink;
  std::unique_ptr<Engine> engine;
  StepResult result;
  bool busy = false;  // a step is in flight
  bool dead = false;
  bool wake_pending = false;
  double load_event_at = -1;  // when a load-done event is scheduled for (-1: none)
  std::list<int32_t> lru;     // host-cached adapters, most recent first
  std::unordered_map<int32_t, std::list<int32_t>::iterator> in_host;
  std::unordered_map<uint64_t, std::pair<int32_t, FetchDone>> fetches;  // in flight, by fetch number
  std::unordered_set<RequestId> requests;                              // in flight here
  // The scheduler actor in front of the engine (null: SimAdmission::kEngine).
  std::unique_ptr<AdmissionQueue> admission;
  std::unordered_map<RequestId, Request> waiting;  // in the queue, not yet in the engine
  double admit_at = -1;                            // an admit event is scheduled then (-1: none)
};

struct Track {
  SimRequest req;
  int32_t worker = -1;
  uint32_t delivered = 0;  // tokens the client has
  double last_ms = 0;
};

class Fleet {
 public:
  Fleet(const FleetOptions& o, const WorkloadOptions& w) : o_(o), workload_(w), draws_(o.placement_seed) {}

  Result<SimResult> run(const Progress& progress);
  void fetch(int32_t w, const AdapterId& id, FetchDone done);
  void on_event(int32_t w, const RequestEvent& e);

 private:
  void push(Kind kind, double t, int32_t worker = -1, uint64_t arg = 0) {
    events_.push(Event{t, next_seq_++, kind, worker, arg});
  }
  void arrive(const SimRequest& r);
  void place_and_submit(RequestId id);
  void try_start(int32_t w);
  void admit(int32_t w);
  void schedule_admit(int32_t w, double at);
  void schedule_load_event(int32_t w);
  void report(int32_t w);
  void fail_worker(int32_t w);
  void finish(const Track& t, bool ok);
  const std::shared_ptr<const LoraWeights>& weights(int32_t adapter);
  // Made once per adapter: reports list them every 100 ms.
  const AdapterId& adapter_id(int32_t adapter) {
    AdapterId& id = ids_[size_t(adapter)];
    if (id.version == 0) {
      char name[16];  // (not "a" + std::to_string: GCC 12 warns falsely, -Wrestrict)
      std::snprintf(name, sizeof name, "a%d", adapter);
      id = AdapterId{"sim", name, 1};
    }
    return id;
  }
  static int32_t adapter_index(const AdapterId& id) { return std::stoi(id.name.substr(1)); }
  bool done() const { return arrivals_done_ && tracks_.empty(); }

  FleetOptions o_;
  Workload workload_;
  Rng draws_;
  double now_ = 0;
  uint64_t next_seq_ = 0;
  std::priority_queue<Event, std::vector<Event>, Later> events_;
  std::vector<Worker> workers_;
  std::vector<WorkerView> views_;
  std::unordered_map<RequestId, Track> tracks_;
  std::vector<std::shared_ptr<const LoraWeights>> weights_;  // per adapter, made on first use
  std::vector<AdapterId> ids_;                                // per adapter, made on first use
  RequestId next_id_ = 1;
  uint64_t next_fetch_ = 1;
  bool arrivals_done_ = false;
  // Results.
  SimResult r_;
  uint64_t placed_adapter_ = 0, placed_resident_ = 0;
  uint64_t slo_met_ = 0;
  double occupancy_sum_ = 0;
  uint64_t occupancy_samples_ = 0;
  std::vector<double> adapter_ttft_sum_;
  std::vector<uint32_t> adapter_ttft_count_;
  double last_end_ms_ = 0;
  double busy_ms_ = 0;
  uint64_t rows_ = 0;
};

void SimSource::fetch(const AdapterId& id, FetchDone done) { fleet_.fetch(worker_, id, std::move(done)); }
void SimSink::on_event(const RequestEvent& e) { fleet_.on_event(worker_, e); }

const std::shared_ptr<const LoraWeights>& Fleet::weights(int32_t adapter) {
  auto& w = weights_[size_t(adapter)];
  if (!w) {
    auto lw = std::make_shared<LoraWeights>();
    lw->name = adapter_id(adapter).to_string();
    lw->num_layers = 1;  // only the rank matters to the cost model: no tensors
    lw->modules.resize(kNumLinearModules);
    for (auto& m : lw->modules) {
      m.rank = o_.adapter_rank;
      m.scale = 1.0f;
    }
    w = std::move(lw);
  }
  return w;
}

// A host-cache hit answers at once; a miss reads the store (fetch_ms).
void Fleet::fetch(int32_t w, const AdapterId& id, FetchDone done) {
  Worker& wk = workers_[size_t(w)];
  const int32_t a = adapter_index(id);
  if (auto it = wk.in_host.find(a); it != wk.in_host.end()) {
    wk.lru.splice(wk.lru.begin(), wk.lru, it->second);
    done(weights(a));
    return;
  }
  const uint64_t n = next_fetch_++;
  wk.fetches.emplace(n, std::make_pair(a, std::move(done)));
  ++r_.fetches;
  push(Kind::kFetchDone, now_ + o_.cost.fetch_ms(o_.adapter_rank), w, n);
}

void Fleet::on_event(int32_t w, const RequestEvent& e) {
  auto it = tracks_.find(e.id);
  if (it == tracks_.end() || it->second.worker != w) return;  // a lost worker's late event
  Track& t = it->second;
  if (e.kind == EventKind::kToken) {
    if (e.index < t.delivered) return;  // a replaced request recomputing what the client has
    if (t.delivered == 0) {
      const double ttft = now_ - t.req.arrival_ms;
      r_.ttft_ms.record(ttft);
      r_.tenants[size_t(t.req.tenant)].ttft_ms.record(ttft);
      slo_met_ += ttft <= o_.slo_ttft_ms;
      if (t.req.adapter >= 0) {
        adapter_ttft_sum_[size_t(t.req.adapter)] += ttft;
        ++adapter_ttft_count_[size_t(t.req.adapter)];
      }
    } else {
      r_.itl_ms.record(now_ - t.last_ms);
    }
    t.last_ms = now_;
    ++t.delivered;
    ++r_.output_tokens;
    ++r_.tenants[size_t(t.req.tenant)].output_tokens;
    return;
  }
  if (!e.is_final()) return;
  const bool ok = e.kind == EventKind::kFinished &&
                  (e.reason == FinishReason::kLength || e.reason == FinishReason::kStop);
  Worker& wk = workers_[size_t(w)];
  wk.requests.erase(e.id);
  if (wk.admission) {
    // The released message: the queue decides again once this step is done
    // (not from inside the engine's complete_step).
    wk.admission->released(e.id);
    schedule_admit(w, now_);
  }
  finish(t, ok);
  tracks_.erase(it);
}

void Fleet::finish(const Track& t, bool ok) {
  if (ok) {
    ++r_.completed;
    ++r_.tenants[size_t(t.req.tenant)].completed;
    r_.e2e_ms.record(now_ - t.req.arrival_ms);
  } else {
    ++r_.failed;
  }
  last_end_ms_ = std::max(last_end_ms_, now_);
}

void Fleet::arrive(const SimRequest& req) {
  const RequestId id = next_id_++;
  ++r_.requests;
  ++r_.tenants[size_t(req.tenant)].requests;
  tracks_[id] = Track{req, -1, 0, 0};
  place_and_submit(id);
}

// Placement as the gateway does it, over the last reports plus what was
// placed since; then the worker's engine takes it (from the tokens the
// client has, for a request placed again).
void Fleet::place_and_submit(RequestId id) {
  Track& t = tracks_.at(id);
  Request request;
  request.id = id;
  if (t.req.adapter >= 0) request.adapters = {AdapterUse{adapter_id(t.req.adapter), 1.0f}};
  auto where = place(views_, request.adapters, o_.placement, draws_.next());
  if (!where) {
    finish(t, false);
    tracks_.erase(id);
    return;
  }
  const int32_t w = int32_t(where.value());
  WorkerView& view = views_[size_t(w)];
  if (!request.adapters.empty()) {
    ++placed_adapter_;
    placed_resident_ += affinity_tier(view, request.adapters) == 2;
  }
  ++view.placed_since_report;
  view.placed_tokens_since_report += t.req.prompt_tokens + t.req.max_tokens;
  request.prompt.assign(t.req.prompt_tokens, 1);
  request.resume_output.assign(t.delivered, 1);
  request.max_tokens = t.req.max_tokens;
  Worker& wk = workers_[size_t(w)];
  t.worker = w;
  if (wk.admission) {
    std::vector<std::string> versions;
    for (const AdapterUse& use : request.adapters) versions.push_back(use.id.to_string());
    const uint64_t tokens = request.prompt.size() + request.resume_output.size() + request.max_tokens;
    if (wk.admission->push(id, std::move(versions), tokens, now_) != AdmissionQueue::Push::kQueued) {
      finish(t, false);  // overloaded (the node's 429)
      tracks_.erase(id);
      return;
    }
    // As the worker does on the scheduler's prefetch: the adapter's bytes
    // come into host memory while the request waits for its set's turn.
    for (const AdapterUse& use : request.adapters) fetch(w, use.id, [](auto&&) {});
    wk.waiting.emplace(id, std::move(request));
    wk.requests.insert(id);
    admit(w);
    return;
  }
  wk.clock.set(now_);
  wk.exec->set_now(now_);
  auto ok = wk.engine->submit(std::move(request));
  if (!ok) {
    finish(t, false);
    tracks_.erase(id);
    return;
  }
  wk.requests.insert(id);
  try_start(w);
}

// The scheduler actor's decision: what may enter the engine goes in now;
// the next decision the queue asks for (a quantum's end) is scheduled.
void Fleet::admit(int32_t w) {
  Worker& wk = workers_[size_t(w)];
  if (wk.dead) return;
  wk.clock.set(now_);
  wk.exec->set_now(now_);
  const std::vector<uint64_t> in = wk.admission->admit(now_);  // a copy: a failed submit releases below
  for (uint64_t id : in) {
    auto it = wk.waiting.find(id);
    Request request = std::move(it->second);
    wk.waiting.erase(it);
    if (!wk.engine->submit(std::move(request))) {
      wk.admission->released(id);
      wk.requests.erase(id);
      finish(tracks_.at(id), false);
      tracks_.erase(id);
      schedule_admit(w, now_);
    }
  }
  const double at = wk.admission->next_decision_ms(now_);
  if (std::isfinite(at)) schedule_admit(w, at);
  try_start(w);
}

void Fleet::schedule_admit(int32_t w, double at) {
  Worker& wk = workers_[size_t(w)];
  if (wk.admit_at >= 0 && wk.admit_at <= at) return;
  wk.admit_at = at;
  push(Kind::kAdmit, at, w);
}

void Fleet::schedule_load_event(int32_t w) {
  Worker& wk = workers_[size_t(w)];
  const double end = wk.exec->next_load_end_ms();
  if (end < 0 || (wk.load_event_at >= 0 && wk.load_event_at <= end)) return;
  wk.load_event_at = end;
  push(Kind::kLoadDone, std::max(end, now_), w);
}

// Plans the worker's next step if it has work and none is in flight.
void Fleet::try_start(int32_t w) {
  Worker& wk = workers_[size_t(w)];
  if (wk.busy || wk.dead || !wk.engine->has_work()) return;
  wk.clock.set(now_);
  wk.exec->set_now(now_);
  const StepPlan& plan = wk.engine->plan_step(now_);
  if (plan.rows.empty()) {
    wk.result.clear();
    (void)wk.engine->complete_step(ok_status(), wk.result, now_);
    schedule_load_event(w);
    // Waiting for a load or a fetch: its event wakes the worker. Otherwise
    // (a quantum to run out) look again shortly.
    if (wk.exec->next_load_end_ms() < 0 && wk.fetches.empty() && wk.engine->has_work() && !wk.wake_pending) {
      wk.wake_pending = true;
      push(Kind::kWake, now_ + 1.0, w);
    }
    return;
  }
  Status st = wk.exec->step(plan, wk.result);
  if (!st.ok()) {
    (void)wk.engine->complete_step(st, wk.result, now_);
    return;
  }
  wk.busy = true;
  busy_ms_ += wk.result.device_ms;
  rows_ += plan.rows.size();
  push(Kind::kStepDone, now_ + wk.result.device_ms, w);
  schedule_load_event(w);
}

// What placement sees of worker w until its next report (WorkerLoad).
void Fleet::report(int32_t w) {
  Worker& wk = workers_[size_t(w)];
  WorkerView& v = views_[size_t(w)];
  const Scheduler& s = wk.engine->scheduler();
  v.pending_tokens = s.pending_tokens();
  v.queued = uint32_t(s.num_queued());
  if (wk.admission) {  // as the scheduler actor adds to the worker's report
    v.pending_tokens += wk.admission->waiting_tokens();
    v.queued += uint32_t(wk.admission->num_waiting());
  }
  v.running = uint32_t(s.num_running());
  v.placed_since_report = 0;
  v.placed_tokens_since_report = 0;
  v.resident.clear();
  int32_t occupied = 0;
  for (int32_t slot = 0; slot < s.config().num_slots; ++slot) {
    if (const AdapterId* id = s.slot_adapter(slot)) {
      v.resident.push_back(*id);
      ++occupied;
    }
  }
  v.host_cached.clear();
  for (int32_t a : wk.lru) v.host_cached.push_back(adapter_id(a));
  if (s.config().num_slots > 0) {
    occupancy_sum_ += double(occupied) / s.config().num_slots;
    ++occupancy_samples_;
  }
}

// The worker's process dies: placement skips it, and its requests go
// elsewhere from the tokens their clients have.
void Fleet::fail_worker(int32_t w) {
  Worker& wk = workers_[size_t(w)];
  if (wk.dead) return;
  wk.dead = true;
  views_[size_t(w)].draining = true;
  std::vector<RequestId> orphans(wk.requests.begin(), wk.requests.end());
  std::sort(orphans.begin(), orphans.end());
  wk.requests.clear();
  for (RequestId id : orphans) {
    ++r_.replaced;
    place_and_submit(id);
  }
}

Result<SimResult> Fleet::run(const Progress& progress) {
  const auto wall0 = std::chrono::steady_clock::now();
  const int32_t n = o_.workers;
  workers_.resize(size_t(n));
  views_.resize(size_t(n));
  weights_.resize(size_t(std::max(workload_.options().adapters, 0)));
  ids_.resize(weights_.size());
  r_.tenants.resize(std::max<size_t>(1, workload_.options().tenant_shares.size()));
  adapter_ttft_sum_.assign(weights_.size(), 0.0);
  adapter_ttft_count_.assign(weights_.size(), 0);
  SimExecutorOptions dev = o_.device;
  dev.num_adapter_slots = o_.engine.num_slots;
  dev.kv_num_blocks = o_.engine.num_kv_blocks;
  dev.kv_block_size = o_.engine.kv_block_size;
  size_t group = 0;
  int32_t left_in_group = o_.groups.empty() ? 0 : o_.groups[0].count;
  for (int32_t w = 0; w < n; ++w) {
    Worker& wk = workers_[size_t(w)];
    // This worker's slots and device: its group's, else the fleet's.
    SchedulerConfig engine_config = o_.engine;
    SimExecutorOptions worker_dev = dev;
    const CostModel* cost = &o_.cost;
    if (group < o_.groups.size()) {
      const WorkerGroup& g = o_.groups[group];
      engine_config.num_slots = worker_dev.num_adapter_slots = g.slots;
      cost = &g.cost;
      if (--left_in_group == 0 && ++group < o_.groups.size()) left_in_group = o_.groups[group].count;
    }
    wk.exec = std::make_unique<SimExecutor>(worker_dev, *cost);
    wk.source = std::make_unique<SimSource>(*this, w);
    wk.sink = std::make_unique<SimSink>(*this, w);
    auto engine = Engine::create(engine_config, *wk.exec, *wk.source, wk.clock, *wk.sink);
    if (!engine) return engine.error();
    wk.engine = std::move(engine).value();
    if (o_.admission != SimAdmission::kEngine) {
      const bool timeslice = o_.admission == SimAdmission::kTimeslice;
      AdmissionConfig a;
      a.num_slots = engine_config.num_slots;
      a.quantum_ms = engine_config.quantum_ms;
      a.timeslice = timeslice;
      a.max_waiting = o_.max_waiting;
      a.max_in_worker = o_.max_in_worker > 0 ? o_.max_in_worker
                                             : uint32_t(std::max(engine_config.max_running_seqs * (timeslice ? 2 : 4),
                                                                 timeslice ? 16 : 64));
      wk.admission = std::make_unique<AdmissionQueue>(a);
    }
    char id[24];
    std::snprintf(id, sizeof id, "sim/w%d", w);
    views_[size_t(w)].id = id;
    push(Kind::kReport, o_.report_interval_ms * (double(w) + 1) / n, w);  // staggered, as real reports are
  }
  for (const WorkerFailure& f : o_.failures) push(Kind::kFailure, f.at_s * 1000.0, f.worker);
  std::optional<SimRequest> pending = workload_.next();
  if (pending) push(Kind::kArrival, pending->arrival_ms);
  else arrivals_done_ = true;
  const double duration_ms = workload_.options().duration_s * 1000.0;
  const double give_up_ms = duration_ms + 3.6e6;  // a stuck fleet ends (its requests count as unfinished)
  double next_progress = 0.01;
  while (!events_.empty()) {
    const Event e = events_.top();
    events_.pop();
    if (e.t > give_up_ms) break;
    now_ = e.t;
    ++r_.events;
    switch (e.kind) {
      case Kind::kArrival:
        arrive(*pending);
        pending = workload_.next();
        if (pending) {
          push(Kind::kArrival, pending->arrival_ms);
        } else {
          arrivals_done_ = true;
        }
        if (progress && now_ >= next_progress * duration_ms) {
          progress(now_ / duration_ms);
          next_progress = std::floor(now_ / duration_ms * 100.0 + 1.0) / 100.0;
        }
        break;
      case Kind::kStepDone: {
        Worker& wk = workers_[size_t(e.worker)];
        if (wk.dead) break;
        wk.busy = false;
        wk.clock.set(now_);
        (void)wk.engine->complete_step(ok_status(), wk.result, now_);
        try_start(e.worker);
        break;
      }
      case Kind::kLoadDone: {
        Worker& wk = workers_[size_t(e.worker)];
        wk.load_event_at = -1;
        wk.exec->finish_loads(now_);
        schedule_load_event(e.worker);
        try_start(e.worker);
        break;
      }
      case Kind::kFetchDone: {
        Worker& wk = workers_[size_t(e.worker)];
        auto it = wk.fetches.find(e.arg);
        if (it == wk.fetches.end()) break;
        const int32_t a = it->second.first;
        FetchDone fdone = std::move(it->second.second);
        wk.fetches.erase(it);
        if (!wk.in_host.count(a)) {
          wk.lru.push_front(a);
          wk.in_host[a] = wk.lru.begin();
          if (wk.lru.size() > size_t(o_.host_cache_adapters)) {
            wk.in_host.erase(wk.lru.back());
            wk.lru.pop_back();
          }
        }
        fdone(weights(a));
        try_start(e.worker);
        break;
      }
      case Kind::kReport:
        if (!workers_[size_t(e.worker)].dead) report(e.worker);
        if (!done()) push(Kind::kReport, now_ + o_.report_interval_ms, e.worker);
        break;
      case Kind::kWake:
        workers_[size_t(e.worker)].wake_pending = false;
        try_start(e.worker);
        break;
      case Kind::kFailure:
        fail_worker(e.worker);
        break;
      case Kind::kAdmit: {
        Worker& wk = workers_[size_t(e.worker)];
        if (wk.admit_at != now_) break;  // superseded by an earlier one
        wk.admit_at = -1;
        admit(e.worker);
        break;
      }
    }
    if (done() && events_.empty()) break;
  }
  r_.unfinished = tracks_.size();
  r_.simulated_s = std::max(last_end_ms_, now_) / 1000.0;
  r_.throughput_tok_s = r_.simulated_s > 0 ? double(r_.output_tokens) / r_.simulated_s : 0.0;
  r_.slo_attainment = r_.completed ? double(slo_met_) / double(r_.completed) : 0.0;
  double sx = 0, sxx = 0;
  int32_t na = 0;
  for (size_t a = 0; a < adapter_ttft_sum_.size(); ++a) {
    if (adapter_ttft_count_[a] == 0 || adapter_ttft_sum_[a] <= 0) continue;
    const double x = double(adapter_ttft_count_[a]) / adapter_ttft_sum_[a];  // 1 / mean TTFT
    sx += x;
    sxx += x * x;
    ++na;
  }
  r_.jain_fairness = na > 0 ? sx * sx / (double(na) * sxx) : 1.0;
  for (const Worker& wk : workers_) {
    const EngineMetrics& m = wk.engine->metrics();
    r_.swaps += m.swaps;
    r_.slot_loads += m.slot_loads;
    r_.steps += m.steps;
    r_.preemptions += m.preemptions;
  }
  r_.slot_occupancy = occupancy_samples_ ? occupancy_sum_ / double(occupancy_samples_) : 0.0;
  r_.busy_share = r_.simulated_s > 0 ? busy_ms_ / (r_.simulated_s * 1000.0 * o_.workers) : 0.0;
  r_.rows_per_step = r_.steps ? double(rows_) / double(r_.steps) : 0.0;
  r_.affinity_hit_rate = placed_adapter_ ? double(placed_resident_) / double(placed_adapter_) : 0.0;
  r_.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  return r_;
}

}  // namespace

Result<SimResult> simulate(const FleetOptions& fleet, const WorkloadOptions& workload, const Progress& progress) {
  MYRIAD_TRY(validate(fleet));
  MYRIAD_TRY(validate(workload));
  Fleet f(fleet, workload);
  return f.run(progress);
}

std::vector<std::pair<std::string, std::string>> result_fields(const SimResult& r) {
  std::vector<std::pair<std::string, std::string>> out;
  auto field = [&](const char* key, double v, const char* fmt) {
    char buf[64];
    std::snprintf(buf, sizeof buf, fmt, v);
    out.emplace_back(key, buf);
  };
  auto count = [&](const char* key, uint64_t v) { field(key, double(v), "%.0f"); };
  auto ms = [&](const char* key, double v) { field(key, v, "%.3f"); };
  count("requests", r.requests);
  count("completed", r.completed);
  count("failed", r.failed);
  count("unfinished", r.unfinished);
  count("replaced", r.replaced);
  count("output_tokens", r.output_tokens);
  ms("simulated_s", r.simulated_s);
  field("throughput_tok_s", r.throughput_tok_s, "%.1f");
  ms("ttft_ms_p50", r.ttft_ms.quantile_ms(0.50));
  ms("ttft_ms_p90", r.ttft_ms.quantile_ms(0.90));
  ms("ttft_ms_p99", r.ttft_ms.quantile_ms(0.99));
  ms("itl_ms_p50", r.itl_ms.quantile_ms(0.50));
  ms("itl_ms_p90", r.itl_ms.quantile_ms(0.90));
  ms("itl_ms_p99", r.itl_ms.quantile_ms(0.99));
  ms("e2e_ms_p50", r.e2e_ms.quantile_ms(0.50));
  ms("e2e_ms_p99", r.e2e_ms.quantile_ms(0.99));
  field("slo_attainment", r.slo_attainment, "%.4f");
  field("jain_fairness", r.jain_fairness, "%.4f");
  count("swaps", r.swaps);
  field("swaps_per_s", r.simulated_s > 0 ? double(r.swaps) / r.simulated_s : 0.0, "%.3f");
  count("slot_loads", r.slot_loads);
  field("slot_loads_per_s", r.simulated_s > 0 ? double(r.slot_loads) / r.simulated_s : 0.0, "%.3f");
  count("fetches", r.fetches);
  count("steps", r.steps);
  count("preemptions", r.preemptions);
  field("slot_occupancy", r.slot_occupancy, "%.4f");
  field("busy_share", r.busy_share, "%.4f");
  field("rows_per_step", r.rows_per_step, "%.3f");
  field("affinity_hit_rate", r.affinity_hit_rate, "%.4f");
  count("events", r.events);
  field("wall_s", r.wall_s, "%.3f");
  return out;
}

std::string to_json(const SimResult& r) {
  std::string out = "{";
  for (const auto& [key, value] : result_fields(r)) {
    if (out.size() > 1) out += ", ";
    out += "\"" + key + "\": " + value;
  }
  if (r.tenants.size() > 1) {
    out += ", \"tenants\": [";
    for (size_t t = 0; t < r.tenants.size(); ++t) {
      const TenantResult& x = r.tenants[t];
      char buf[256];
      std::snprintf(buf, sizeof buf,
                    "%s{\"tenant\": %zu, \"requests\": %llu, \"completed\": %llu, \"output_tokens\": %llu, "
                    "\"ttft_ms_p50\": %.3f, \"ttft_ms_p99\": %.3f}",
                    t ? ", " : "", t, (unsigned long long)x.requests, (unsigned long long)x.completed,
                    (unsigned long long)x.output_tokens, x.ttft_ms.quantile_ms(0.5), x.ttft_ms.quantile_ms(0.99));
      out += buf;
    }
    out += "]";
  }
  return out + "}";
}

}  // namespace myriad::sim
