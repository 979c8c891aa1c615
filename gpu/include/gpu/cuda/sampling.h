// Token sampling on the device, one block per row, from float32 logits:
//   0. the row's logit bias entries added in order (OpenAI logit_bias, and
//      the -inf bans of min_tokens; a token may appear twice), in place;
//   1. penalties over the row's history (HF repetition penalty over prompt +
//      outputs; OpenAI presence/frequency over outputs only), in place;
//   2. temperature 0 => greedy: argmax, ties to the lowest id;
//   3. else x = logits / T; top-k keeps x >= the k-th largest value (ties at
//      the boundary kept, as HF/vLLM do); top-p keeps, among those, tokens
//      whose strictly-more-probable mass is < top_p of the kept mass;
//   4. the draw: u = sampling_uniform(seed, output_index); walk the kept
//      tokens in ascending id order, accumulating probability, and take the
//      first whose cumulative mass exceeds u * (kept mass).
// The draw depends only on (seed, output_index) and the row's own logits, so a
// sequence samples the same token whatever it is batched with. logprob is the
// chosen token's log-softmax under the penalized, temperature-scaled (T = 1
// for greedy), untruncated distribution; a row asking for top_logprobs gets
// its that many most likely tokens under that same distribution (most likely
// first, equal ones by lower id, as the CPU's top_logprobs_of). Stateless;
// thread-safe.
#pragma once

#include <cstdint>

#include "gpu/cuda/device_memory.h"
#include "runtime/counter_rng.h"
#include "runtime/logit_bias.h"
#include "runtime/top_logprobs.h"
#include "runtime/result.h"

namespace myriad::gpu::cuda {

// The counter-based random source shared with the CPU (runtime/counter_rng.h).
MYRIAD_HOST_DEVICE inline double sampling_uniform(uint64_t seed, uint32_t output_index) {
  return myriad::counter_uniform(seed, output_index);
}

struct SampleRow {  // plain data, uploaded per step
  float temperature = 1.0f;   // 0 => greedy
  int32_t top_k = 0;          // 0 => off
  float top_p = 1.0f;         // 1 => off
  uint32_t output_index = 0;
  uint64_t seed = 0;
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  uint32_t history_offset = 0;  // into the history array
  uint32_t history_len = 0;
  uint32_t prompt_len = 0;      // first prompt_len history ids are the prompt
  uint32_t bias_offset = 0;     // into the bias array
  uint32_t bias_count = 0;
  uint32_t top_logprobs = 0;    // alternatives to report, <= kMaxTopLogprobs
};

// logits: [rows, ldl] float32, penalized in place; work: [rows, vocab] float32
// scratch; params: [rows] SampleRow; history: ids for penalties (may be null
// when no row has penalties); bias: the rows' logit bias entries (may be
// null when no row has any). Writes tokens[rows] and logprobs[rows], and
// row r's min(top_logprobs, vocab) alternatives at top[r * kMaxTopLogprobs]
// (top: [rows, kMaxTopLogprobs]; may be null when no row asks).
Status sample(float* logits, int64_t ldl, float* work, const SampleRow* params, const int32_t* history,
              int64_t rows, int64_t vocab, int32_t* tokens, float* logprobs, StreamHandle stream,
              const LogitBias* bias = nullptr, TopLogprobs::Entry* top = nullptr);

}  // namespace myriad::gpu::cuda
