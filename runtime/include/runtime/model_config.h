// The base model's hyper-parameters, read from a Hugging Face config.json
// (model_type llama, mistral, qwen2). Immutable once parsed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/result.h"

namespace myriad {

enum class ModelArch : uint8_t { kLlama, kMistral, kQwen2 };

// Llama 3 style frequency scaling ("rope_type": "llama3").
struct RopeScaling {
  std::string type;                 // "llama3" (others are rejected as unsupported)
  float factor = 1.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  ModelArch arch = ModelArch::kLlama;
  std::string model_type;           // as written in config.json
  int64_t hidden_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;         // == num_heads without GQA
  int64_t head_dim = 0;             // hidden_size / num_heads unless given
  int64_t intermediate_size = 0;
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  float rope_theta = 10000.0f;
  std::optional<RopeScaling> rope_scaling;
  float rms_norm_eps = 1e-6f;
  bool tie_word_embeddings = false;
  bool attention_bias = false;      // q/k/v biases (qwen2 always; llama's attention_bias)
  bool o_proj_bias = false;         // o_proj bias too (llama attention_bias only; never qwen2)
  std::optional<int64_t> sliding_window;  // noted; only honoured if use_sliding_window
  bool use_sliding_window = false;  // qwen2: as written; mistral: sliding_window is set
  std::string torch_dtype;          // "float32" / "bfloat16" / "float16" as written
  std::vector<int64_t> bos_token_ids;
  std::vector<int64_t> eos_token_ids;

  int64_t q_dim() const { return num_heads * head_dim; }
  int64_t kv_dim() const { return num_kv_heads * head_dim; }
};

// Parses and validates config.json text; `source` names the file in errors,
// which also name the field and value. Checks: known model_type (else
// kUnsupported), positive dims within sane upper limits, heads divisible by
// kv heads, hidden == heads * head_dim unless head_dim is given, even
// head_dim, eps in (0, 1), rope_scaling null/"default"/"llama3" (other types
// kUnsupported), silu only, bos/eos ids in [0, vocab). See docs/checkpoints.md.
Result<ModelConfig> parse_model_config(std::string_view json_text, const std::string& source);
// Reads <model_dir>/config.json.
Result<ModelConfig> load_model_config(const std::string& model_dir);
// A config.json that parse_model_config reads back to an equal config.
std::string model_config_to_json(const ModelConfig& c);

}  // namespace myriad
