// Which worker runs a request: pure logic over the workers' latest load
// reports, so the gateway actor and the simulator place alike.
//
// Policy, in order:
// 1. Affinity: the workers holding every adapter of the request in a slot
//    (or loading it) come first, then those holding them all in host memory
//    (a slot load from RAM, no fetch), then the rest.
// 2. Replication: a warm worker is passed over once its load exceeds the
//    least loaded worker's by more than `replicate_above_tokens`: the
//    request goes a tier colder, which loads a second copy there (a hot
//    adapter spreads instead of queueing on one device).
// 3. Load: among the workers of the chosen tier, the less loaded of two
//    drawn at random (power of two choices: reports lag, and always taking
//    the least loaded would send a burst to one worker until its next
//    report), or simply the least loaded when `power_of_two` is off.
// Load is in tokens: what waits and runs there (prompt to prefill plus
// output still to come), as last reported, plus what the gateway placed
// since. Draining workers are never chosen. Ties go to the lower index, and
// the draw is the caller's, so placement is deterministic.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/adapter_id.h"
#include "runtime/request.h"
#include "runtime/result.h"

namespace myriad {

struct WorkerView {
  std::string id;                          // e.g. "node1/cpu0"
  uint32_t queued = 0;                     // requests waiting for admission, as last reported
  uint32_t running = 0;                    // requests in the running batch, as last reported
  uint64_t pending_tokens = 0;             // tokens to compute for queued and running requests, as last reported
  uint64_t placed_tokens_since_report = 0; // prompt + max tokens of requests placed by the gateway after that report
  uint32_t placed_since_report = 0;        // those requests
  bool draining = false;                   // refuses new requests
  std::vector<AdapterId> resident;         // versions in (or loading into) a slot
  std::vector<AdapterId> host_cached;      // versions in the worker's host memory

  uint64_t load() const { return pending_tokens + placed_tokens_since_report; }
  bool holds(const AdapterId& id) const;      // in a slot
  bool has_cached(const AdapterId& id) const;  // in host memory
};

// kAffinity: the policy above. kLeastLoaded: load only (step 3 over every
// worker taking requests, wherever adapters are). kRandom: uniformly at
// random among them (the baseline bench/cluster and the simulator compare with).
enum class PlacementPolicy : uint8_t { kAffinity, kLeastLoaded, kRandom };
const char* placement_policy_name(PlacementPolicy p);  // "affinity", "least-loaded", "random"
Result<PlacementPolicy> parse_placement_policy(std::string_view s);

struct PlacementOptions {
  // Tokens a warm worker may carry beyond the least loaded before a colder
  // one gets the request (and a copy of its adapter).
  uint64_t replicate_above_tokens = 4096;
  bool power_of_two = true;
  PlacementPolicy policy = PlacementPolicy::kAffinity;
};

// How warm a worker is for these adapters: 2 = every one in a slot, 1 =
// every one in a slot or host memory, 0 = otherwise (and for the base).
int affinity_tier(const WorkerView& worker, const std::vector<AdapterUse>& adapters);

// The chosen worker's index; kUnavailable when every worker drains (or
// none). `draw`: a random number from the caller (power of two choices).
Result<size_t> place(std::span<const WorkerView> workers, const std::vector<AdapterUse>& adapters,
                     const PlacementOptions& options = {}, uint64_t draw = 0);

}  // namespace myriad
