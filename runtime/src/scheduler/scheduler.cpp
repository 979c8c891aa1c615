#include "runtime/scheduler.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <string>

#include "runtime/request_validation.h"

namespace myriad {

namespace {
enum class SeqState : uint8_t { kQueued, kRunning, kPaused, kDone };
}  // namespace

struct Scheduler::Sequence {
  RequestId id = 0;
  AdapterState* adapter = nullptr;
  std::vector<int32_t> tokens;  // prompt + generated; [num_computed, size) not yet in the KV cache
  std::vector<int32_t> stop;
  std::vector<int32_t> blocks;  // KV block table
  std::array<float, kMaxAdaptersPerRow> weights{};  // mixing weight per member of its set
  SamplingParams sampling;
  uint32_t prompt_len = 0;
  uint32_t max_tokens = 0;
  uint32_t generated = 0;
  uint32_t num_computed = 0;
  LogitsRequest prompt_logits = LogitsRequest::kNone;
  uint32_t logits_reported = 0;  // prompt positions whose logits went out (a recompute does not repeat them)
  double submit_ms = 0.0;
  double first_admit_ms = -1.0;
  uint64_t order = 0;  // submission order (FIFO across adapters)
  SeqState state = SeqState::kDone;
  bool in_running = false;  // present in running_ (removed by compaction or pop)
  bool was_paused = false;  // paused once already: a later swap-out lets it finish (progress)
};

struct Scheduler::Member {
  enum class State : uint8_t { kFetching, kInHost, kLoading, kInSlot };
  AdapterId id;
  std::shared_ptr<const LoraWeights> weights;  // once fetched
  State state = State::kFetching;
  int32_t slot = -1;
  int32_t sets = 0;     // live sets naming it
  int32_t holders = 0;  // sets holding its slot (phase != Idle)
  double fetch_since_ms = 0.0;
};

struct Scheduler::AdapterState {
  std::vector<Member*> members;  // sorted by id; empty => base model
  std::vector<AdapterId> ids;    // the members' ids, for WaitingAdapter
  std::string key;               // "t/a@1+t/b@2"
  std::deque<Sequence*> queue;
  std::vector<Sequence*> paused;  // swapped out with pause_on_swap_out: KV kept; by submission order
  int32_t pins = 0;  // running sequences
  AdapterPhase phase = AdapterPhase::kIdle;
  double active_since_ms = 0.0;
  uint64_t active_steps = 0;  // schedule() calls it was Active in: >= 1 before a swap-out (progress when Q = 0)
  double waiting_since_ms = 0.0;
  uint64_t ticket = 0;  // != 0 while waiting for a slot: strict FIFO order
  bool is_base() const { return members.empty(); }
  bool fetched() const {
    for (const Member* m : members)
      if (m->state == Member::State::kFetching) return false;
    return true;
  }
  bool all_in_slot() const {
    for (const Member* m : members)
      if (m->state != Member::State::kInSlot) return false;
    return true;
  }
  bool has(const Member* m) const { return std::find(members.begin(), members.end(), m) != members.end(); }
  int32_t first_slot() const { return members.empty() ? -1 : members.front()->slot; }
  bool has_pending() const { return !queue.empty() || !paused.empty(); }
  // The submission order of its oldest queued or paused request.
  uint64_t oldest_order() const {
    uint64_t o = UINT64_MAX;
    if (!queue.empty()) o = queue.front()->order;
    if (!paused.empty()) o = std::min(o, paused.front()->order);
    return o;
  }
};

double starvation_bound_ms(const SchedulerConfig& c, int32_t num_adapters, int32_t max_prompt_plus_output,
                           int32_t max_output, double step_ms, int32_t load_steps) {
  int32_t g = c.max_tokens_per_step / c.max_running_seqs;
  if (c.max_prefill_chunk > 0) g = std::min(g, c.max_prefill_chunk);
  g = std::max(g, 1);
  const double s = std::ceil(double(max_prompt_plus_output) / g) + max_output;
  const double cycle = c.quantum_ms + (s + load_steps + 3) * step_ms;
  const double rounds = std::ceil(double(std::max(num_adapters, 1)) / std::max(c.num_slots, 1));
  return rounds * cycle + (load_steps + 1) * step_ms;
}

Result<std::unique_ptr<Scheduler>> Scheduler::create(const SchedulerConfig& config) {
  MYRIAD_TRY(validate_scheduler_config(config));
  return std::unique_ptr<Scheduler>(new Scheduler(config));
}

Scheduler::Scheduler(const SchedulerConfig& config)
    : config_(config), limits_(request_limits(config)), kv_(config.num_kv_blocks, config.kv_shuffle_seed) {
  g_ = config_.max_tokens_per_step / config_.max_running_seqs;
  if (config_.max_prefill_chunk > 0) g_ = std::min(g_, config_.max_prefill_chunk);
  g_ = std::max(g_, 1);
  base_ = std::make_unique<AdapterState>();
  base_->phase = AdapterPhase::kActive;
  base_->key = "";
  slots_.assign(size_t(config_.num_slots), nullptr);
  running_.reserve(size_t(config_.max_running_seqs));
  // The plan's arrays at their largest, so no step allocates: rows' block
  // tables are disjoint, so all of them hold at most the whole pool.
  out_.plan.rows.reserve(size_t(config_.max_running_seqs));
  out_.plan.tokens.reserve(size_t(config_.max_tokens_per_step));
  out_.plan.block_ids.reserve(size_t(config_.num_kv_blocks));
  events_.reserve(2 * size_t(config_.max_running_seqs));
  step_seqs_.reserve(size_t(config_.max_running_seqs));
  reserve_.reserve(size_t(config_.max_running_seqs) + 1);
}

Scheduler::~Scheduler() = default;

// ---------------------------------------------------------------- requests

Scheduler::Sequence* Scheduler::new_sequence() {
  if (!seq_free_.empty()) {
    Sequence* s = seq_free_.back();
    seq_free_.pop_back();
    return s;
  }
  seq_storage_.push_back(std::make_unique<Sequence>());
  return seq_storage_.back().get();
}

void Scheduler::recycle(Sequence* s) {
  s->tokens.clear();  // capacities kept: a recycled sequence allocates nothing
  s->stop.clear();
  s->blocks.clear();
  s->adapter = nullptr;
  s->state = SeqState::kDone;
  s->in_running = false;
  seq_free_.push_back(s);
}

Scheduler::Member* Scheduler::member_for(const AdapterId& id, double now_ms) {
  auto it = members_.find(id);
  if (it != members_.end()) return it->second.get();
  auto m = std::make_unique<Member>();
  m->id = id;
  m->fetch_since_ms = now_ms;
  Member* p = m.get();
  members_.emplace(id, std::move(m));
  fetches_.push_back(id);
  ++stats_.fetches;
  return p;
}

void Scheduler::forget_if_unused(Member& m) {
  if (m.sets == 0 && m.holders == 0 && m.slot < 0) members_.erase(m.id);  // destroys m
}

// The set of the request's adapters (created on first use), with `s`'s
// mixing weights in the set's member order.
Scheduler::AdapterState* Scheduler::set_for(const std::vector<AdapterUse>& adapters, Sequence& s) {
  std::array<const AdapterUse*, kMaxAdaptersPerRow> sorted{};
  const size_t n = adapters.size();
  for (size_t i = 0; i < n; ++i) sorted[i] = &adapters[i];
  std::sort(sorted.begin(), sorted.begin() + long(n), [](const AdapterUse* x, const AdapterUse* y) { return x->id < y->id; });
  std::string key;
  for (size_t i = 0; i < n; ++i) {
    if (i) key += '+';
    key += sorted[i]->id.to_string();
    s.weights[i] = sorted[i]->weight;
  }
  auto it = adapters_.find(key);
  if (it != adapters_.end()) return it->second.get();
  auto a = std::make_unique<AdapterState>();
  for (size_t i = 0; i < n; ++i) {
    Member* m = member_for(sorted[i]->id, now_ms_);
    ++m->sets;
    a->members.push_back(m);
    a->ids.push_back(m->id);
  }
  a->key = key;
  AdapterState* p = a.get();
  adapters_.emplace(std::move(key), std::move(a));
  live_.push_back(p);
  return p;
}

void Scheduler::mark_waiting(AdapterState& a, double now_ms) {
  if (a.is_base() || a.ticket != 0 || !a.has_pending() || !a.fetched()) return;
  if (a.phase != AdapterPhase::kIdle && a.phase != AdapterPhase::kDraining) return;
  a.ticket = next_ticket_++;
  a.waiting_since_ms = now_ms;
}

Result<RequestId> Scheduler::submit(Request request, double now_ms) {
  auto reject = [&](ErrorCode code, std::string msg) -> Error {
    ++stats_.rejected;
    return make_error(code, std::move(msg));
  };
  if (Status v = validate_request(request, limits_); !v.ok()) return reject(v.error().code, v.error().message);
  if (by_id_.count(request.id))
    return reject(ErrorCode::kInvalidArgument, "request id " + std::to_string(request.id) + " is already in flight");
  const size_t prompt_len = request.prompt.size();
  const int64_t total = int64_t(prompt_len) + request.max_tokens;
  const int64_t blocks = (total + config_.kv_block_size - 1) / config_.kv_block_size;
  const SamplingParams& sp = request.sampling;

  Sequence* s = new_sequence();
  now_ms_ = now_ms;
  AdapterState* a = request.adapters.empty() ? base_.get() : set_for(request.adapters, *s);
  s->id = request.id;
  s->adapter = a;
  s->tokens.reserve(size_t(total));
  s->tokens.assign(request.prompt.begin(), request.prompt.end());
  s->stop.assign(request.stop_token_ids.begin(), request.stop_token_ids.end());
  s->blocks.reserve(size_t(blocks));
  s->sampling = sp;
  s->prompt_len = uint32_t(prompt_len);
  s->max_tokens = request.max_tokens;
  s->generated = 0;
  s->num_computed = 0;
  s->prompt_logits = request.prompt_logits;
  s->logits_reported = request.prompt_logits == LogitsRequest::kLast ? uint32_t(prompt_len) - 1 : 0;
  s->submit_ms = now_ms;
  s->first_admit_ms = -1.0;
  s->order = next_order_++;
  s->state = SeqState::kQueued;
  s->in_running = false;
  s->was_paused = false;
  by_id_.emplace(s->id, s);
  a->queue.push_back(s);
  ++num_queued_;
  mark_waiting(*a, now_ms);
  if (request.timeout_ms != kNoDeadline) deadlines_.push({now_ms + request.timeout_ms, s->id, s->order});
  ++stats_.submitted;
  return s->id;
}

bool Scheduler::cancel(RequestId id, double now_ms) { return end(id, FinishReason::kCancelled, now_ms); }

bool Scheduler::end(RequestId id, FinishReason reason, double now_ms) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return false;
  finish(*it->second, reason, now_ms);
  compact_running();
  return true;
}

