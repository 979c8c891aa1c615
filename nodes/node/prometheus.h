// The node's /metrics page in Prometheus text format (version 0.0.4), from
// the engine's metrics JSON (EngineMetrics::to_json) and the worker's live
// counts: request outcomes and token counters, TTFT / ITL / queue /
// end-to-end latency quantiles (overall and per tenant), steps, swaps, slot
// loads and their latency, preemptions, queue depths, batch occupancy.
// Pure; thread-safe.
#pragma once

#include <string>

#include "runtime/engine_worker.h"

namespace myriad::node {

std::string prometheus_text(const std::string& metrics_json, const EngineWorkerStats& live, bool draining);

}  // namespace myriad::node
