// The CLI's adapter plumbing, shared by `myriad logits` and `myriad generate`:
// `--adapter DIR[:weight]` (repeatable: a weighted mixture on every row) and
// `myriad logits --batch FILE.json` (rows with their own adapters, batched
// by the engine). Adapters are read and validated here, before any compute.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "args.h"
#include "runtime/checkpoint.h"
#include "runtime/dtype.h"
#include "runtime/lora_weights.h"
#include "runtime/result.h"

namespace myriad::cli {

struct AdapterSpec {
  std::string dir;
  float weight = 1.0f;
};

// "DIR" or "DIR:WEIGHT" (the text after the last ':' must be a finite number
// to count as a weight; otherwise the whole text is the folder).
Result<AdapterSpec> parse_adapter_spec(const std::string& text);
Result<std::vector<AdapterSpec>> parse_adapter_specs(const std::vector<std::string>& texts);

// The adapter folders a command names, each read and validated against the
// base model (nothing is used if one is bad).
class CliAdapters {
 public:
  // Reads and validates every distinct folder named in `specs` (any rank).
  static Result<CliAdapters> read(const std::vector<AdapterSpec>& specs, const ModelConfig& base);
  // The weights read from `dir` (null if it was not read).
  std::shared_ptr<const LoraWeights> weights_of(const std::string& dir) const;
  // The one adapter a set of specs makes: the folder's weights for a single
  // folder of weight 1, else their weighted mixture (mix_lora). Each folder
  // must have been read.
  std::shared_ptr<const LoraWeights> mixture(const std::vector<AdapterSpec>& specs) const;

 private:
  std::vector<std::string> dirs_;  // weights_[i] was read from dirs_[i]
  std::vector<std::shared_ptr<const LoraWeights>> weights_;
};

// `--adapter DIR[:weight]` flags of a command that goes through the engine:
// reads and validates the folders and gives the one adapter a request names,
// the weighted mixture made one adapter (mix_lora) unless it is a single
// folder of weight 1. Null when no --adapter was given.
Result<std::shared_ptr<const LoraWeights>> read_adapter_mixture(const std::vector<std::string>& flags,
                                                                const ModelConfig& base);

// `myriad logits --model DIR --batch FILE.json`: prints
// {"rows": [{"logits": [...]}, ...]} (last position of each row), every row
// in one forward step. With `moe` given, rows naming no adapters are routed
// to the mixture's experts (their row adds "experts"). Returns the process
// exit code.
int run_logits_batch(const std::string& model_dir, const std::string& batch_file, int threads,
                     std::optional<DType> kv_dtype, const MoeFlags& moe);

}  // namespace myriad::cli
