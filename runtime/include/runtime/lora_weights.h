// A LoRA adapter's weights in host memory, validated against a base model
// and converted to float32: the unit the host cache holds and a slot is
// loaded from. Immutable; shared by the cache and in-flight loads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/checkpoint.h"

namespace myriad {

struct LoraModuleWeights {
  int32_t rank = 0;           // 0 => module not targeted in this layer
  float scale = 0.0f;         // alpha / r, or alpha / sqrt(r) with rslora
  std::vector<float> a;       // [rank, in_features]
  std::vector<float> b;       // [out_features, rank]
};

struct LoraWeights {
  std::string name;           // adapter name (or path)
  int32_t num_layers = 0;
  std::vector<LoraModuleWeights> modules;  // [layer * kNumLinearModules + module]

  const LoraModuleWeights& at(int layer, LinearModule m) const {
    return modules[size_t(layer) * kNumLinearModules + size_t(m)];
  }
  LoraModuleWeights& at(int layer, LinearModule m) {
    return modules[size_t(layer) * kNumLinearModules + size_t(m)];
  }
  int32_t max_rank() const;
  size_t bytes() const;  // host bytes of A and B
};

// One part of a weighted mixture of adapters over the same base.
struct LoraMixPart {
  std::shared_ptr<const LoraWeights> weights;
  float weight = 1.0f;
};

// The mixture sum_i w_i s_i B_i A_i as one adapter: per module, A' stacks
// the parts' A_i ([sum r_i, in]) and B' puts their B_i side by side
// ([out, sum r_i]), each scaled by w_i s_i; scale 1. Equal to the mixture in
// real arithmetic (float sums may be ordered differently), at the price of
// the ranks' sum. The parts must share num_layers.
LoraWeights mix_lora(const std::vector<LoraMixPart>& parts, std::string name);

}  // namespace myriad