void Scheduler::remove_from_queue(Sequence& s) {
  auto& q = s.adapter->queue;
  auto it = std::find(q.begin(), q.end(), &s);
  MYRIAD_CHECK(it != q.end(), "queued request " + std::to_string(s.id) + " missing from its adapter queue");
  q.erase(it);
  --num_queued_;
}

void Scheduler::retire(Sequence& s) {
  if (s.state == SeqState::kQueued) {
    remove_from_queue(s);
  } else if (s.state == SeqState::kRunning) {
    kv_.release(s.blocks);
    --s.adapter->pins;
  } else if (s.state == SeqState::kPaused) {
    auto& p = s.adapter->paused;
    p.erase(std::find(p.begin(), p.end(), &s));
    kv_.release(s.blocks);
    --num_paused_;
  }
  by_id_.erase(s.id);
  s.state = SeqState::kDone;
  if (!s.in_running) recycle(&s);  // else compact_running() recycles it
}

void Scheduler::finish(Sequence& s, FinishReason reason, double now_ms) {
  RequestEvent& e = events_.emplace_back();
  e.id = s.id;
  e.kind = EventKind::kFinished;
  e.time_ms = now_ms;
  e.reason = reason;
  e.num_output_tokens = s.generated;
  e.queue_ms = s.first_admit_ms < 0 ? -1.0 : s.first_admit_ms - s.submit_ms;
  retire(s);
}

