// The worker actor: one per device (a CPU or CUDA executor). It owns the
// Executor, the host adapter cache in front of it, and an EngineWorker: the
// Engine (with the runtime Scheduler's time-sliced active set) stepped on
// the EngineWorker's own thread, so a device step never blocks CAF's
// scheduler threads and the actor's handlers never wait for a step. Spawn it
// detached: drain and metrics wait for the step thread.
//
// Events leave from the step thread: each is encoded once (EventWire) and
// sent to the sink its submit named; a final event also goes to the
// scheduler actor (released). Every `report_interval_ms` it reports its load
// (WorkerLoad, with the occupied slots) to its scheduler and, for every
// version that entered, changed or left a slot or left the host cache, an
// AdapterResidency to the registry (loading, slot, hostCache, evicted); a
// fetch that starts or fails is reported at once (fetching, failed).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "actors/service_actors.h"
#include "runtime/adapter_cache.h"
#include "runtime/background_work.h"
#include "runtime/executor.h"
#include "runtime/scheduler_config.h"
#include "runtime/tokenizer.h"

namespace myriad::actors {

struct WorkerSetup {
  std::string worker_id;                       // unique in the cluster, e.g. "node1/cpu0"
  SchedulerConfig config;                      // the engine's
  std::unique_ptr<Executor> executor;          // the device
  std::shared_ptr<const Tokenizer> tokenizer;  // for stop strings and text
  size_t host_cache_bytes = size_t(2) << 30;
  // Reads one adapter version's weights into host memory (from the store).
  std::function<Result<std::shared_ptr<const LoraWeights>>(const AdapterId&)> load_adapter;
  worker_registry_actor registry;  // residency reports go here (null: nowhere, until a join)
  double report_interval_ms = 100.0;
  std::string device;  // set by spawn_worker from the executor, for load reports
  // Work the step loop interleaves with inference (fine-tuning jobs), at most
  // `background_share` of its busy time while requests run; must outlive the worker.
  BackgroundWork* background = nullptr;
  double background_share = 0.25;
};

// Starts the engine (EngineWorker::start's checks) and spawns the detached
// worker actor owning it; the Error when the engine cannot start. The
// executor must be in `setup`.
Result<worker_actor> spawn_worker(caf::actor_system& system, std::shared_ptr<WorkerSetup> setup);

}  // namespace myriad::actors
