// The checks every training backend makes of a batch before it computes
// anything (LoraTrainingBackend's errors), written once so the CPU and CUDA
// backends refuse the same batches with the same words. Stateless.
#pragma once

#include <span>
#include <string>

#include "runtime/checkpoint.h"
#include "runtime/model_config.h"
#include "runtime/result.h"
#include "runtime/training/lora_training_backend.h"

namespace myriad {

// kInvalidArgument naming the row and what is wrong: a job index out of
// range, empty or mismatched tokens and targets, a row longer than the
// context, a token outside the vocabulary, an adapter whose layers or shapes
// are not the base's; or gradients whose shapes are not their parameters'.
template <class Real>
Status check_training_batch(const ModelConfig& c, std::span<const TrainingRow> rows,
                            std::span<TrainingJobTensors<Real>> jobs) {
  for (size_t r = 0; r < rows.size(); ++r) {
    const TrainingRow& row = rows[r];
    const std::string at = "training row " + std::to_string(r);
    if (row.job < 0 || size_t(row.job) >= jobs.size() || !jobs[size_t(row.job)].params)
      return make_error(ErrorCode::kInvalidArgument,
                        at + ": job " + std::to_string(row.job) + " out of range");
    if (!row.tokens || !row.targets || row.tokens->empty() || row.targets->size() != row.tokens->size())
      return make_error(ErrorCode::kInvalidArgument,
                        at + ": tokens and targets must be non-empty and of one length");
    if (int64_t(row.tokens->size()) > c.max_position_embeddings)
      return make_error(ErrorCode::kInvalidArgument, at + ": " + std::to_string(row.tokens->size()) +
                                                         " tokens exceed the context of " +
                                                         std::to_string(c.max_position_embeddings));
    for (int32_t t : *row.tokens)
      if (t < 0 || t >= c.vocab_size)
        return make_error(ErrorCode::kInvalidArgument,
                          at + ": token " + std::to_string(t) + " outside the vocabulary");
    const LoraParams<Real>& p = *jobs[size_t(row.job)].params;
    if (p.num_layers != c.num_layers || p.modules.size() != size_t(c.num_layers) * kNumLinearModules)
      return make_error(ErrorCode::kInvalidArgument,
                        at + ": the job's adapter does not have the base's layers");
    for (int64_t l = 0; l < c.num_layers; ++l)
      for (int m = 0; m < kNumLinearModules; ++m) {
        const auto& mp = p.at(int(l), LinearModule(m));
        const auto [out, in] = linear_module_shape(c, LinearModule(m));
        if (mp.rank < 0 || mp.a.size() != size_t(mp.rank * in) || mp.b.size() != size_t(out * mp.rank))
          return make_error(ErrorCode::kInvalidArgument,
                            at + ": the job's " + linear_module_name(LinearModule(m)) + " of layer " +
                                std::to_string(l) + " does not match its rank and the base's shape");
      }
  }
  for (const auto& j : jobs) {
    if (!j.params || !j.grads) continue;
    bool same = j.grads->modules.size() == j.params->modules.size();
    for (size_t m = 0; same && m < j.params->modules.size(); ++m)
      same = j.grads->modules[m].a.size() == j.params->modules[m].a.size() &&
             j.grads->modules[m].b.size() == j.params->modules[m].b.size();
    if (!same)
      return make_error(ErrorCode::kInvalidArgument, "a job's gradients do not match its parameters");
  }
  return ok_status();
}

}  // namespace myriad