void Scheduler::fail(Sequence& s, const Error& error, double now_ms) {
  RequestEvent& e = events_.emplace_back();
  e.id = s.id;
  e.kind = EventKind::kFailed;
  e.time_ms = now_ms;
  e.num_output_tokens = s.generated;
  e.queue_ms = s.first_admit_ms < 0 ? -1.0 : s.first_admit_ms - s.submit_ms;
  e.error = error;
  retire(s);
}

void Scheduler::compact_running() {
  size_t j = 0;
  for (Sequence* s : running_) {
    if (s->state == SeqState::kRunning) {
      running_[j++] = s;
    } else {
      s->in_running = false;
      if (s->state == SeqState::kDone) recycle(s);
    }
  }
  running_.resize(j);
}

void Scheduler::expire_deadlines(double now_ms) {
  while (!deadlines_.empty() && deadlines_.top().at_ms <= now_ms) {
    const DeadlineEntry d = deadlines_.top();
    deadlines_.pop();
    // An id may be reused once its request has ended: only the submission
    // the entry was made for expires.
    auto it = by_id_.find(d.id);
    if (it != by_id_.end() && it->second->order == d.order) finish(*it->second, FinishReason::kDeadline, now_ms);
  }
  compact_running();
}

// ---------------------------------------------------------------- adapters

int32_t Scheduler::free_slot() const {
  for (size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i] == nullptr) return int32_t(i);
  return -1;
}

size_t Scheduler::num_free_slots() const { return size_t(std::count(slots_.begin(), slots_.end(), nullptr)); }

size_t Scheduler::slots_needed(const AdapterState& a) const {
  size_t n = 0;
  for (const Member* m : a.members) n += m->slot < 0;
  return n;
}

// Slots that evicting `a` would free: members no other set holds.
size_t Scheduler::slots_freed_by(const AdapterState& a) const {
  size_t n = 0;
  for (const Member* m : a.members) n += m->holders == 1;
  return n;
}

void Scheduler::free_member_slot(Member& m) {
  out_.evictions.push_back({m.slot, m.id});
  slots_[size_t(m.slot)] = nullptr;
  m.slot = -1;
  m.state = Member::State::kInHost;
  ++stats_.evictions;
}

// Slots no set holds any more are evicted; a slot still loading waits for
// its load to end (the executor reports it), so a load is never torn.
void Scheduler::release_unheld_slots() {
  for (Member* m : slots_) {
    if (m == nullptr || m->holders > 0 || m->state != Member::State::kInSlot) continue;
    free_member_slot(*m);
    forget_if_unused(*m);
  }
}

void Scheduler::evict(AdapterState& a) {
  MYRIAD_CHECK(a.pins == 0, "evicting adapter " + a.key + " pinned by " + std::to_string(a.pins) + " sequences");
  for (Member* m : a.members) --m->holders;
  a.phase = AdapterPhase::kIdle;
  release_unheld_slots();
}

