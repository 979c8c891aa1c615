// The scheduler actor: admission for one worker. It checks each request
// against the worker's limits (validate_request: the answer names the
// field and the limit), keeps at most `max_in_worker` requests inside the
// worker's engine (whose runtime Scheduler time-slices the adapters among
// them) and at most `max_waiting` more in its own FIFO; beyond that a
// submit is refused as overloaded (HTTP 429), so memory stays bounded and a
// burst never reaches the device as an unbounded queue. A request cancelled
// while it waits here never reaches the worker: its sink gets the final
// event from here. Load reports from the worker pass through, with the
// waiting count added, to the gateway.
//
//   submit ─ invalid ──────────────────────────> refused (no events)
//          ─ worker has room ──> IN WORKER ──> final event (released) ──> gone; admit the oldest waiting
//          ─ else, room here ──> WAITING ──> room in the worker ──> IN WORKER
//          ─ else ─────────────────────────────> refused: overloaded
//   drain: refuse new submits; once nothing waits or runs here, drain the worker, then answer.
//   leave: hand each waiting request back to the gateway (requeue), then drain.
// Its load sink may be null (a cluster worker before its join completes):
// final events and requeues then wait here until attach names one.
// Linked to its worker: when either ends, both do, and the gateway (which
// monitors the scheduler) places the worker's requests elsewhere.
#pragma once

#include <deque>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "actors/service_actors.h"
#include "runtime/request_validation.h"

namespace myriad::actors {

struct SchedulerActorOptions {
  std::string worker_id;        // e.g. "node1/cpu0"
  RequestLimits limits;         // the worker's engine limits
  uint32_t max_in_worker = 64;  // requests inside the worker's engine at once
  uint32_t max_waiting = 1024;  // requests waiting here; more are refused (overloaded)
};

struct SchedulerActorState {
  struct Waiting {
    uint64_t id = 0;
    uint32_t attempt = 0;
    SubmitWire submit;
    event_sink_actor sink;
  };
  SchedulerActorOptions options;
  worker_actor worker;
  load_sink_actor load_sink;
  std::unordered_set<uint64_t> in_worker;
  std::deque<Waiting> waiting;
  bool draining = false;
  std::vector<caf::typed_response_promise<bool>> drains;
  // For the load sink while there is none (a null load_sink: a cluster
  // worker not yet joined, or whose gateway is gone); sent on attach.
  struct Unsent {
    std::optional<EventWire> released;  // a final event, else a requeue of (id, attempt)
    uint64_t id = 0;
    uint32_t attempt = 0;
  };
  std::deque<Unsent> unsent;
};

scheduler_actor::behavior_type scheduler_behavior(scheduler_actor::stateful_pointer<SchedulerActorState> self,
                                                  worker_actor worker, load_sink_actor load_sink,
                                                  SchedulerActorOptions options);

}  // namespace myriad::actors
