// What the engine measured, overall and per adapter: time to first token,
// inter-token latency, queue wait (submit -> first admission), end-to-end
// latency, outcome counts; adapter swaps, slot loads and their duration;
// batch occupancy. Updated by the engine thread without allocating per
// token (per-adapter entries are created at submission). Read it between
// steps; not thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "runtime/latency_histogram.h"
#include "runtime/request.h"

namespace myriad {

// The key of a request's per-adapter figures: "tenant/name" across
// versions, a mixture's experts joined by '+', "" for the base model.
std::string adapter_metrics_name(const std::vector<AdapterUse>& adapters);

struct RequestMetrics {
  LatencyHistogram ttft_ms;    // submit -> first token event
  LatencyHistogram itl_ms;     // between consecutive token events of a request
  LatencyHistogram queue_ms;   // submit -> first admission into the running batch
  LatencyHistogram e2e_ms;     // submit -> final event
  uint64_t submitted = 0;      // accepted
  uint64_t rejected = 0;       // submit() answered with an Error
  uint64_t finished = 0;       // final event kFinished with kStop or kLength
  uint64_t cancelled = 0;
  uint64_t deadline = 0;       // finished with kDeadline
  uint64_t failed = 0;         // final event kFailed
  uint64_t output_tokens = 0;  // token events
};

struct EngineMetrics {
  RequestMetrics overall;
  std::map<std::string, RequestMetrics> per_adapter;  // by "tenant/name" (all versions; a mixture "a+b"); "" = base model

  uint64_t steps = 0;             // executor steps run
  uint64_t step_failures = 0;     // executor steps that returned an error
  uint64_t swaps = 0;             // adapters swapped out at the quantum
  uint64_t slot_loads = 0;        // loads begun
  uint64_t load_failures = 0;
  uint64_t evictions = 0;
  uint64_t preemptions = 0;       // sequences whose KV was freed for recompute
  LatencyHistogram slot_load_ms;  // begin_load_adapter -> its completion applied
  LatencyHistogram step_device_ms;  // device time of a step, as the executor measured it
  // Host time of Engine::step around the executor, for steps that ran rows:
  // planning (scheduling, loads begun) and applying the result (sampling
  // bookkeeping, events to the sinks). What overlapping the next plan with
  // the device's step could hide at most.
  LatencyHistogram step_plan_ms;
  LatencyHistogram step_complete_ms;
  uint64_t rows_sum = 0;          // rows over all steps
  uint64_t tokens_sum = 0;        // new tokens over all steps
  int32_t max_running_seqs = 0;   // for occupancy
  int32_t max_tokens_per_step = 0;

  double batch_occupancy() const {  // mean rows per step / max_running_seqs
    return steps && max_running_seqs ? double(rows_sum) / double(steps) / max_running_seqs : 0.0;
  }
  double token_occupancy() const {  // mean tokens per step / max_tokens_per_step
    return steps && max_tokens_per_step ? double(tokens_sum) / double(steps) / max_tokens_per_step : 0.0;
  }
  // One JSON object (ms, counts; quantiles p50/p90/p99 of each histogram).
  std::string to_json() const;
};

}  // namespace myriad
