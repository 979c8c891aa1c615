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

// An adapter already laid out as one executor's slots hold it (its dtype,
// padded to its slots' max rank) in memory it copies from fastest (pinned
// for CUDA), made by Executor::stage_adapter as the adapter enters the host
// cache, so that a slot load is one copy. Opaque outside that executor.
// Immutable; freed when the last LoraWeights holding it goes.
class StagedAdapter {
 public:
  virtual ~StagedAdapter() = default;
  virtual size_t bytes() const = 0;  // host memory it holds
};

struct LoraWeights {
  std::string name;           // adapter name (or path)
  int32_t num_layers = 0;
  // [layer * kNumLinearModules + module]. Staged weights keep every module's
  // rank and scale but may drop A and B (has_host_weights() is then false):
  // only the executor that staged them can load them.
  std::vector<LoraModuleWeights> modules;
  std::shared_ptr<const StagedAdapter> staged;  // null unless an executor staged them

  const LoraModuleWeights& at(int layer, LinearModule m) const {
    return modules[size_t(layer) * kNumLinearModules + size_t(m)];
  }
  LoraModuleWeights& at(int layer, LinearModule m) {
    return modules[size_t(layer) * kNumLinearModules + size_t(m)];
  }
  int32_t max_rank() const;
  size_t bytes() const;  // host bytes of A and B, and of the staged form
  // Whether every targeted module's A and B are here in float32.
  bool has_host_weights() const;
};

// What Executor::stage_adapter returns: `w`'s name, layers, ranks and scales
// (the engine sizes loads by them) with `staged` in place of A and B.
std::shared_ptr<const LoraWeights> staged_lora(const LoraWeights& w, std::shared_ptr<const StagedAdapter> staged);

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
