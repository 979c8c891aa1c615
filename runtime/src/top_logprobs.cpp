#include "runtime/top_logprobs.h"

#include <algorithm>
#include <cmath>

namespace myriad {

// One pass, each value against the smallest kept (k <= 20): a value enters
// only when strictly larger, so of equal values the lower id stays.
void top_logprobs_of(std::span<const float> z, double lse, uint32_t k, TopLogprobs& out) {
  const size_t n = std::min<size_t>({size_t(k), z.size(), size_t(kMaxTopLogprobs)});
  std::array<float, kMaxTopLogprobs> kept{};
  size_t count = 0;
  for (size_t i = 0; i < z.size() && n > 0; ++i) {
    const float v = z[i];
    if (std::isnan(v) || (count == n && !(v > kept[n - 1]))) continue;
    size_t pos = count < n ? count++ : n - 1;
    for (; pos > 0 && v > kept[pos - 1]; --pos) {
      kept[pos] = kept[pos - 1];
      out.entries[pos] = out.entries[pos - 1];
    }
    kept[pos] = v;
    out.entries[pos].token = int32_t(i);
  }
  out.count = uint8_t(count);
  for (size_t i = 0; i < count; ++i) out.entries[i].logprob = float(double(kept[i]) - lse);
}

}  // namespace myriad
