// The CLI's adapter plumbing, shared by `myriad logits` and `myriad generate`:
// `--adapter DIR[:weight]` (repeatable: a weighted mixture on every row) and
// `myriad logits --batch FILE.json` (rows with their own adapters, all in one
// batched forward step). Owned by the LoRA work; the commands call in here.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gpu/cpu/cpu_executor.h"
#include "runtime/checkpoint.h"
#include "runtime/result.h"
#include "runtime/step_plan.h"

namespace myriad::cli {

struct AdapterSpec {
  std::string dir;
  float weight = 1.0f;
};

// "DIR" or "DIR:WEIGHT" (the text after the last ':' must be a finite number
// to count as a weight; otherwise the whole text is the folder).
Result<AdapterSpec> parse_adapter_spec(const std::string& text);
Result<std::vector<AdapterSpec>> parse_adapter_specs(const std::vector<std::string>& texts);

// Loaded adapters for one executor: validates every folder against the base
// model first (nothing is loaded if one is bad), then loads each distinct
// folder into its own slot and waits until ready.
class CliAdapters {
 public:
  // Reads and validates every distinct folder named in `specs` (any rank).
  static Result<CliAdapters> read(const std::vector<AdapterSpec>& specs, const ModelConfig& base);
  // Executor options needed to hold them (0 slots when there are none).
  int32_t num_slots() const { return int32_t(weights_.size()); }
  int32_t max_rank() const;
  // Copies every adapter into its slot of `ex` and waits.
  Status load_into(gpu::cpu::CpuExecutor& ex) const;
  // The weights read from `dir` (null if it was not read).
  std::shared_ptr<const LoraWeights> weights_of(const std::string& dir) const;
  // The AdapterMix for a set of specs (each folder must have been read).
  Result<AdapterMix> mix(const std::vector<AdapterSpec>& specs) const;

 private:
  std::vector<std::string> dirs_;  // slot i holds dirs_[i]
  std::vector<std::shared_ptr<const LoraWeights>> weights_;
};

// `--adapter DIR[:weight]` flags of a single-sequence command: reads and
// validates the folders, sizes `opt` (slots, max rank) to hold them, and
// gives the row's mixture. Call adapters.load_into(executor) after create().
struct CliAdapterSet {
  CliAdapters adapters;
  AdapterMix mix;  // none() when no --adapter was given
};
Result<CliAdapterSet> read_adapter_flags(const std::vector<std::string>& flags, const ModelConfig& base,
                                         gpu::cpu::CpuExecutorOptions& opt);

// `--adapter DIR[:weight]` flags of a command that goes through the engine:
// reads and validates the folders and gives the one adapter a request names,
// the weighted mixture made one adapter (mix_lora) unless it is a single
// folder of weight 1. Null when no --adapter was given.
Result<std::shared_ptr<const LoraWeights>> read_adapter_mixture(const std::vector<std::string>& flags,
                                                                const ModelConfig& base);

// `myriad logits --model DIR --batch FILE.json`: prints
// {"rows": [{"logits": [...]}, ...]} (last position of each row), every row
// in one forward step. Returns the process exit code.
int run_logits_batch(const std::string& model_dir, const std::string& batch_file, int threads,
                     std::optional<DType> kv_dtype);

}  // namespace myriad::cli