void Scheduler::activate(AdapterState& a, double now_ms) {
  a.phase = AdapterPhase::kActive;
  a.active_since_ms = now_ms;
  a.active_steps = 0;
}

void Scheduler::assign_slots(AdapterState& a, double now_ms) {
  a.phase = AdapterPhase::kLoading;
  a.ticket = 0;  // waiting_since_ms kept: the wait lasts until it is Active
  for (Member* m : a.members) {
    ++m->holders;
    if (m->slot >= 0) continue;  // resident for another set: shared
    const int32_t slot = free_slot();
    MYRIAD_CHECK(slot >= 0, "assigning slots to " + a.key + " without a free slot");
    m->slot = slot;
    m->state = Member::State::kLoading;
    slots_[size_t(slot)] = m;
    loading_slots_.push_back(slot);
    out_.loads.push_back({slot, m->id, m->weights});
    ++stats_.loads;
  }
  if (a.all_in_slot()) activate(a, now_ms);
}

// Assigns slots to waiters_[from...] in order while the next one fits;
// returns the first not assigned.
size_t Scheduler::assign_waiters(size_t from, double now_ms) {
  size_t w = from;
  while (w < waiters_.size() && slots_needed(*waiters_[w]) <= num_free_slots()) assign_slots(*waiters_[w++], now_ms);
  return w;
}

void Scheduler::preempt(Sequence& s) {
  kv_.release(s.blocks);
  s.num_computed = 0;
  s.state = SeqState::kQueued;
  --s.adapter->pins;
  // Back into its adapter's queue at its submission place (usually the front).
  auto& q = s.adapter->queue;
  q.insert(std::upper_bound(q.begin(), q.end(), &s,
                            [](const Sequence* x, const Sequence* y) { return x->order < y->order; }),
           &s);
  ++num_queued_;
  ++stats_.preemptions;
  ++out_.num_preempted;
}

bool Scheduler::reclaim_paused(const Sequence* keep) {
  // The youngest paused request loses its KV and queues for a recompute:
  // paused requests must never hold KV that running work needs.
  Sequence* victim = nullptr;
  for (AdapterState* a : live_)
    for (Sequence* p : a->paused)
      if (p != keep && (victim == nullptr || p->order > victim->order)) victim = p;
  if (victim == nullptr) return false;
  AdapterState& a = *victim->adapter;
  a.paused.erase(std::find(a.paused.begin(), a.paused.end(), victim));
  --num_paused_;
  kv_.release(victim->blocks);
  victim->num_computed = 0;
  victim->state = SeqState::kQueued;
  auto& q = a.queue;
  q.insert(std::upper_bound(q.begin(), q.end(), victim,
                            [](const Sequence* x, const Sequence* y) { return x->order < y->order; }),
           victim);
  ++num_queued_;
  ++stats_.preemptions;
  ++out_.num_preempted;
  return true;
}

void Scheduler::swap_out(AdapterState& a, double now_ms, bool pause) {
  a.phase = AdapterPhase::kDraining;
  if (pause && a.pins > 0) {
    // Its running requests stop, keeping their KV, and resume (before its
    // queued ones) when the adapter is active again.
    for (Sequence* s : running_) {
      if (s->state != SeqState::kRunning || s->adapter != &a || s->was_paused) continue;
      s->state = SeqState::kPaused;
      s->was_paused = true;
      --a.pins;
      auto at = std::upper_bound(a.paused.begin(), a.paused.end(), s,
                                 [](const Sequence* x, const Sequence* y) { return x->order < y->order; });
      a.paused.insert(at, s);
      ++num_paused_;
      ++out_.num_paused;
    }
    compact_running();
  }
  mark_waiting(a, now_ms);
}

void Scheduler::release_idle_and_drained() {
  for (AdapterState* a : live_) {
    if (a->pins != 0) continue;
    if ((a->phase == AdapterPhase::kActive && !a->has_pending()) || a->phase == AdapterPhase::kDraining) evict(*a);
  }
}

void Scheduler::collect_waiters(bool by_ticket) {
  waiters_.clear();
  for (AdapterState* a : live_)
    if (a->phase == AdapterPhase::kIdle && a->has_pending() && a->fetched()) waiters_.push_back(a);
  if (by_ticket) {
    std::sort(waiters_.begin(), waiters_.end(),
              [](const AdapterState* x, const AdapterState* y) { return x->ticket < y->ticket; });
  } else {
    std::sort(waiters_.begin(), waiters_.end(), [](const AdapterState* x, const AdapterState* y) {
      return x->oldest_order() < y->oldest_order();
    });
  }
}

