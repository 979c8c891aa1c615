// A bias added to one token's logit before sampling, as OpenAI's logit_bias:
// before penalties, temperature and truncation, so the logprob a token
// reports is under the biased distribution. -100 all but bans a token; +100
// all but forces it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace myriad {

struct LogitBias {
  int32_t token = 0;
  float bias = 0.0f;
};

inline constexpr size_t kMaxLogitBias = 300;        // entries in one request
// Stop token ids of one request (its model's end-of-sequence ids included):
// while min_tokens holds them back, each is a bias entry of every step.
inline constexpr size_t kMaxStopTokenIds = 1024;
inline constexpr float kMaxLogitBiasValue = 100.0f;  // |bias| at most this

}  // namespace myriad
