// What the training loop asks of a device: one forward and backward through
// the frozen base for a batch of rows, each row on its own job's adapter
// (the training counterpart of Executor). Implemented in gpu/: the CPU's
// (gpu/cpu/lora_trainer.h) and a CUDA device's (gpu/cuda/lora_trainer.h).
//
// Rows of several jobs share one pass; a job's gradient comes from its rows
// only, summed in row order, so packing jobs together does not change any
// job's result beyond the base GEMMs' float rounding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "runtime/result.h"
#include "runtime/training/lora_params.h"

namespace myriad {

// One training sequence: targets[i] != 0 marks token i as predicted (its
// loss is -log p(tokens[i] | tokens[<i])); targets[0] is ignored.
struct TrainingRow {
  int32_t job = 0;  // index into the jobs span
  const std::vector<int32_t>* tokens = nullptr;
  const std::vector<uint8_t>* targets = nullptr;
};

template <class Real>
struct TrainingJobTensors {
  const LoraParams<Real>* params = nullptr;
  LoraParams<Real>* grads = nullptr;  // accumulated into (+=); null: loss only
  double loss_weight = 1.0;           // each target token's loss is multiplied by it
  // Out: the sum of the unweighted per-token losses and their count.
  double loss_sum = 0;
  int64_t loss_tokens = 0;
};

class LoraTrainingBackend {
 public:
  virtual ~LoraTrainingBackend() = default;
  // Adds d(sum of weighted losses)/d(params) into each job's grads. Errors:
  // a token out of the vocabulary, a row longer than the base's context, a
  // job index out of range (nothing is accumulated then).
  virtual Status forward_backward(std::span<const TrainingRow> rows, std::span<TrainingJobTensors<float>> jobs) = 0;
  // The same pass in units (a layer's forward or backward, the head), for a
  // serving loop that runs inference steps between them: begin() validates
  // (the same errors; nothing accumulated on one), advance() runs one unit
  // and returns true after the last. rows and jobs must stay valid until then.
  virtual Status begin(std::span<const TrainingRow> rows, std::span<TrainingJobTensors<float>> jobs) = 0;
  virtual bool advance() = 0;
  // Whether activations are recomputed in the backward instead of kept.
  virtual void set_recompute(bool on) = 0;
  // Forward only: each row's hidden state after its first `layers` decoder
  // layers (0: the token embeddings; num_layers: the last layer's output,
  // before the final norm), averaged over the row's tokens (those its
  // targets mark, when it marks any: the others are context only), with the row's
  // job's adapter: out = [rows, hidden_size]. Embeds text with the base
  // itself (a mixture of experts' router). kInvalidArgument: layers outside
  // [0, num_layers], or what forward_backward refuses.
  virtual Status mean_hidden(std::span<const TrainingRow> rows, std::span<TrainingJobTensors<float>> jobs, int layers,
                             std::vector<float>& out) = 0;
  // Bytes of the last pass's saved activations (what a backward keeps).
  virtual size_t activation_bytes() const = 0;
};

}  // namespace myriad
