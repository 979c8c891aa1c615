// The CLI's mixture routing, shared by `myriad generate --moe` and
// `myriad logits --moe` (and logits --batch rows without adapters): reads a
// mixture folder and its experts (validated against the base model), routes
// a prompt's ids as the node does, and gives the request its experts as a
// per-row weighted mixture of slots (each expert in its own slot).
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "args.h"
#include "engine_run.h"
#include "runtime/checkpoint.h"
#include "runtime/lora_weights.h"
#include "runtime/training/lora_training_backend.h"
#include "runtime/model_config.h"
#include "runtime/moe/mixture.h"
#include "runtime/result.h"

namespace myriad::cli {

struct RoutedExperts {
  std::vector<moe::ExpertChoice> choices;
  nlohmann::json json() const;  // [{"name", "weight", "similarity"}, ...], most similar first
  std::vector<std::string> names;
};

class CliMixture {
 public:
  // Reads DIR/mixture.json and every expert's PEFT folder; checks the flags.
  // A hidden-state mixture embeds each prompt with a base pass up to its
  // layer on `threads` threads (0: every core).
  static Result<CliMixture> read(const MoeFlags& flags, std::shared_ptr<const Checkpoint> base, int threads);
  // The experts for a prompt's ids (a leading BOS id of the base is skipped,
  // so `--ids` and `--prompt` route alike), set on `r` as its mixture.
  Result<RoutedExperts> route_into(std::span<const int32_t> prompt, CliRequest& r) const;

 private:
  moe::Mixture mixture_;
  std::shared_ptr<LoraTrainingBackend> hidden_pass_;  // kHiddenMean only
  moe::RoutingOptions options_;
  std::vector<std::shared_ptr<const LoraWeights>> experts_;
  std::vector<int64_t> bos_ids_;
  ModelConfig base_;
};

}  // namespace myriad::cli
