// How one sequence picks its next token. Applied inside the executor (on the
// device), so the engine loop and the simulator never see logits.
#pragma once

#include <cstdint>

namespace myriad {

struct SamplingParams {
  float temperature = 1.0f;  // 0 => greedy (argmax, ties to the lowest id)
  int32_t top_k = 0;         // 0 => off
  float top_p = 1.0f;        // 1 => off
  // Randomness is counter-based: the draw for the token at output index i
  // depends only on (seed, i), so a sequence gives the same tokens whatever
  // it is batched with and after a preemption recompute.
  uint64_t seed = 0;
  float repetition_penalty = 1.0f;  // HF/CTRL style: divide positive logits, multiply negative
  float presence_penalty = 0.0f;    // OpenAI style: subtract once if the token occurred
  float frequency_penalty = 0.0f;   // OpenAI style: subtract per occurrence
  // Report this many of the most likely tokens beside each sampled one
  // (top_logprobs.h; at most kMaxTopLogprobs, and what the executor offers:
  // ExecutorInfo::max_top_logprobs). Does not change which token is drawn.
  uint32_t top_logprobs = 0;

  bool needs_history() const {
    return repetition_penalty != 1.0f || presence_penalty != 0.0f || frequency_penalty != 0.0f;
  }
};

}  // namespace myriad
