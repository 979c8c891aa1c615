// The scheduler actor: admission and the time-sliced active set of one
// worker. It checks each request against the worker's limits
// (validate_request: the answer names the field and the limit), then queues
// it per adapter set in an AdmissionQueue (runtime/admission_queue.h: the
// pure policy, with its starvation bound and property test): only the
// requests of the ACTIVE sets (at most limits.num_slots adapter versions
// together: the worker's slots) and base-model requests enter the worker,
// oldest first, at most `max_in_worker` at once. When an active set's quantum has passed and
// others wait, it drains (nothing more of it enters; what is in the worker
// finishes) and the set that has waited longest takes its slots. The
// worker's engine therefore never holds more adapters than it has slots:
// its runtime Scheduler loads, batches and evicts what this actor chose.
// At most `max_waiting` requests wait here; beyond that a submit is refused
// as overloaded (HTTP 429), so memory stays bounded and a burst never
// reaches the device as an unbounded queue. A request cancelled while it
// waits here never reaches the worker: its sink gets the final event from
// here. Load reports from the worker pass through, with the waiting count
// added, to the gateway.
//
//   submit ─ invalid ──────────────────────────> refused (no events)
//          ─ room here ──> WAITING (its set's queue) ──> its set ACTIVE and room in the worker ──> IN WORKER
//          ─ else ─────────────────────────────> refused: overloaded
//   IN WORKER ── final event (released) ──> gone; the active set and admissions are decided again
//   a quantum ends (a timer the queue asks for) ──> decided again
//   drain: refuse new submits; once nothing waits or runs here, drain the worker, then answer.
//   leave: hand each waiting request back to the gateway (requeue), then drain.
// Its load sink may be null (a cluster worker before its join completes):
// final events and requeues then wait here until attach names one.
// Linked to its worker: when either ends, both do, and the gateway (which
// monitors the scheduler) places the worker's requests elsewhere.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "actors/service_actors.h"
#include "runtime/admission_queue.h"
#include "runtime/request_validation.h"

namespace myriad::actors {

struct SchedulerActorOptions {
  std::string worker_id;        // e.g. "node1/cpu0"
  RequestLimits limits;         // the worker's engine limits; limits.num_slots is the active set's size in versions
  uint32_t max_in_worker = 64;  // requests inside the worker's engine at once
  uint32_t max_waiting = 1024;  // requests waiting here; more are refused (overloaded)
  double quantum_ms = 50.0;     // an active set gives way to waiting ones after this long
  bool timeslice = true;        // false: one FIFO here, the engine time-slices what it holds
  std::function<double()> now_ms;  // the clock (ms); null: steady_clock (tests inject one)
};

struct SchedulerActorState {
  struct Waiting {
    uint32_t attempt = 0;
    SubmitWire submit;
    event_sink_actor sink;
    std::string metrics_name;  // adapter_metrics_name: where a cancel here is counted
  };
  SchedulerActorOptions options;
  std::unique_ptr<AdmissionQueue> queue;
  std::unordered_map<uint64_t, Waiting> waiting;  // what the queue holds, by id
  double timer_at_ms = -1;                        // a decision tick is due then (< 0: none)
  // Requests cancelled while they waited here (the engine never saw them),
  // by adapter_metrics_name: the node adds them to the engine's figures.
  std::map<std::string, uint64_t> cancelled_waiting;
  worker_actor worker;
  load_sink_actor load_sink;
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
