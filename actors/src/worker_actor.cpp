#include "actors/worker_actor.h"

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "actors/common_wire.h"
#include "actors/event_wire.h"
#include "actors/request_wire.h"
#include "actors/service_wire.h"
#include "runtime/adapter_source.h"
#include "runtime/engine_worker.h"
#include "runtime/log.h"

namespace myriad::actors {

namespace {

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Where the engine's events go: the sink each request named, and its
// scheduler for final events. Called on the step thread; submitters add
// routes from the actor's thread.
class Routes final : public EventSink {
 public:
  void attach(scheduler_actor scheduler) {
    std::lock_guard lock(mu_);
    scheduler_ = std::move(scheduler);
  }
  void attach(worker_registry_actor registry) {
    std::lock_guard lock(mu_);
    registry_ = std::move(registry);
  }
  worker_registry_actor registry() {
    std::lock_guard lock(mu_);
    return registry_;
  }
  void add(uint64_t id, event_sink_actor sink, uint32_t attempt) {
    std::lock_guard lock(mu_);
    routes_[id] = Route{std::move(sink), attempt};
  }
  scheduler_actor scheduler() {
    std::lock_guard lock(mu_);
    return scheduler_;
  }
  void on_event(const RequestEvent& e) override {
    Route route;
    scheduler_actor scheduler;
    {
      std::lock_guard lock(mu_);
      auto it = routes_.find(e.id);
      if (it == routes_.end()) return;
      route = it->second;
      if (e.is_final()) routes_.erase(it);
      scheduler = scheduler_;
    }
    EventWire wire = encode_event(e, route.attempt);
    caf::anon_send(route.sink, event_atom::value, wire);
    if (e.is_final() && scheduler) caf::anon_send(scheduler, released_atom::value, std::move(wire));
  }

 private:
  struct Route {
    event_sink_actor sink;
    uint32_t attempt = 0;
  };
  std::mutex mu_;
  std::unordered_map<uint64_t, Route> routes_;
  scheduler_actor scheduler_;
  worker_registry_actor registry_;
};

// What the last report said each slot held (step thread only).
struct SlotReport {
  AdapterId id;
  bool loading = false;
  bool operator==(const SlotReport&) const = default;
};

}  // namespace

struct WorkerActorState {
  std::shared_ptr<WorkerSetup> setup;
  std::unique_ptr<AdapterCache> cache;
  std::unique_ptr<CachedAdapterSource> source;
  std::unique_ptr<AdapterSource> reporting;  // over `source`: what the engine and prefetches use
  std::shared_ptr<Routes> routes;
  std::unique_ptr<EngineWorker> engine;  // destroyed first (declared last): it stops before the executor goes
  // Read and written only inside inspect() callbacks, which run one at a time.
  std::shared_ptr<std::map<int32_t, SlotReport>> slots = std::make_shared<std::map<int32_t, SlotReport>>();
  // Also taken by the fetch thread's reports (ReportingSource).
  std::shared_ptr<std::atomic<uint64_t>> seq;
  // The versions in host memory at the last report (inspect() callbacks only).
  std::shared_ptr<std::set<AdapterId>> host = std::make_shared<std::set<AdapterId>>();
  // A report waits for the step thread: the next tick sends a heartbeat instead.
  std::shared_ptr<std::atomic<bool>> report_pending = std::make_shared<std::atomic<bool>>(false);
};

// What spawn_worker builds before the actor exists (it moves into the state).
struct WorkerParts {
  std::shared_ptr<WorkerSetup> setup;
  std::unique_ptr<AdapterCache> cache;
  std::unique_ptr<CachedAdapterSource> source;
  std::unique_ptr<AdapterSource> reporting;  // over `source`: what the engine and prefetches use
  std::shared_ptr<std::atomic<uint64_t>> seq;
  std::shared_ptr<Routes> routes;
  std::unique_ptr<EngineWorker> engine;
};

namespace {

using Self = worker_actor::stateful_pointer<WorkerActorState>;

// One residency report of `id` on `worker`; `where` fills its union.
ResidencyWire residency(const std::string& worker, uint64_t seq, const AdapterId& id,
                        const std::function<void(schema::AdapterResidency::Where::Builder)>& where) {
  return ResidencyWire::from([&](schema::AdapterResidency::Builder r) {
    write_adapter_id(id, r.initAdapter());
    r.setWorker(worker);
    r.setSeq(seq);
    r.setAtUnixMs(unix_ms());
    where(r.getWhere());
  });
}

// `now`: where the version is (its slot, loading or resident).
ResidencyWire in_slot(const std::string& worker, uint64_t seq, const AdapterId& id, int32_t slot,
                      const SlotReport& now) {
  return residency(worker, seq, id, [&](schema::AdapterResidency::Where::Builder w) {
    if (now.loading)
      w.setLoading(uint32_t(slot));
    else
      w.setSlot(uint32_t(slot));
  });
}

// The engine's adapter source: the cache's, reporting to the registry what
// the next tick would be late to tell, a fetch starting (fetching) and a
// fetch failing (failed, with the error: a damaged stored file, a worker
// that cannot reach its gateway). fetch() runs on the step thread (and the
// actor's, for a prefetch); its callback on the fetch thread, possibly while
// the worker is torn down, so it holds shared state only.
class ReportingSource final : public AdapterSource {
 public:
  ReportingSource(AdapterSource& inner, const AdapterCache& cache, std::shared_ptr<Routes> routes,
                  std::string worker, std::shared_ptr<std::atomic<uint64_t>> seq)
      : inner_(inner), cache_(cache), routes_(std::move(routes)), worker_(std::move(worker)), seq_(std::move(seq)) {}

