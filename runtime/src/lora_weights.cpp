#include "runtime/lora_weights.h"

#include <algorithm>

namespace myriad {

int32_t LoraWeights::max_rank() const {
  int32_t r = 0;
  for (const auto& m : modules) r = std::max(r, m.rank);
  return r;
}

size_t LoraWeights::bytes() const {
  size_t n = 0;
  for (const auto& m : modules) n += (m.a.size() + m.b.size()) * sizeof(float);
  return n;
}

}  // namespace myriad
