// The most likely tokens at a sampled position, as OpenAI's top_logprobs
// reports them: a request asks for k of them (SamplingParams::top_logprobs),
// the executor that samples it reports them beside the chosen token, under
// the same distribution as its logprob.
#pragma once

#include <array>
#include <cstdint>
#include <span>

namespace myriad {

// OpenAI's chat API allows 20 alternatives per token.
inline constexpr uint32_t kMaxTopLogprobs = 20;

struct TopLogprobs {
  struct Entry {
    int32_t token = -1;
    float logprob = 0.0f;
  };
  uint8_t count = 0;
  std::array<Entry, kMaxTopLogprobs> entries{};  // most likely first; equal ones by lower id

  std::span<const Entry> view() const { return {entries.data(), count}; }
};

// The k (at most kMaxTopLogprobs) most likely tokens of a distribution given
// as values z and their log-sum-exp: entries z[i] - lse. NaNs are skipped.
void top_logprobs_of(std::span<const float> z, double lse, uint32_t k, TopLogprobs& out);

}  // namespace myriad
