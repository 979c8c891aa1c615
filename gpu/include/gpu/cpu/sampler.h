// Token selection on the CPU backend: penalties, greedy / temperature /
// top-k / top-p sampling and the chosen token's logprob.
//
// Order (as vLLM): logit bias (added to its tokens' logits), repetition
// penalty (HF semantics, over prompt + output),
// presence and frequency penalties (OpenAI semantics, over output tokens
// only, i.e. history[prompt_len:]), then temperature, then top-k, then top-p.
// Randomness is one uniform draw u = counter_uniform(seed, output_index), so
// a sequence samples the same token whatever it is batched with.
//
// Sampling walks the kept tokens in id order and picks the first whose
// cumulative probability exceeds u * (sum of kept probabilities); that
// definition is independent of how the kept set was found.
//
// logprob: log-softmax of the chosen token under the biased, penalized,
// temperature-scaled distribution before top-k/top-p truncation (greedy:
// under the biased, penalized logits, no temperature). With p.top_logprobs, the
// most likely tokens of that same distribution come with it.
//
// A Sampler holds scratch buffers: one per thread.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "runtime/logit_bias.h"
#include "runtime/sampling_params.h"
#include "runtime/top_logprobs.h"

namespace myriad::gpu::cpu {

struct Sampled {
  int32_t token = -1;
  float logprob = 0.0f;
  TopLogprobs top;  // p.top_logprobs most likely tokens under the distribution logprob is taken from
};

// log(sum_i exp(z[i])) of n >= 1 values: float exponentials (vectorized
// where AVX2 is in use; see matmul_limit_isa), double sum; ~1e-7 relative.
double log_sum_exp(const float* z, int64_t n);

// Uniform in [0, 1) from a counter-based hash of (seed, output_index).
double counter_uniform(uint64_t seed, uint32_t output_index);

// Applies the three penalties in place. history: prompt then outputs.
void apply_penalties(float* logits, int64_t vocab, const SamplingParams& p, std::span<const int32_t> history,
                     uint32_t prompt_len, std::vector<int32_t>& count_scratch);

class Sampler {
 public:
  // `logits` [vocab] is left as it is: bias, penalties and temperature apply
  // to a copy, which plain greedy (none of them) does not need. Bias tokens
  // are in [0, vocab) (the plan's validation checks).
  Sampled sample(const float* logits, int64_t vocab, const SamplingParams& p, uint32_t output_index,
                 std::span<const int32_t> history, uint32_t prompt_len, std::span<const LogitBias> bias = {});

 private:
  // The token and its logprob; `dist` and `lse` are the distribution it was
  // drawn from (the logits or the scratch copy) and its log-sum-exp.
  Sampled pick(const float* logits, int64_t vocab, const SamplingParams& p, uint32_t output_index,
               std::span<const int32_t> history, uint32_t prompt_len, std::span<const LogitBias> bias,
               const float*& dist, double& lse);

  std::vector<float> work_;
  std::vector<int32_t> counts_;
  std::vector<int32_t> order_;
  std::vector<double> probs_;
};

}  // namespace myriad::gpu::cpu
