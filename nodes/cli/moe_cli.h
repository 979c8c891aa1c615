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
  // [{"name", "weight", "similarity"}, ...], most similar first; routed in
  // the prefill: [{"name", "weight"}, ...], heaviest first.
  nlohmann::json json() const;
  std::vector<std::string> names;
  // Routed by the request's own prefill: the choices are known once it ran
  // (resolve() with its events' expert_weights).
  bool in_prefill = false;
};

class CliMixture {
 public:
  // Reads DIR/mixture.json and every expert's PEFT folder; checks the flags.
  // A hidden-state mixture embeds each prompt with a base pass up to its
  // layer on `threads` threads (0: every core).
  static Result<CliMixture> read(const MoeFlags& flags, std::shared_ptr<const Checkpoint> base, int threads);
  // The experts for a prompt's ids (a leading BOS id of the base is skipped,
  // so `--ids` and `--prompt` route alike), set on `r` as its mixture.
  // Routing in the prefill (a hidden-state mixture whose experts allow it;
  // --moe-route), `r` gets every expert and a PrefillRouter over `prompt`,
  // the ids the model runs (less a leading BOS), and the answer is
  // in_prefill, to resolve() once the request ran.
  Result<RoutedExperts> route_into(std::span<const int32_t> route_ids, std::span<const int32_t> prompt,
                                   CliRequest& r) const;
  // The experts a request routed in its prefill chose: `weights` are its
  // events' expert_weights (one per expert, 0: not chosen).
  void resolve(RoutedExperts& routed, std::span<const float> weights) const;
  bool routes_in_prefill() const { return prefill_router_ != nullptr; }

 private:
  Result<RoutedExperts> route_ids_into(std::span<const int32_t> prompt, CliRequest& r) const;  // BOS removed

  moe::Mixture mixture_;
  std::shared_ptr<LoraTrainingBackend> hidden_pass_;  // kHiddenMean routed by a base pass only
  std::shared_ptr<const PrefillRouter> prefill_router_;  // kHiddenMean routed in the prefill (skip_tokens 0)
  moe::RoutingOptions options_;
  std::vector<std::shared_ptr<const LoraWeights>> experts_;
  std::vector<int64_t> bos_ids_;
  std::vector<int32_t> context_;  // hidden-state base pass: the tokens before the prompt
  ModelConfig base_;
};

}  // namespace myriad::cli
