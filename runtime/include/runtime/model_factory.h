// Random-weight Llama-family models written as Hugging Face folders, for
// tests, benchmarks and `myriad make-model`. Output is a pure function of
// (shape/config, seed, dtype, tokenizer): element i of tensor `name` is
// random_weight(seed, name, i, std), whatever the thread count or sharding.
// Stateless; make_model may be called from any thread (it uses its own pool).
#pragma once

#include <cstdint>
#include <optional>
#include <memory>
#include <string>
#include <string_view>

#include "runtime/dtype.h"
#include "runtime/lora_weights.h"
#include "runtime/model_config.h"
#include "runtime/result.h"

namespace myriad {

struct MakeModelOptions {
  std::string shape = "tiny";            // tiny | llama-110m | tinyllama-1.1b | llama-7b | llama3-8b
  std::optional<ModelConfig> config;     // overrides `shape` (any llama/mistral/qwen2 config)
  uint64_t seed = 0;
  DType dtype = DType::kBF16;
  std::string out_dir;                   // created if missing; our weight files in it are replaced
  std::string tokenizer_dir;             // empty: the built-in byte-level tokenizer
  float init_std = 0.02f;                // linear/embedding/bias weights ~ N(0, init_std^2)
  uint64_t max_shard_bytes = 4'000'000'000ull;  // larger models are sharded with an index
  int threads = 0;                       // 0: std::thread::hardware_concurrency()
};

// The named shape's config (model_type llama). `tiny` has the built-in
// tokenizer's vocabulary (260); the others keep their real vocab sizes.
Result<ModelConfig> model_shape(std::string_view name);

// Writes config.json, generation_config.json, tokenizer.json,
// tokenizer_config.json and model.safetensors (or model-0000i-of-0000N
// shards + model.safetensors.index.json when the weights exceed
// max_shard_bytes). Norm weights are 1; everything else ~ N(0, init_std^2).
// With tokenizer_dir, its tokenizer.json/tokenizer_config.json are copied,
// vocab_size becomes the tokenizer's size and bos/eos come from its config.
Status make_model(const MakeModelOptions& options);

// Element `index` of tensor `tensor_name` (before rounding to the dtype):
// splitmix64 counter stream keyed by (seed, FNV-1a of the name) + Box-Muller.
float random_weight(uint64_t seed, std::string_view tensor_name, uint64_t index, float std);

// A random LoRA adapter over `base`: every linear module of every layer at
// `rank`, A and B ~ N(0, std^2) from a splitmix stream of `seed`, scale
// alpha / rank. For demos, benches and tests (save_peft_adapter writes it).
std::shared_ptr<LoraWeights> random_lora(const ModelConfig& base, int32_t rank, float alpha, uint64_t seed,
                                         std::string name, float std = 0.02f);

// The built-in tokenizer: 256 byte tokens (GPT-2 byte-to-unicode strings, id
// = byte value), no merges, ByteLevel pre-tokenizer/decoder, then the
// specials <|begin_of_text|> 256, <|end_of_text|> 257, <|im_start|> 258,
// <|im_end|> 259. The config carries a ChatML chat_template.
inline constexpr int64_t kBuiltinTokenizerVocab = 260;
std::string builtin_tokenizer_json();
std::string builtin_tokenizer_config_json();

}  // namespace myriad
