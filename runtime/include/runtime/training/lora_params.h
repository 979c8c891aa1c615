// A LoRA adapter's trainable tensors (and, with the same shape, their
// gradients or an optimizer's moments) in a chosen precision: float for
// training, double for the gradient checks. Plain value type; PEFT layout
// (A [rank, in], B [out, rank]; delta y = scale * (x A^T) B^T).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "runtime/checkpoint.h"
#include "runtime/lora_weights.h"
#include "runtime/result.h"
#include "runtime/safetensors.h"

namespace myriad {

template <class Real>
struct LoraModuleParams {
  int32_t rank = 0;  // 0: the module is not trained in this layer
  Real scale = 0;    // alpha / rank
  std::vector<Real> a;  // [rank, in]
  std::vector<Real> b;  // [out, rank]
};

template <class Real>
struct LoraParams {
  int32_t num_layers = 0;
  std::vector<LoraModuleParams<Real>> modules;  // [layer * kNumLinearModules + module]

  const LoraModuleParams<Real>& at(int layer, LinearModule m) const {
    return modules[size_t(layer) * kNumLinearModules + size_t(m)];
  }
  LoraModuleParams<Real>& at(int layer, LinearModule m) { return modules[size_t(layer) * kNumLinearModules + size_t(m)]; }
  // Number of trainable values (A and B of every targeted module).
  int64_t size() const {
    int64_t n = 0;
    for (const auto& m : modules) n += int64_t(m.a.size() + m.b.size());
    return n;
  }
  // The same shape with every value zero (a gradient or a moment buffer).
  LoraParams zeros_like() const {
    LoraParams z = *this;
    for (auto& m : z.modules) {
      std::fill(m.a.begin(), m.a.end(), Real(0));
      std::fill(m.b.begin(), m.b.end(), Real(0));
    }
    return z;
  }
  void set_zero() {
    for (auto& m : modules) {
      std::fill(m.a.begin(), m.a.end(), Real(0));
      std::fill(m.b.begin(), m.b.end(), Real(0));
    }
  }
  // Calls f(value&) for every value in a fixed order (module order, A then B).
  template <class F>
  void for_each(F&& f) {
    for (auto& m : modules) {
      for (auto& v : m.a) f(v);
      for (auto& v : m.b) f(v);
    }
  }
};

// Which modules a job trains and at what rank (PEFT's target_modules over
// every layer).
struct LoraTargets {
  int32_t rank = 8;
  float alpha = 16.0f;
  bool modules[kNumLinearModules] = {true, true, true, true, true, true, true};
  // Layers [first_layer, num_layers) only (PEFT's layers_to_transform): a
  // mixture's experts routed from the prefill at that layer leave the layers
  // below it to the base.
  int32_t first_layer = 0;
};

// Targets from module names ("q_proj", ..., "down_proj"): kInvalidArgument
// naming an unknown one, or when none is named; rank and alpha as given.
Result<LoraTargets> lora_targets_named(const std::vector<std::string>& names, int32_t rank, float alpha);

// PEFT's initialisation: A ~ kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(in),
// 1/sqrt(in)), B = 0 (the adapter starts as the base model). Seeded: the same
// (config, targets, seed) give the same values.
LoraParams<float> init_lora_params(const ModelConfig& base, const LoraTargets& targets, uint64_t seed);

// Every trained module's A and B as float32 tensors "<prefix><module>.a" and
// ".b" (views into `p`: keep it alive until they are written), for the
// checkpoints of jobs and of training runs.
void add_lora_tensors(std::vector<TensorToWrite>& out, const LoraParams<float>& p, const std::string& prefix);
// Reads them back into `p`, whose shape says what must be there; kBadFile
// naming a tensor that is missing or misshaped (nothing else changes then
// only if the caller reads into a copy).
Status read_lora_tensors(const SafetensorsFile& f, LoraParams<float>& p, const std::string& prefix);

// One adapter whose delta is the weighted sum of the parts' deltas,
// sum_i w_i · scale_i · B_i A_i (a mixture of experts' top-k, as serving
// mixes their slots per row): per module, A stacks the parts' A rows
// (rank = the sum of their ranks), B their columns times w_i · scale_i,
// and the scale is 1. The parts must have one shape (the same base).
LoraParams<float> weighted_sum(const std::vector<std::pair<const LoraParams<float>*, double>>& parts);

// To the serving representation (float32, same layout) and back.
LoraWeights to_lora_weights(const LoraParams<float>& p, std::string name);
LoraParams<float> lora_params_from(const LoraWeights& w);

}  // namespace myriad
