// The gateway actor: the front door of the service. For each Generate of an
// authenticated caller (the front ends check keys) it asks the registry to
// resolve the model and pin the version for this request, places the request
// on a worker (runtime/placement.h: adapter affinity by slot then host memory,
// replication past a bound, power of two choices by load in tokens, over
// the workers' latest load reports), and submits it to that worker's
// scheduler actor; the answer (accepted with its id, or refused: notFound,
// invalidArgument, overloaded, unavailable) goes back to the front end. It
// names the front end's sink in the submit, so the worker sends each event
// straight there (one hop per token), and when the request's final event
// comes back through the scheduler (released) unpins the version (a delete
// may be waiting) and forgets the route. Events sent to the gateway itself
// (event_atom) are relayed to the route's client the same way.
//
//   generate ─ draining ─────────────────────────────> refused: unavailable
//            ─ resolve+pin ─ refused ─────────────────> refused (notFound ...)
//                          ─ place ─ no worker ───────> unpin, refused: unavailable
//                                  ─ scheduler refuses > unpin, refused (invalidArgument, overloaded)
//                                  ─ accepted ────────> ROUTED ─ released (final event) ─> unpin, forgotten
//   cancel(id) ─ ROUTED ─> the scheduler of its worker (its final event follows)
//   drain: refuse new generates; drain every scheduler; answer when all have.
//
// Request ids: the front end's when it gives one (unique: the node makes them
// from its clock), else the gateway's own.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "actors/service_actors.h"
#include "runtime/placement.h"

namespace myriad::actors {

struct GatewayOptions {
  std::string base_model;  // the name of the served base model
  PlacementOptions placement;
  uint64_t placement_seed = 1;  // the draws of power of two choices (fixed: tests replay)
  // While no worker can take a request (none joined yet, all lost), it is
  // held here, up to this long (or its own deadline), then fails as
  // unavailable; at most max_held at once, beyond that refused at once.
  double max_wait_for_worker_ms = 30000;
  uint32_t max_held = 1024;
  // A worker unheard this long is lost, as if its process had died (a host
  // gone without closing its connections, a cut link); checked every half
  // of it; 0 = never. A worker reports every 100 ms: its load between steps,
  // or, while its step thread is inside a long step, a bare heartbeat from
  // its actor, so a long step is not a death (a hung device shows as a
  // growing report age instead). Off in one node (its only worker, once
  // lost, is not replaced); myriad-node's gateway role sets 10 s.
  double heartbeat_timeout_ms = 0;
  // Before placing a request again, the gateway asks its client's sink which
  // tokens the client has (to resume after them); without an answer this
  // soon, it restarts from the prompt (the sink still sends each index once).
  double resume_query_timeout_ms = 2000;
  // Lost workers stay listed (the metrics and /admin/cluster show them down)
  // up to this many; beyond it the oldest are forgotten, so workers that come
  // and go do not grow the list without end.
  size_t max_lost_listed = 16;
  // How often workers report (WorkerSetup::report_interval_ms): heartbeats
  // missed = time unheard / this, less one.
  double heartbeat_interval_ms = 100;
  // drain: true (one node): drain every worker too; false (a cluster's
  // gateway): stop taking requests, answer once every routed one has ended,
  // and leave the workers serving (for the next gateway).
  bool drain_workers = true;
  // A cluster's fine-tuning job host, told (leave) of each worker lost by
  // its heartbeats, so its jobs move too (one lost by its link going down,
  // the job host sees itself). Null: none.
  job_host_actor job_host;
};

struct GatewayState {
  struct Worker {
    WorkerView view;
    uint64_t last_seq = 0;
    scheduler_actor scheduler;
    bool lost = false;  // its scheduler went down or its heartbeats stopped: never placed on again
    caf::actor_clock::time_point last_heard{};   // its join or its latest load report or heartbeat
    caf::actor_clock::time_point last_report{};  // its join or its latest full load report
    uint32_t total_slots = 0;  // as last reported
    float step_ms = 0;         // mean device time of its recent steps, as last reported
    std::string device;        // as last reported
    // What it served since it started, as last reported.
    uint64_t output_tokens = 0, requests = 0, slot_loads = 0, swaps = 0;
    float ttft_p50_ms = 0, ttft_p99_ms = 0, itl_p50_ms = 0, itl_p99_ms = 0;
  };
  struct Route {
    event_sink_actor client;
    size_t worker = 0;
    std::vector<AdapterId> adapters;  // pinned (one, or a mixture's experts); unpinned after the final event
    uint32_t attempt = 0;
    Request request;  // as submitted, to place it again if its worker is lost
    std::chrono::steady_clock::time_point held_at{};  // when it began to wait for a worker (worker == kHeld)
    std::chrono::steady_clock::time_point since{};    // when the gateway accepted it: its deadline counts from here
    // The front end's answer while the first worker has not answered the submit.
    std::optional<caf::typed_response_promise<AcceptedWire>> answer{};
    std::string model{};  // what runs, for that answer
  };
  static constexpr size_t kHeld = ~size_t(0);  // Route::worker of a request waiting for a worker
  // Route::worker while the gateway asks the client's sink where to resume (its worker was lost).
  static constexpr size_t kResuming = ~size_t(0) - 1;
  static bool on_a_worker(const Route& r) { return r.worker != kHeld && r.worker != kResuming; }
  GatewayOptions options;
  registry_actor registry;
  std::vector<Worker> workers;
  std::unordered_map<uint64_t, Route> routes;
  uint64_t next_id = 1;
  bool draining = false;
  std::mt19937_64 draws{1};  // seeded from options.placement_seed
  std::deque<uint64_t> held;  // ids waiting for a worker, oldest first (cancelled ones linger until reached)
  std::vector<caf::typed_response_promise<bool>> drains;
  uint64_t placed_again = 0;  // requests placed on another worker after theirs was lost or left
  // Of those, the ones resumed after tokens their client had (prefilled, not
  // sent again), and those tokens.
  uint64_t resumed = 0, resumed_tokens = 0;
  // Placements of adapter requests, and those onto a worker that held the
  // adapter in a slot (resident) or only in host memory, by its latest report.
  uint64_t placed_adapter = 0, placed_resident = 0, placed_host_cached = 0;  // !options.drain_workers: answered once routes is empty
};

gateway_actor::behavior_type gateway_behavior(gateway_actor::stateful_pointer<GatewayState> self,
                                              registry_actor registry, GatewayOptions options);

}  // namespace myriad::actors
