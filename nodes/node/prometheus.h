// The node's /metrics page in Prometheus text format (version 0.0.4), from
// the engine's metrics JSON (EngineMetrics::to_json) and the worker's live
// counts: request outcomes and token counters, TTFT / ITL / queue /
// end-to-end latency quantiles (overall and per tenant), steps, swaps, slot
// loads and their latency, preemptions, queue depths, batch occupancy.
// Pure; thread-safe.
#pragma once

#include <cstdint>
#include <map>

#include <string>

#include "runtime/engine_worker.h"

namespace myriad::node {

std::string prometheus_text(const std::string& metrics_json, const EngineWorkerStats& live, bool draining);

// Fine-tuning's lines: jobs by status (gauge), trained tokens, optimizer
// steps and published versions since the node started (counters).
std::string prometheus_fine_tuning_text(const std::map<std::string, int64_t>& jobs_by_status, int64_t trained_tokens,
                                        int64_t steps, int64_t versions);

}  // namespace myriad::node
