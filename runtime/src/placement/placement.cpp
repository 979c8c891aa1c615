#include "runtime/placement.h"

#include <algorithm>
#include <limits>

namespace myriad {

bool WorkerView::holds(const AdapterId& id) const {
  return std::find(resident.begin(), resident.end(), id) != resident.end();
}

Result<size_t> place(std::span<const WorkerView> workers, const std::vector<AdapterUse>& adapters,
                     const PlacementOptions& options) {
  constexpr size_t kNone = std::numeric_limits<size_t>::max();
  size_t least = kNone, warm = kNone;
  for (size_t i = 0; i < workers.size(); ++i) {
    const WorkerView& w = workers[i];
    if (w.draining) continue;
    if (least == kNone || w.load() < workers[least].load()) least = i;
    const bool holds_all =
        !adapters.empty() &&
        std::all_of(adapters.begin(), adapters.end(), [&](const AdapterUse& u) { return w.holds(u.id); });
    if (holds_all && (warm == kNone || w.load() < workers[warm].load())) warm = i;
  }
  if (least == kNone)
    return make_error(ErrorCode::kUnavailable,
                      workers.empty() ? "no worker is configured" : "every worker is draining");
  if (warm != kNone && workers[warm].load() <= workers[least].load() + options.affinity_slack) return warm;
  return least;
}

}  // namespace myriad
