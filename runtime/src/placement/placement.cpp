#include "runtime/placement.h"

#include <algorithm>
#include <limits>

namespace myriad {

bool WorkerView::holds(const AdapterId& id) const {
  return std::find(resident.begin(), resident.end(), id) != resident.end();
}

bool WorkerView::has_cached(const AdapterId& id) const {
  return std::find(host_cached.begin(), host_cached.end(), id) != host_cached.end();
}

int affinity_tier(const WorkerView& w, const std::vector<AdapterUse>& adapters) {
  if (adapters.empty()) return 0;
  auto all = [&](auto&& has) {
    return std::all_of(adapters.begin(), adapters.end(), [&](const AdapterUse& u) { return has(u.id); });
  };
  if (all([&](const AdapterId& id) { return w.holds(id); })) return 2;
  if (all([&](const AdapterId& id) { return w.holds(id) || w.has_cached(id); })) return 1;
  return 0;
}

const char* placement_policy_name(PlacementPolicy p) {
  switch (p) {
    case PlacementPolicy::kAffinity: return "affinity";
    case PlacementPolicy::kLeastLoaded: return "least-loaded";
    case PlacementPolicy::kRandom: return "random";
  }
  return "?";
}

Result<PlacementPolicy> parse_placement_policy(std::string_view s) {
  for (PlacementPolicy p : {PlacementPolicy::kAffinity, PlacementPolicy::kLeastLoaded, PlacementPolicy::kRandom})
    if (s == placement_policy_name(p)) return p;
  return make_error(ErrorCode::kInvalidArgument,
                    "placement '" + std::string(s) + "': expected affinity, least-loaded or random");
}

Result<size_t> place(std::span<const WorkerView> workers, const std::vector<AdapterUse>& adapters,
                     const PlacementOptions& options, uint64_t draw) {
  constexpr size_t kNone = std::numeric_limits<size_t>::max();
  size_t least = kNone;
  for (size_t i = 0; i < workers.size(); ++i)
    if (!workers[i].draining && (least == kNone || workers[i].load() < workers[least].load())) least = i;
  if (least == kNone)
    return make_error(ErrorCode::kUnavailable,
                      workers.empty() ? "no worker is configured" : "every worker is draining");
  if (options.policy == PlacementPolicy::kRandom) {
    std::vector<size_t> live;
    for (size_t i = 0; i < workers.size(); ++i)
      if (!workers[i].draining) live.push_back(i);
    return live[size_t(draw % live.size())];
  }
  // The warmest tier with a worker inside the replication bound.
  const uint64_t bound = workers[least].load() + options.replicate_above_tokens;
  int tier = 0;
  std::vector<int> tiers(workers.size(), -1);
  for (size_t i = 0; i < workers.size(); ++i) {
    if (workers[i].draining) continue;
    tiers[i] = options.policy == PlacementPolicy::kAffinity ? affinity_tier(workers[i], adapters) : 0;
    if (tiers[i] > tier && workers[i].load() <= bound) tier = tiers[i];
  }
  std::vector<size_t> candidates;
  for (size_t i = 0; i < workers.size(); ++i)
    if (tiers[i] == tier && (tier == 0 || workers[i].load() <= bound)) candidates.push_back(i);
  auto lighter = [&](size_t a, size_t b) {
    return workers[b].load() < workers[a].load() || (workers[b].load() == workers[a].load() && b < a) ? b : a;
  };
  const size_t n = candidates.size();
  if (options.power_of_two && n >= 3) {
    const size_t a = size_t(draw % n);
    const size_t b = (a + 1 + size_t((draw / n) % (n - 1))) % n;  // a second, distinct one
    return lighter(candidates[a], candidates[b]);
  }
  size_t best = candidates.front();
  for (size_t c : candidates) best = lighter(best, c);
  return best;
}

}  // namespace myriad
