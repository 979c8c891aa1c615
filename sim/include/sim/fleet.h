// The simulator: W workers, each the real runtime Engine (its Scheduler's
// time-sliced active set, admission, KV blocks, deadlines) over a
// SimExecutor, optionally behind the scheduler actor's AdmissionQueue
// (runtime/admission_queue.h, as the node runs it: FleetOptions::admission),
// behind runtime's placement, driven by one discrete-event loop
// on a virtual clock. Nothing here sleeps or spawns a thread, so a run is a
// pure function of its options and seed.
//
// Events, in time order (ties in the order they were scheduled):
//   arrival        a request is placed (runtime place() over the workers'
//                  last reports) and submitted to that worker's engine
//   step done      the worker's engine applies the step (Engine::complete_step),
//                  then plans the next one (Engine::plan_step) if it has work;
//                  the step's cost comes from the CostModel
//   load done      a slot load ends (the executor's copy engine)
//   fetch done     an adapter reaches the worker's host cache (an LRU of
//                  host_cache_adapters adapters; a hit answers at once)
//   admit          the worker's AdmissionQueue decides again (after a
//                  request ended there, as the released message does, or at
//                  the quantum's end it asked for)
//   report         every report_interval_ms each worker's load, slots and
//                  host-cached adapters become what placement sees (the
//                  gateway's lag), as WorkerLoad does in the service
//   failure        a worker dies at a given time: its requests are placed
//                  again from their prompts, counted as replaced
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/latency_histogram.h"
#include "runtime/placement.h"
#include "runtime/scheduler_config.h"
#include "sim/cost_model.h"
#include "sim/sim_executor.h"
#include "sim/workload.h"

namespace myriad::sim {

struct WorkerFailure {
  double at_s = 0;
  int32_t worker = 0;
};

// Workers that differ from the fleet's defaults: `count` of them with their
// own adapter slots and device (cost model). Groups take the first workers
// in order; the rest use FleetOptions' engine and cost.
struct WorkerGroup {
  int32_t count = 1;
  int32_t slots = 16;
  CostModel cost;
};

// What stands between placement and each worker's engine.
enum class SimAdmission : uint8_t {
  kEngine,     // nothing: every request goes straight into the engine, whose time slice chooses
  kTimeslice,  // the node's scheduler actor (--admission timeslice): its AdmissionQueue's active set
  kFifo,       // the node's --admission fifo: a FIFO, at most max_in_worker in the engine
};
const char* sim_admission_name(SimAdmission a);  // "engine", "timeslice", "fifo"
Result<SimAdmission> parse_sim_admission(std::string_view s);

struct FleetOptions {
  int32_t workers = 1;
  SimAdmission admission = SimAdmission::kEngine;
  // Requests in a worker's engine at once under kTimeslice / kFifo; 0: the
  // node's rule (2 x or 4 x max_running_seqs). More wait, up to max_waiting;
  // beyond that a request fails (the node's 429).
  uint32_t max_in_worker = 0;
  uint32_t max_waiting = 1024;
  std::vector<WorkerGroup> groups;
  SchedulerConfig engine;        // per worker: policy, slots, quantum, batch and KV sizes
  SimExecutorOptions device;     // per worker (slots and KV are taken from `engine`)
  CostModel cost;
  PlacementOptions placement;
  uint64_t placement_seed = 1;
  double report_interval_ms = 100;
  int32_t host_cache_adapters = 256;  // per worker
  int32_t adapter_rank = 16;
  double slo_ttft_ms = 2000;           // SLO attainment: requests whose first token came this soon
  std::vector<WorkerFailure> failures;
};

Status validate(const FleetOptions& o);

// One tenant's share of a run (with several tenants: WorkloadOptions::tenant_shares).
struct TenantResult {
  uint64_t requests = 0, completed = 0, output_tokens = 0;
  LatencyHistogram ttft_ms;
};

struct SimResult {
  uint64_t requests = 0, completed = 0, failed = 0, unfinished = 0, replaced = 0;
  uint64_t output_tokens = 0;
  double simulated_s = 0;      // virtual time when the last request ended
  double throughput_tok_s = 0; // output tokens / simulated_s
  LatencyHistogram ttft_ms, itl_ms, e2e_ms;
  double slo_attainment = 0;   // share of completed requests with TTFT <= slo_ttft_ms
  double jain_fairness = 0;    // Jain's index over adapters of 1 / their mean TTFT (1 = all equal)
  uint64_t swaps = 0, slot_loads = 0, fetches = 0, steps = 0, preemptions = 0;
  double slot_occupancy = 0;   // mean share of slots holding an adapter, sampled at reports
  double busy_share = 0;       // device time of the steps / (simulated time x workers)
  double rows_per_step = 0;    // mean rows of a step that ran
  double affinity_hit_rate = 0;  // adapter requests placed on a worker holding the adapter in a slot
  uint64_t events = 0;
  double wall_s = 0;
  std::vector<TenantResult> tenants;  // one per tenant
};

// Progress: called now and then with the share of the simulated duration done.
using Progress = std::function<void(double share)>;

Result<SimResult> simulate(const FleetOptions& fleet, const WorkloadOptions& workload, const Progress& progress = {});

// One JSON object, keys in a fixed order, numbers printed alike on every run
// (so two runs with the same seed print the same bytes, wall_s aside); with
// several tenants, a "tenants" array of their requests, tokens and TTFT.
std::string to_json(const SimResult& r);
// The same fields in the same order, as (name, formatted value): a CSV row.
std::vector<std::pair<std::string, std::string>> result_fields(const SimResult& r);

}  // namespace myriad::sim
