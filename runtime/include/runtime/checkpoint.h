// A Hugging Face model folder: config.json, generation_config.json and one
// or more memory-mapped safetensors shards (model.safetensors, or shards
// listed in model.safetensors.index.json). Validated against the config:
// every expected tensor present with the right shape, nothing unexpected.
// Immutable after load; shared by every executor.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "runtime/generation_config.h"
#include "runtime/model_config.h"
#include "runtime/safetensors.h"

namespace myriad {

// The seven LoRA-targetable linear modules of a Llama-family layer.
enum class LinearModule : uint8_t { kQ, kK, kV, kO, kGate, kUp, kDown };
inline constexpr int kNumLinearModules = 7;
const char* linear_module_name(LinearModule m);  // "q_proj", ..., "down_proj"
// [out_features, in_features] of module m in the given model.
std::pair<int64_t, int64_t> linear_module_shape(const ModelConfig& c, LinearModule m);

// Tensor names and shapes a checkpoint of this config must hold, in file
// order: embed, then per layer (norms, attention, MLP), final norm, lm_head.
struct ExpectedTensor {
  std::string name;
  std::vector<int64_t> shape;
};
std::vector<ExpectedTensor> expected_tensors(const ModelConfig& c);

// Per-layer weights as views into the mapped shards (no copies).
struct LayerWeights {
  TensorView input_norm, post_attn_norm;             // [hidden]
  TensorView q, k, v, o;                             // [out, in]
  TensorView q_bias, k_bias, v_bias;                 // [out] (qwen2, llama attention_bias), else empty
  TensorView o_bias;                                 // [hidden] (llama attention_bias only), else empty
  TensorView gate, up, down;                         // [out, in]
  const TensorView& linear(LinearModule m) const;
};

class Checkpoint {
 public:
  // Reads config.json, generation_config.json (optional) and either
  // model.safetensors or the shards named by model.safetensors.index.json.
  // Errors (kBadFile, kNotFound, kUnsupported) name the file and the tensor
  // or field: a missing/unexpected/misshaped tensor, linear weights of mixed
  // dtypes, a NaN or infinite element in any weight, an index naming a shard
  // outside the folder, and every safetensors-level problem
  // SafetensorsFile::open reports.
  static Result<std::shared_ptr<const Checkpoint>> load(const std::string& model_dir);

  const std::string& dir() const { return dir_; }
  const ModelConfig& config() const { return config_; }
  const GenerationConfig& generation_config() const { return generation_; }
  DType dtype() const { return dtype_; }  // dtype of the linear weights
  const TensorView& embed_tokens() const { return embed_; }   // [vocab, hidden]
  const TensorView& final_norm() const { return final_norm_; }  // [hidden]
  const TensorView& lm_head() const { return lm_head_; }      // [vocab, hidden]; embed when tied
  const std::vector<LayerWeights>& layers() const { return layers_; }
  const TensorView* find(std::string_view name) const;
  // The mapped files, in load order (one, or the index's shards sorted).
  const std::vector<std::shared_ptr<SafetensorsFile>>& shards() const { return shards_; }

 private:
  std::string dir_;
  ModelConfig config_;
  GenerationConfig generation_;
  DType dtype_ = DType::kF32;
  std::vector<std::shared_ptr<SafetensorsFile>> shards_;
  TensorView embed_, final_norm_, lm_head_;
  std::vector<LayerWeights> layers_;
  std::unordered_map<std::string, const TensorView*> by_name_;  // into shards_
  friend class CheckpointLoader;
};

}  // namespace myriad