void Scheduler::plan_timeslice(double now_ms) {
  release_idle_and_drained();
  collect_waiters(/*by_ticket=*/true);
  size_t w = assign_waiters(0, now_ms);
  if (w == waiters_.size()) return;
  size_t wanted = 0;
  for (size_t i = w; i < waiters_.size(); ++i) wanted += slots_needed(*waiters_[i]);
  size_t coming = num_free_slots();  // slots free now or on their way to the waiters
  for (AdapterState* a : live_)
    if (a->phase == AdapterPhase::kDraining) coming += slots_freed_by(*a);
  if (wanted <= coming) return;
  size_t need = wanted - coming;
  // An active adapter with nothing queued only finishes what runs: let it
  // drain now rather than hold the slot for a quantum.
  for (AdapterState* a : live_) {
    if (need == 0) break;
    const size_t frees = slots_freed_by(*a);
    if (a->phase == AdapterPhase::kActive && !a->has_pending() && frees > 0) {
      swap_out(*a, now_ms, /*pause=*/false);
      need -= std::min(need, frees);
    }
  }
  scratch_.clear();
  for (AdapterState* a : live_)
    if (a->phase == AdapterPhase::kActive && a->active_steps > 0 && now_ms - a->active_since_ms >= config_.quantum_ms &&
        slots_freed_by(*a) > 0)
      scratch_.push_back(a);
  std::sort(scratch_.begin(), scratch_.end(), [](const AdapterState* x, const AdapterState* y) {
    return x->active_since_ms != y->active_since_ms ? x->active_since_ms < y->active_since_ms
                                                    : x->first_slot() < y->first_slot();
  });
  for (AdapterState* a : scratch_) {
    if (need == 0) break;
    const size_t frees = slots_freed_by(*a);
    swap_out(*a, now_ms, config_.pause_on_swap_out);
    ++stats_.swaps;
    ++out_.num_swapped_out;
    need -= std::min(need, frees);
  }
  // Paused (or empty) swapped-out adapters free their slots at once.
  for (AdapterState* a : live_)
    if (a->phase == AdapterPhase::kDraining && a->pins == 0) evict(*a);
  assign_waiters(w, now_ms);
}

void Scheduler::plan_fcfs(double now_ms) {
  release_idle_and_drained();
  collect_waiters(/*by_ticket=*/false);
  assign_waiters(0, now_ms);
}

void Scheduler::plan_one_at_a_time(double now_ms) {
  release_idle_and_drained();
  for (AdapterState* a : live_)
    if (a->phase != AdapterPhase::kIdle) return;  // the current one is still serving (or loading)
  collect_waiters(/*by_ticket=*/false);
  if (!waiters_.empty() && slots_needed(*waiters_.front()) <= num_free_slots()) assign_slots(*waiters_.front(), now_ms);
}

void Scheduler::plan_adapters(double now_ms) {
  switch (config_.policy) {
    case SchedulerPolicy::kTimeslice: plan_timeslice(now_ms); break;
    case SchedulerPolicy::kFcfs: plan_fcfs(now_ms); break;
    case SchedulerPolicy::kOneAtATime: plan_one_at_a_time(now_ms); break;
  }
}

void Scheduler::on_adapter_fetched(const AdapterId& id, std::shared_ptr<const LoraWeights> weights, double now_ms) {
  auto it = members_.find(id);
  if (it == members_.end() || it->second->state != Member::State::kFetching) return;
  Member& m = *it->second;
  m.weights = std::move(weights);
  m.state = Member::State::kInHost;
  for (AdapterState* a : live_)
    if (a->has(&m)) mark_waiting(*a, now_ms);
}

void Scheduler::fail_pending(AdapterState& a, const Error& e, double now_ms) {
  while (!a.paused.empty()) fail(*a.paused.front(), e, now_ms);
  while (!a.queue.empty()) fail(*a.queue.front(), e, now_ms);
}

void Scheduler::on_fetch_failed(const AdapterId& id, const Error& error, double now_ms) {
  auto it = members_.find(id);
  if (it == members_.end() || it->second->state != Member::State::kFetching) return;
  Member* m = it->second.get();
  ++stats_.fetch_failures;
  const Error e = make_error(error.code, "fetching adapter " + id.to_string() + ": " + error.message);
  // Its sets have never run (a set runs only once fetched): failing their
  // queues leaves them empty, and forgetting them forgets the member, so a
  // later request fetches it afresh.
  for (AdapterState* a : live_)
    if (a->has(m)) fail_pending(*a, e, now_ms);
  forget_unused();
}

void Scheduler::on_adapter_ready(int32_t slot, double now_ms) {
  MYRIAD_CHECK(slot >= 0 && size_t(slot) < slots_.size() && slots_[size_t(slot)] != nullptr &&
                   slots_[size_t(slot)]->state == Member::State::kLoading,
               "on_adapter_ready(" + std::to_string(slot) + ") for a slot that is not loading");
  Member& m = *slots_[size_t(slot)];
  m.state = Member::State::kInSlot;
  loading_slots_.erase(std::find(loading_slots_.begin(), loading_slots_.end(), slot));
  for (AdapterState* a : live_)
    if (a->phase == AdapterPhase::kLoading && a->has(&m) && a->all_in_slot()) activate(*a, now_ms);
}

