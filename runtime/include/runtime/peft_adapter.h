// PEFT LoRA adapters (a Hugging Face PEFT folder: adapter_config.json +
// adapter_model.safetensors) read, validated against the base model and
// converted to LoraWeights (float32; A [r, in], B [out, r]; per-module rank
// and scale after rank_pattern / alpha_pattern / use_rslora).
//
// Invariant: an adapter is either fully valid and fully loaded, or rejected
// with an Error naming the file, field or tensor and the value at fault;
// never partially loaded. Module selection follows PEFT exactly:
// target_modules as a list (a module path equals an entry or ends with
// ".entry"; layers_to_transform applies) or a regex string (full match on the
// module path, e.g. "model.layers.3.self_attn.q_proj"; layers_to_transform
// does not apply, as in PEFT); rank_pattern / alpha_pattern keys match a
// module path that ends with the key (regex) after a "." or equals it.
//
// Stateless free functions; thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/lora_weights.h"
#include "runtime/model_config.h"
#include "runtime/result.h"

namespace myriad {

struct PeftAdapterConfig {
  std::string source;                      // the file, for messages
  int32_t r = 8;
  float lora_alpha = 8.0f;
  bool use_rslora = false;
  std::vector<std::string> target_modules;  // list form ("all-linear" expands to the seven)
  std::optional<std::string> target_regex;  // string form (full match)
  std::vector<std::string> exclude_modules;  // list form (newer PEFT); same matching as targets
  std::optional<std::string> exclude_regex;
  std::vector<std::pair<std::string, int32_t>> rank_pattern;   // in file order
  std::vector<std::pair<std::string, float>> alpha_pattern;    // in file order
  std::optional<std::vector<int64_t>> layers_to_transform;
  bool fan_in_fan_out = false;  // PEFT forces it off for nn.Linear (Llama-family), and so do we
  std::string base_model_name_or_path;
  std::string task_type;
};

// Parses adapter_config.json text. Rejects what Myriad cannot apply
// (kUnsupported: use_dora, bias != "none", modules_to_save, lora_bias,
// layer_replication, a peft_type other than LORA) and malformed fields (kBadFile).
Result<PeftAdapterConfig> parse_peft_config(std::string_view json_text, const std::string& source);

// The module path PEFT matches targets against, e.g. "model.layers.3.mlp.down_proj".
std::string peft_module_path(int64_t layer, LinearModule m);
// The saved tensor name, e.g. "base_model.model.model.layers.3.mlp.down_proj.lora_A.weight".
std::string peft_tensor_name(int64_t layer, LinearModule m, bool lora_b);

struct PeftLoadOptions {
  int32_t max_rank = 64;  // the executor's slot capacity; larger ranks are rejected
  std::string name;       // LoraWeights::name (default: the folder)
};

// Reads <dir>/adapter_config.json and <dir>/adapter_model.safetensors.
Result<std::shared_ptr<const LoraWeights>> load_peft_adapter(const std::string& dir, const ModelConfig& base,
                                                             const PeftLoadOptions& options = {});

// Writes `w` as a PEFT folder (float32 tensors, a config listing the targeted
// modules with rank_pattern / alpha_pattern where ranks differ). What it
// writes loads back in PEFT unchanged.
Status save_peft_adapter(const std::string& dir, const LoraWeights& w, const std::string& base_model_name_or_path);

}  // namespace myriad
