// The seam through which LoRA deltas enter the CPU forward pass. After each
// of the seven linear projections of a layer (bias included), CpuExecutor
// calls apply() (apply_group() for projections sharing an input), which
// adds each token's adapter mix's low-rank delta s * B (A x) to y in place.
// The LoRA helper implements it; null = no adapters.
//
// Called from the executor's thread during step(); an implementation may use
// the executor's ThreadPool (not from inside a parallel region).
#pragma once

#include <span>

#include "runtime/checkpoint.h"
#include "runtime/step_plan.h"

namespace myriad::gpu::cpu {

class CpuLoraHook {
 public:
  virtual ~CpuLoraHook() = default;
  // x: [T, in] the projection's input; y: [T, out] its output, updated in
  // place; per_token.size() == T; in/out from linear_module_shape(config, m).
  virtual void apply(int layer, LinearModule m, const float* x, float* y,
                     std::span<const AdapterMix> per_token) = 0;
  // Modules that share x (q, k, v; gate, up): ys[i] is module ms[i]'s
  // output. The same sums as one apply per module, in order; an
  // implementation may read their weights in one pass.
  virtual void apply_group(int layer, std::span<const LinearModule> ms, const float* x,
                           std::span<float* const> ys, std::span<const AdapterMix> per_token) {
    for (size_t i = 0; i < ms.size(); ++i) apply(layer, ms[i], x, ys[i], per_token);
  }
};

}  // namespace myriad::gpu::cpu