  void fetch(const AdapterId& id, FetchDone done) override {
    if (!cache_.cached(id))
      tell(routes_, residency(worker_, ++*seq_, id, [](schema::AdapterResidency::Where::Builder w) { w.setFetching(); }));
    inner_.fetch(id, [done = std::move(done), id, routes = routes_, worker = worker_,
                      seq = seq_](Result<std::shared_ptr<const LoraWeights>> r) {
      if (!r.ok() && r.error().code != ErrorCode::kCancelled) {
        const Error error = r.error();
        tell(routes, residency(worker, ++*seq, id, [&error](schema::AdapterResidency::Where::Builder w) {
               write_error(error, w.initFailed());
             }));
      }
      done(std::move(r));
    });
  }

 private:
  static void tell(const std::shared_ptr<Routes>& routes, ResidencyWire wire) {
    if (const worker_registry_actor registry = routes->registry())
      caf::anon_send(registry, residency_atom::value, std::move(wire));
  }

  AdapterSource& inner_;
  const AdapterCache& cache_;
  std::shared_ptr<Routes> routes_;
  std::string worker_;
  std::shared_ptr<std::atomic<uint64_t>> seq_;
};

// On the step thread: the load report and the residency changes since the last one.
void report(Self self) {
  WorkerActorState& s = self->state;
  auto setup = s.setup;
  auto slots = s.slots;
  auto seq = s.seq;
  auto host = s.host;
  auto routes = s.routes;
  const AdapterCache* cache = s.cache.get();  // outlives the engine's loop (state order)
  auto pending = s.report_pending;
  pending->store(true);
  s.engine->inspect([setup, slots, seq, host, routes, cache, pending](const Engine& engine) {
    pending->store(false);
    const Scheduler& sched = engine.scheduler();
    std::map<int32_t, SlotReport> now;
    for (int32_t slot = 0; slot < sched.config().num_slots; ++slot)
      if (const AdapterId* id = sched.slot_adapter(slot)) now[slot] = SlotReport{*id, false};
    for (int32_t slot : sched.loading_slots())
      if (auto it = now.find(slot); it != now.end()) it->second.loading = true;

    // A version whose slot state changed: where it is now. One that left
    // every slot: in host memory (swapped out), or evicted when the host
    // cache dropped it too. One that left the host cache, in no slot:
    // evicted; one that came into it, in no slot: hostCache.
    const worker_registry_actor registry = routes->registry();
    const std::vector<AdapterId> cached = cache->cached_ids();
    const std::set<AdapterId> cached_now(cached.begin(), cached.end());
    auto in_a_slot = [&now](const AdapterId& id) {
      for (const auto& [slot, r] : now)
        if (r.id == id) return true;
      return false;
    };
    auto tell = [&](ResidencyWire wire) {
      if (registry) caf::anon_send(registry, residency_atom::value, std::move(wire));
    };
    auto host_cache = [](schema::AdapterResidency::Where::Builder w) { w.setHostCache(); };
    auto evicted = [](schema::AdapterResidency::Where::Builder w) { w.setEvicted(); };
    for (const auto& [slot, r] : now) {
      auto before = slots->find(slot);
      if (before != slots->end() && before->second == r) continue;
      tell(in_slot(setup->worker_id, ++*seq, r.id, slot, r));
    }
    std::set<AdapterId> told;
    for (const auto& [slot, r] : *slots) {
      if (in_a_slot(r.id) || !told.insert(r.id).second) continue;
      if (cached_now.count(r.id))
        tell(residency(setup->worker_id, ++*seq, r.id, host_cache));
      else
        tell(residency(setup->worker_id, ++*seq, r.id, evicted));
    }
    for (const AdapterId& id : *host)
      if (!cached_now.count(id) && !in_a_slot(id) && !told.count(id))
        tell(residency(setup->worker_id, ++*seq, id, evicted));
    // Newly in host memory and in no slot: fetched (by a prefetch, or used
    // and swapped out again between two ticks), so "fetching" is over.
    for (const AdapterId& id : cached_now)
      if (!host->count(id) && !in_a_slot(id) && !told.count(id))
        tell(residency(setup->worker_id, ++*seq, id, host_cache));
    *slots = now;
    *host = cached_now;

    const auto scheduler = routes->scheduler();
    if (!scheduler) return;
    WorkerLoadWire load = WorkerLoadWire::from([&](schema::WorkerLoad::Builder w) {
      w.setWorker(setup->worker_id);
      w.setDevice(setup->device);
      w.setSeq(++*seq);
      w.setAtUnixMs(unix_ms());
      w.setQueued(uint32_t(sched.num_queued()));
      w.setRunning(uint32_t(sched.num_running()));
      w.setFreeKvBlocks(uint32_t(sched.num_free_kv_blocks()));
      w.setTotalKvBlocks(uint32_t(sched.config().num_kv_blocks));
      w.setTotalSlots(uint32_t(sched.config().num_slots));
      w.setFreeSlots(uint32_t(sched.config().num_slots) - uint32_t(now.size()));
      auto active = w.initActiveAdapters(uint32_t(now.size()));
      auto list = w.initSlots(uint32_t(now.size()));
      uint32_t i = 0;
      for (const auto& [slot, r] : now) {
        write_adapter_id(r.id, active[i]);
        list[i].setSlot(uint32_t(slot));
        write_adapter_id(r.id, list[i].initAdapter());
        list[i].setLoading(r.loading);
        ++i;
      }
      const auto& steps = engine.metrics().step_device_ms;
      w.setStepMs(float(steps.mean_ms()));
      const RequestMetrics& served = engine.metrics().overall;
      w.setOutputTokens(served.output_tokens);
      w.setRequests(served.submitted);
      w.setTtftP50Ms(float(served.ttft_ms.quantile_ms(0.50)));
      w.setTtftP99Ms(float(served.ttft_ms.quantile_ms(0.99)));
      w.setItlP50Ms(float(served.itl_ms.quantile_ms(0.50)));
      w.setItlP99Ms(float(served.itl_ms.quantile_ms(0.99)));
      w.setSlotLoads(engine.metrics().slot_loads);
      w.setSwaps(engine.metrics().swaps);
      w.setPendingTokens(sched.pending_tokens());
      auto in_host = w.initHostCached(uint32_t(cached.size()));
      for (uint32_t i = 0; i < cached.size(); ++i) write_adapter_id(cached[i], in_host[i]);
    });
    caf::anon_send(scheduler, load_atom::value, std::move(load));
  });
}

// From the actor's thread while the step thread is inside a long step: the
// worker is up (its process, its link), so the gateway's heartbeat timeout
// measures those, not the length of a step.
void heartbeat(Self self) {
  const auto scheduler = self->state.routes->scheduler();
  if (!scheduler) return;
  self->send(scheduler, load_atom::value, WorkerLoadWire::from([&](schema::WorkerLoad::Builder w) {
               w.setWorker(self->state.setup->worker_id);
               w.setAtUnixMs(unix_ms());
               w.setHeartbeat(true);
             }));
}

// How the host cache reads an adapter: the setup's loader (the store), then
// the executor's staging, so that the cache holds what a slot load copies
// (CUDA: the slot image in bf16, pinned) and no load converts on the step
// thread. Runs on the cache's fetch thread; stage_adapter is thread-safe.
AdapterLoader cache_loader(const std::shared_ptr<WorkerSetup>& setup, const AdapterId& id) {
  // The inner loader holds the setup, so the executor outlives the calls.
  return staging_loader([setup, id] { return setup->load_adapter(id); }, *setup->executor);
}

}  // namespace

worker_actor::behavior_type worker_behavior(Self self, std::shared_ptr<WorkerParts> parts) {
  WorkerActorState& s = self->state;
  s.setup = parts->setup;
  s.cache = std::move(parts->cache);
  s.source = std::move(parts->source);
  s.reporting = std::move(parts->reporting);
  s.seq = parts->seq;
  s.routes = parts->routes;
  s.engine = std::move(parts->engine);
  self->send(self, tick_atom::value);
  return {
      [self](submit_atom, const SubmitWire& wire, const event_sink_actor& sink) {
        WorkerActorState& st = self->state;
        auto d = wire.decode();
        Result<Request> request = d ? read_submit(d->get()) : Result<Request>(d.error());
        const uint32_t attempt = d ? d->get().getAttempt() : 0;
        const uint64_t id = d ? d->get().getRequestId() : 0;
        Status accepted = request ? Status() : Status(request.error());
        if (accepted.ok()) {
          for (const AdapterUse& use : request->adapters)
            if (!st.cache->registered(use.id)) (void)st.cache->add(use.id, cache_loader(st.setup, use.id));
          st.routes->add(id, sink, attempt);
          accepted = st.engine->submit(std::move(request).value());
        }
        if (!accepted.ok()) {
          // Never reached the engine: answered here, once, as a failure.
          EventWire failed = final_event(id, attempt, &accepted.error());
          self->send(sink, event_atom::value, failed);
          if (auto sched = st.routes->scheduler()) self->send(sched, released_atom::value, failed);
        }
      },
      [self](cancel_atom, const CancelWire& wire) {
        if (auto d = wire.decode()) self->state.engine->cancel(d->get().getRequestId());
      },
      [self](fetch_atom, const SubmitWire& wire) {
        // A prefetch: the source reads on its own thread into the host
        // cache; the engine's own fetch then finds it there.
        WorkerActorState& st = self->state;
        auto d = wire.decode();
        if (!d) return;
        auto request = read_submit(d->get());
        if (!request) return;
        for (const AdapterUse& use : request->adapters) {
          if (!st.cache->registered(use.id)) (void)st.cache->add(use.id, cache_loader(st.setup, use.id));
          if (!st.cache->cached(use.id))
            st.reporting->fetch(use.id, [](Result<std::shared_ptr<const LoraWeights>>) {});
        }
      },
      [self](tick_atom) {
        if (self->state.report_pending->load())
          heartbeat(self);
        else
          report(self);
        self->delayed_send(self,
                           std::chrono::microseconds(int64_t(self->state.setup->report_interval_ms * 1000)),
                           tick_atom::value);
      },
      [self](attach_atom, const scheduler_actor& scheduler) { self->state.routes->attach(scheduler); },
      [self](attach_atom, const worker_registry_actor& registry) { self->state.routes->attach(registry); },
      [self](drain_atom) {
        self->state.engine->stop(EngineWorker::StopMode::kDrain);
        report(self);
        return true;
      },
      [self](metrics_atom) {
        // The engine's metrics, plus the live counts a load report has.
        auto json =
            nlohmann::json::parse(self->state.engine->metrics_json(), nullptr, /*allow_exceptions=*/false);
        if (!json.is_object()) json = nlohmann::json::object();
        const EngineWorkerStats st = self->state.engine->stats();
        json["live"] = {
            {"steps", st.steps}, {"queued", st.queued}, {"running", st.running}, {"in_flight", st.in_flight}};
        return json.dump();
      },
  };
}

Result<worker_actor> spawn_worker(caf::actor_system& system, std::shared_ptr<WorkerSetup> setup) {
  // The engine starts here, on the caller's thread, so that a configuration
  // it refuses is an Error for the caller rather than an actor that quits.
  auto parts = std::make_shared<WorkerParts>();
  parts->setup = setup;
  setup->device = setup->executor->info().device;
  parts->cache = std::make_unique<AdapterCache>(setup->host_cache_bytes);
  parts->source = std::make_unique<CachedAdapterSource>(*parts->cache);
  parts->seq = std::make_shared<std::atomic<uint64_t>>(0);
  parts->routes = std::make_shared<Routes>();
  parts->routes->attach(setup->registry);
  parts->reporting =
      std::make_unique<ReportingSource>(*parts->source, *parts->cache, parts->routes, setup->worker_id, parts->seq);
  auto engine =
      EngineWorker::start(setup->config, *setup->executor, *parts->reporting, *parts->routes, setup->tokenizer);
  if (!engine) return engine.error();
  parts->engine = std::move(engine.value());
  if (setup->background) parts->engine->set_background(setup->background, setup->background_share);
  return system.spawn<caf::detached>(worker_behavior, std::move(parts));
}

}  // namespace myriad::actors
