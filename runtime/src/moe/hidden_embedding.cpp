#include "runtime/moe/hidden_embedding.h"

#include <algorithm>
#include <cmath>

#include "runtime/training/lora_params.h"

namespace myriad::moe {

Result<std::vector<float>> hidden_embed(LoraTrainingBackend& backend, const ModelConfig& base,
                                        const std::vector<std::vector<int32_t>>& docs, int32_t layer,
                                        int64_t batch_tokens, int32_t context_tokens) {
  if (layer < 0 || layer > base.num_layers)
    return make_error(ErrorCode::kInvalidArgument,
                      "embedding layer " + std::to_string(layer) + " outside [0, " + std::to_string(base.num_layers) + "]");
  if (context_tokens < 0) return make_error(ErrorCode::kInvalidArgument, "context_tokens is negative");
  for (size_t d = 0; d < docs.size(); ++d)
    if (docs[d].size() <= size_t(context_tokens))
      return make_error(ErrorCode::kInvalidArgument, "document " + std::to_string(d) + " is empty" +
                                                         (context_tokens > 0 ? " after its context tokens" : ""));
  // No adapter: every module at rank 0.
  LoraParams<float> none;
  none.num_layers = int32_t(base.num_layers);
  none.modules.resize(size_t(base.num_layers) * kNumLinearModules);
  TrainingJobTensors<float> job;
  job.params = &none;
  std::vector<TrainingJobTensors<float>> jobs = {job};
  std::vector<std::vector<uint8_t>> targets(docs.size());
  // Marked positions are the averaged ones (all, when none is marked).
  for (size_t d = 0; d < docs.size(); ++d) {
    targets[d].assign(docs[d].size(), context_tokens > 0 ? 1 : 0);
    std::fill(targets[d].begin(), targets[d].begin() + context_tokens, uint8_t(0));
  }

  const size_t H = size_t(base.hidden_size);
  std::vector<float> out;
  out.reserve(docs.size() * H);
  std::vector<float> part;
  for (size_t begin = 0; begin < docs.size();) {
    std::vector<TrainingRow> rows;
    int64_t tokens = 0;
    size_t end = begin;
    while (end < docs.size() && (rows.empty() || tokens + int64_t(docs[end].size()) <= batch_tokens)) {
      rows.push_back({0, &docs[end], &targets[end]});
      tokens += int64_t(docs[end].size());
      ++end;
    }
    if (Status st = backend.mean_hidden(rows, jobs, int(layer), part); !st.ok()) return st.error();
    for (size_t r = 0; r < rows.size(); ++r) {
      double norm = 0;
      for (size_t i = 0; i < H; ++i) norm += double(part[r * H + i]) * double(part[r * H + i]);
      const float inv = norm > 0 ? float(1.0 / std::sqrt(norm)) : 0.0f;
      for (size_t i = 0; i < H; ++i) out.push_back(part[r * H + i] * inv);
    }
    begin = end;
  }
  return out;
}

}  // namespace myriad::moe