void Scheduler::on_load_failed(int32_t slot, const Error& error, double now_ms) {
  MYRIAD_CHECK(slot >= 0 && size_t(slot) < slots_.size() && slots_[size_t(slot)] != nullptr &&
                   slots_[size_t(slot)]->state == Member::State::kLoading,
               "on_load_failed(" + std::to_string(slot) + ") for a slot that is not loading");
  Member& m = *slots_[size_t(slot)];
  loading_slots_.erase(std::find(loading_slots_.begin(), loading_slots_.end(), slot));
  slots_[size_t(slot)] = nullptr;
  m.slot = -1;
  m.state = Member::State::kInHost;
  ++stats_.load_failures;
  const Error e = make_error(error.code, "loading adapter " + m.id.to_string() + " into slot " + std::to_string(slot) +
                                             ": " + error.message);
  // The sets that were loading it give up their other slots (evicted by the
  // next schedule() once no set holds them) and fail their queues.
  for (AdapterState* a : live_) {
    if (a->phase != AdapterPhase::kLoading || !a->has(&m)) continue;
    for (Member* o : a->members) --o->holders;
    a->phase = AdapterPhase::kIdle;
    fail_pending(*a, e, now_ms);
  }
  MYRIAD_CHECK(m.holders == 0, "adapter " + m.id.to_string() + " still held after its load failed");
}

const AdapterId* Scheduler::slot_adapter(int32_t slot) const {
  if (slot < 0 || size_t(slot) >= slots_.size() || slots_[size_t(slot)] == nullptr) return nullptr;
  return &slots_[size_t(slot)]->id;
}

// ---------------------------------------------------------------- the batch

void Scheduler::write_row(Sequence& s, uint32_t chunk) {
  StepPlan& plan = out_.plan;
  SeqRow& row = plan.rows.emplace_back();
  row.seq = s.id;
  row.token_offset = uint32_t(plan.tokens.size());
  row.num_tokens = chunk;
  row.start_pos = int32_t(s.num_computed);
  plan.tokens.insert(plan.tokens.end(), s.tokens.begin() + s.num_computed, s.tokens.begin() + s.num_computed + chunk);
  row.block_offset = uint32_t(plan.block_ids.size());
  row.num_blocks = uint32_t(s.blocks.size());
  plan.block_ids.insert(plan.block_ids.end(), s.blocks.begin(), s.blocks.end());
  row.adapters = AdapterMix::none();
  const auto& members = s.adapter->members;
  for (size_t i = 0; i < members.size(); ++i) row.adapters.refs[i] = {members[i]->slot, s.weights[i]};
  row.adapters.count = uint8_t(members.size());
  row.sample = s.num_computed + chunk == s.tokens.size() && s.max_tokens > 0;
  row.logits = LogitsRequest::kNone;
  if (s.prompt_logits != LogitsRequest::kNone && s.num_computed + chunk > s.logits_reported &&
      s.logits_reported < s.prompt_len) {
    // Prompt positions not reported yet: the last one alone when the chunk
    // ends on it (the usual kLast), else every position of the chunk.
    const bool last_only = s.logits_reported + 1 == s.prompt_len && s.num_computed + chunk == s.prompt_len;
    row.logits = last_only ? LogitsRequest::kLast : LogitsRequest::kAll;
  }
  row.sampling = s.sampling;
  row.output_index = s.generated;
  row.history_offset = uint32_t(plan.history.size());
  row.history_len = 0;
  row.prompt_len = 0;  // of the history, which only penalties need
  if (row.sample && s.sampling.needs_history()) {
    row.history_len = uint32_t(s.tokens.size());
    row.prompt_len = s.prompt_len;
    plan.history.insert(plan.history.end(), s.tokens.begin(), s.tokens.end());
  }
  step_seqs_.push_back(&s);
  budget_left_ -= int32_t(chunk);
  const bool decode = chunk == 1 && s.generated > 0 && s.num_computed + 1 == s.tokens.size();
  ++(decode ? out_.num_decode_rows : out_.num_prefill_rows);
}

void Scheduler::plan_running() {
  const size_t n = running_.size();
  reserve_.resize(n + 1);
  reserve_[n] = 0;
  for (size_t i = n; i-- > 0;) {
    const Sequence& s = *running_[i];
    reserve_[i] = reserve_[i + 1] + std::min<uint32_t>(uint32_t(g_), uint32_t(s.tokens.size()) - s.num_computed);
  }
  const int32_t bs = config_.kv_block_size;
  for (size_t i = 0; i < running_.size(); ++i) {
    Sequence& s = *running_[i];
    const uint32_t remaining = uint32_t(s.tokens.size()) - s.num_computed;
    // Leave the rows after this one their guaranteed share (invariant:
    // budget_left_ >= reserve_[i], as T >= g * R).
    uint32_t chunk = std::min<uint32_t>(remaining, uint32_t(budget_left_) - reserve_[i + 1]);
    if (config_.max_prefill_chunk > 0) chunk = std::min<uint32_t>(chunk, uint32_t(config_.max_prefill_chunk));
    MYRIAD_CHECK(chunk >= 1, "running request " + std::to_string(s.id) + " got no tokens this step");
    const int32_t need =
        KvBlockAllocator::blocks_for(int32_t(s.num_computed + chunk), bs) - int32_t(s.blocks.size());
    bool self_preempted = false;
    while (kv_.num_free() < need) {
      if (reclaim_paused(nullptr)) continue;
      // Out of KV blocks: free the youngest sequence (recompute it later).
      Sequence* victim = running_.back();
      preempt(*victim);
      victim->in_running = false;
      running_.pop_back();
      if (victim == &s) {
        self_preempted = true;
        break;
      }
    }
    if (self_preempted) break;
    if (need > 0) MYRIAD_CHECK(kv_.allocate(need, s.blocks), "KV allocation failed after preemption");
    write_row(s, chunk);
  }
}

