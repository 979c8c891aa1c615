// The mixture of experts' other embedding (issue 22): a text's tokens run
// through the base model itself up to a chosen layer, the hidden states
// averaged over the tokens and L2-normalised. Batched through a
// LoraTrainingBackend's forward (no adapter, no KV cache). The lexical
// TF-IDF embedding (router.h) is the default; this one costs a base pass up
// to the layer for every request it routes (bench/moe measures both).
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/model_config.h"
#include "runtime/result.h"
#include "runtime/training/lora_training_backend.h"

namespace myriad::moe {

// [docs.size(), hidden_size]: each document's mean hidden state after
// `layer` decoder layers, L2-normalised; documents are packed into passes of
// about `batch_tokens` tokens. The first `context_tokens` of each document
// (a BOS, as the model sees a prompt) are attended to but not averaged. A
// document with nothing to average is refused (kInvalidArgument naming it),
// as is a layer outside [0, num_layers].
Result<std::vector<float>> hidden_embed(LoraTrainingBackend& backend, const ModelConfig& base,
                                        const std::vector<std::vector<int32_t>>& docs, int32_t layer,
                                        int64_t batch_tokens = 4096, int32_t context_tokens = 0);

}  // namespace myriad::moe
