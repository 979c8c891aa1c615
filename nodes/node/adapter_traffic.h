// What the node's clients got from each adapter, measured where requests
// enter and leave the service (NodeService::generate, for HTTP and RPC
// alike): requests, outcomes, tokens, time to first token, inter-token
// latency and end to end. The engine's per-adapter metrics are the same
// figures seen from one worker; these exist on a cluster's gateway too,
// which runs no engine, and cover every worker. The web console's adapter
// list reads them (console_api.h).
//
// Thread-safe: events are counted from whichever thread delivers them.
#pragma once

#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "runtime/engine_events.h"
#include "runtime/latency_histogram.h"

namespace myriad::node {

class AdapterTraffic {
 public:
  using EventCallback = std::function<void(const RequestEvent&)>;

  struct Figures {
    uint64_t requests = 0;   // accepted
    uint64_t finished = 0;   // ended with stop or length
    uint64_t cancelled = 0;  // cancelled or past their deadline
    uint64_t failed = 0;
    uint64_t output_tokens = 0;
    LatencyHistogram ttft_ms;  // accepted -> first token
    LatencyHistogram itl_ms;   // between a request's consecutive tokens
    LatencyHistogram e2e_ms;   // accepted -> final event
  };

  // `inner` wrapped so the request's events are counted under `adapter`
  // ("tenant/name", every version together) as they pass; the clock starts now.
  EventCallback count(const std::string& adapter, EventCallback inner);
  // The request was accepted (its events will follow).
  void accepted(const std::string& adapter);
  // nullopt: never counted.
  std::optional<Figures> figures(const std::string& adapter) const;

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::string, Figures> by_adapter_;
};

}  // namespace myriad::node