void Scheduler::plan_admissions() {
  const int32_t bs = config_.kv_block_size;
  admit_block_ = WaitReason::kTokenBudget;
  if (out_.num_preempted > 0) {  // KV is short: readmitting now would only thrash
    admit_block_ = WaitReason::kKvBlocks;
    return;
  }
  for (;;) {
    if (running_.size() >= size_t(config_.max_running_seqs)) {
      admit_block_ = WaitReason::kMaxRunning;
      return;
    }
    if (budget_left_ <= 0) {
      admit_block_ = WaitReason::kTokenBudget;
      return;
    }
    // The oldest queued or paused request among the adapters that can run now.
    AdapterState* best = base_->has_pending() ? base_.get() : nullptr;
    for (AdapterState* a : active_) {
      if (a->phase != AdapterPhase::kActive || !a->has_pending()) continue;
      if (best == nullptr || a->oldest_order() < best->oldest_order()) best = a;
    }
    if (best == nullptr) return;
    const bool resume = !best->paused.empty() && best->paused.front()->order == best->oldest_order();
    Sequence& s = resume ? *best->paused.front() : *best->queue.front();
    const uint32_t remaining = uint32_t(s.tokens.size()) - s.num_computed;
    int64_t chunk = std::min<int64_t>(remaining, budget_left_);
    if (config_.max_prefill_chunk > 0) chunk = std::min<int64_t>(chunk, config_.max_prefill_chunk);
    // New work never preempts running work (only paused requests' KV is
    // reclaimed): take what the free blocks hold.
    auto fits = [&] { return int64_t(s.blocks.size() + size_t(kv_.num_free())) * bs - s.num_computed; };
    while (fits() < chunk && reclaim_paused(&s)) {
    }
    chunk = std::min(chunk, fits());
    if (chunk <= 0) {
      admit_block_ = WaitReason::kKvBlocks;
      return;
    }
    const int32_t need =
        KvBlockAllocator::blocks_for(int32_t(s.num_computed + chunk), bs) - int32_t(s.blocks.size());
    if (need > 0) MYRIAD_CHECK(kv_.allocate(need, s.blocks), "KV allocation failed for an admission that fits");
    if (resume) {
      best->paused.erase(best->paused.begin());
      --num_paused_;
    } else {
      best->queue.pop_front();
      --num_queued_;
    }
    s.state = SeqState::kRunning;
    s.in_running = true;
    ++best->pins;
    if (s.first_admit_ms < 0) s.first_admit_ms = now_ms_;
    // running_ stays in submission order: the youngest is preempted first,
    // the oldest always progresses.
    auto at = std::upper_bound(running_.begin(), running_.end(), &s,
                               [](const Sequence* x, const Sequence* y) { return x->order < y->order; });
    running_.insert(at, &s);
    ++out_.num_admitted;
    write_row(s, uint32_t(chunk));
  }
}

void Scheduler::plan_waiting() {
  auto add = [&](AdapterState& a) {
    if (!a.has_pending()) return;
    WaitingAdapter& w = out_.waiting.emplace_back();
    w.adapters = a.ids;
    w.queued = uint32_t(a.queue.size() + a.paused.size());
    if (!a.fetched()) {
      w.reason = WaitReason::kFetching;
      w.since_ms = a.queue.empty() ? a.paused.front()->submit_ms : a.queue.front()->submit_ms;
      return;
    }
    switch (a.phase) {
      case AdapterPhase::kIdle: w.reason = WaitReason::kNoSlot; break;
      case AdapterPhase::kLoading: w.reason = WaitReason::kLoading; break;
      case AdapterPhase::kDraining: w.reason = WaitReason::kSwappedOut; break;
      case AdapterPhase::kActive: w.reason = admit_block_; break;
    }
    if (a.phase != AdapterPhase::kActive) {
      w.since_ms = a.waiting_since_ms;
    } else {
      w.since_ms = a.queue.empty() ? a.paused.front()->submit_ms : a.queue.front()->submit_ms;
      if (!a.paused.empty()) w.since_ms = std::min(w.since_ms, a.paused.front()->submit_ms);
    }
  };
  add(*base_);
  for (AdapterState* a : live_) add(*a);
}

void Scheduler::forget_unused() {
  size_t j = 0;
  for (AdapterState* a : live_) {
    const bool waiting_phase = a->phase == AdapterPhase::kIdle || a->phase == AdapterPhase::kDraining;
    if (waiting_phase && !a->has_pending()) a->ticket = 0;
    if (a->phase == AdapterPhase::kIdle && !a->has_pending() && a->pins == 0) {
      for (Member* m : a->members) --m->sets;
      for (Member* m : a->members) forget_if_unused(*m);
      adapters_.erase(a->key);  // destroys *a
      continue;
    }
    live_[j++] = a;
  }
  live_.resize(j);
}

