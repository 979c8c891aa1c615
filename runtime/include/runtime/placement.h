// Which worker runs a request: pure logic over the workers' latest load
// reports, so the gateway actor and the simulator place alike.
//
// Policy (adapter affinity, then least loaded): a worker already holding
// every adapter of the request in a slot (or loading it) wins, unless it is
// busier than the least loaded worker by more than `affinity_slack` requests
// (then a second copy elsewhere is cheaper than the queue: hot adapters
// spread); otherwise the least loaded worker. Load counts what the report
// saw plus what the gateway placed since (reports lag). Draining workers are
// never chosen. Ties go to the lowest index, so placement is deterministic.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "runtime/adapter_id.h"
#include "runtime/request.h"
#include "runtime/result.h"

namespace myriad {

struct WorkerView {
  std::string id;                    // e.g. "node1/cpu0"
  uint32_t queued = 0;               // waiting for admission, as last reported
  uint32_t running = 0;              // in the running batch, as last reported
  uint32_t placed_since_report = 0;  // placed by the gateway after that report
  bool draining = false;             // refuses new requests
  std::vector<AdapterId> resident;   // versions in (or loading into) a slot

  uint32_t load() const { return queued + running + placed_since_report; }
  bool holds(const AdapterId& id) const;
};

struct PlacementOptions {
  uint32_t affinity_slack = 32;  // extra requests a warm worker may carry before a cold one is preferred
};

// The chosen worker's index; kUnavailable when every worker drains (or none).
Result<size_t> place(std::span<const WorkerView> workers, const std::vector<AdapterUse>& adapters,
                     const PlacementOptions& options = {});

}  // namespace myriad