const ScheduleOutput& Scheduler::schedule(double now_ms) {
  now_ms_ = now_ms;
  out_.clear();
  step_seqs_.clear();
  compact_running();
  expire_deadlines(now_ms);
  release_unheld_slots();  // held by sets that failed since the last call
  // Safety net: an adapter that lost its slot with work queued waits in order.
  for (AdapterState* a : live_) mark_waiting(*a, now_ms);
  plan_adapters(now_ms);
  active_.clear();
  for (AdapterState* a : live_)
    if (a->phase == AdapterPhase::kActive) {
      ++a->active_steps;
      active_.push_back(a);
    }
  budget_left_ = config_.max_tokens_per_step;
  plan_running();
  plan_admissions();
  plan_waiting();
  forget_unused();
  if (!out_.plan.rows.empty()) ++stats_.steps;
  return out_;
}

// ---------------------------------------------------------------- results

void Scheduler::update(const StepResult& result, double now_ms) {
  const StepPlan& plan = out_.plan;
  size_t sample_rows = 0;
  for (const SeqRow& r : plan.rows) sample_rows += r.sample;
  if (result.sampled.size() != sample_rows) {
    fail_step(make_error(ErrorCode::kInternal, "executor returned " + std::to_string(result.sampled.size()) +
                                                   " sampled tokens for " + std::to_string(sample_rows) +
                                                   " sampling rows"),
              now_ms);
    return;
  }
  size_t si = 0;
  size_t logits_pos = 0;  // into result.logits, in positions
  const size_t vocab = config_.vocab_size > 0 ? size_t(config_.vocab_size) : 0;
  for (size_t i = 0; i < plan.rows.size(); ++i) {
    const SeqRow& row = plan.rows[i];
    Sequence& s = *step_seqs_[i];
    const SampledToken* t = row.sample ? &result.sampled[si++] : nullptr;
    const size_t row_logits_pos = logits_pos;
    logits_pos += row.logits == LogitsRequest::kAll ? row.num_tokens : row.logits == LogitsRequest::kLast ? 1 : 0;
    if (s.state != SeqState::kRunning || s.id != row.seq) continue;  // cancelled since schedule()
    if (row.logits != LogitsRequest::kNone) report_logits(s, row, result, row_logits_pos, vocab, now_ms);
    s.num_computed += row.num_tokens;
    if (s.max_tokens == 0 && s.num_computed >= s.prompt_len) {
      finish(s, FinishReason::kLength, now_ms);  // scored the prompt; nothing to generate
      continue;
    }
    if (t == nullptr) continue;
    if (t->seq != row.seq) {
      fail(s, make_error(ErrorCode::kInternal, "executor returned a token for sequence " + std::to_string(t->seq) +
                                                   " in the row of sequence " + std::to_string(row.seq)),
           now_ms);
      continue;
    }
    s.tokens.push_back(t->token);
    ++s.generated;
    RequestEvent& e = events_.emplace_back();
    e.id = s.id;
    e.kind = EventKind::kToken;
    e.time_ms = now_ms;
    e.token = t->token;
    e.logprob = t->logprob;
    e.index = s.generated - 1;
    if (std::find(s.stop.begin(), s.stop.end(), t->token) != s.stop.end()) {
      finish(s, FinishReason::kStop, now_ms);
    } else if (s.generated >= s.max_tokens) {
      finish(s, FinishReason::kLength, now_ms);
    }
  }
  step_seqs_.clear();
  compact_running();
}

// A kLogits event for the prompt positions of `row` not reported before
// (positions past the prompt, recomputed after a preemption, are not).
void Scheduler::report_logits(Sequence& s, const SeqRow& row, const StepResult& result, size_t first_pos,
                              size_t vocab, double now_ms) {
  const uint32_t row_start = uint32_t(row.start_pos);
  const uint32_t row_end = row_start + (row.logits == LogitsRequest::kAll ? row.num_tokens : 1);
  const uint32_t first = row.logits == LogitsRequest::kAll ? row_start : row_start + row.num_tokens - 1;
  const uint32_t from = std::max(first, s.logits_reported);
  const uint32_t to = std::min(row.logits == LogitsRequest::kAll ? row_end : first + 1, s.prompt_len);
  if (from >= to || vocab == 0) return;
  const size_t offset = (first_pos + (from - first)) * vocab;
  MYRIAD_CHECK(offset + size_t(to - from) * vocab <= result.logits.size(),
               "executor returned " + std::to_string(result.logits.size()) + " logits, fewer than the plan asked");
  RequestEvent& e = events_.emplace_back();
  e.id = s.id;
  e.kind = EventKind::kLogits;
  e.time_ms = now_ms;
  e.logits_start = from;
  e.logits_count = to - from;
  e.logits = std::span<const float>(result.logits.data() + offset, size_t(to - from) * vocab);
  s.logits_reported = to;
}

void Scheduler::fail_step(const Error& error, double now_ms) {
  const StepPlan& plan = out_.plan;
  for (size_t i = 0; i < step_seqs_.size(); ++i) {
    Sequence& s = *step_seqs_[i];
    if (s.state == SeqState::kRunning && s.id == plan.rows[i].seq) fail(s, error, now_ms);
  }
  step_seqs_.clear();
  compact_running();
}

}  // namespace myriad
