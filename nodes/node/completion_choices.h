// The choices of one /v1/completions or /v1/chat/completions request: n
// samples of each prompt, each its own engine request. Their events, tagged
// with the choice, become the non-streamed body or the stream's chunks in
// OpenAI's shape for several choices: choice prompt * n + sample; in a
// stream every chunk names its choice, chat opens each choice with its role,
// chunks of different choices interleave as they come, and usage (prompts
// counted once each, completions summed) and [DONE] follow the last choice.
// With echo a choice's text and logprobs start with its prompt's (the first
// prompt token has no logprob). Runs on the server's io thread.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "nodes/openai/responses.h"
#include "event_copy.h"
#include "runtime/engine_events.h"
#include "runtime/result.h"
#include "runtime/top_logprobs.h"

namespace myriad::node {

// One engine event of one choice, copied out of the engine's callback.
struct ChoiceEvent : EventCopy {
  uint32_t choice = 0;
  // kLogits of an echo with logprobs: prompt_logprobs[i] is the logprob of
  // prompt token prompt_start + i (prompt_logprobs_of made them), and
  // prompt_top[i] the alternatives at its position when asked for.
  uint32_t prompt_start = 0;
  std::vector<float> prompt_logprobs;
  std::vector<TopLogprobs> prompt_top;
};

// What a kLogits event over prompt positions [start, start + count) tells
// of the prompt: the logprob of each prompt token it predicts (position p
// predicts token p + 1), in order from token start + 1, and with top_k the
// k most likely tokens at each of those positions into *top. `logits` is
// row-major [count, vocab].
std::vector<float> prompt_logprobs_of(std::span<const float> logits, uint32_t start, uint32_t count,
                                      std::span<const int32_t> prompt, uint32_t top_k = 0,
                                      std::vector<TopLogprobs>* top = nullptr);

// A token's text as a logprobs entry shows it.
using TokenText = std::function<std::string(int32_t token)>;

// A prompt as echo returns it.
struct EchoedPrompt {
  std::string text;                 // the prompt's text (token-id prompts: decoded)
  std::vector<std::string> tokens;  // each prompt token's text, for logprobs
};

class CompletionChoices {
 public:
  // prompt_tokens: each prompt's length. echoed: one per prompt, or empty
  // (no echo).
  // token_text names the alternatives of top_logprobs.
  CompletionChoices(openai::Endpoint endpoint, openai::ResponseMeta meta, uint32_t n,
                    std::vector<uint32_t> prompt_tokens, std::vector<EchoedPrompt> echoed,
                    TokenText token_text = {});

  size_t size() const { return choices_.size(); }
  openai::ResponseMeta& meta() { return meta_; }

  // Non-streamed: takes one event; true once every choice has finished or
  // one has failed (failure() then says why).
  bool add(const ChoiceEvent& ev);
  const std::optional<Error>& failure() const { return failure_; }
  std::string body() const;  // once add() returned true without a failure

  // Streamed: the chunks that open the stream (chat: each choice's role),
  // then those each event adds (none for a token whose text is held back);
  // `done` after the last ([DONE], after a failure's error too).
  std::vector<std::string> opening_chunks() const;
  std::vector<std::string> chunks(const ChoiceEvent& ev, bool& done);

 private:
  struct State {
    uint32_t prompt = 0;
    std::string text;                          // generated so far (non-streamed)
    std::vector<openai::TokenLogprob> output;  // generated tokens' logprobs (non-streamed)
    std::vector<float> prompt_logprobs;        // echo with logprobs: per prompt token
    std::vector<bool> prompt_seen;             // which of them arrived
    std::vector<TopLogprobs> prompt_top;       // and the alternatives at each
    bool finished = false;
    FinishReason reason = FinishReason::kStop;
    uint32_t output_tokens = 0;
    bool echo_sent = false;  // streamed
    uint32_t offset = 0;     // streamed: code points of text sent
  };

  bool echo() const { return !echo_.empty(); }
  void take_logits(State& c, const ChoiceEvent& ev);
  void finish(State& c, const ChoiceEvent& ev);
  // The echoed prompt's logprobs; an error if some never arrived (a request
  // resumed on another worker does not repeat them, nor does a prompt logit
  // row the executor could not return whole).
  Result<std::vector<openai::TokenLogprob>> echo_logprobs(const State& c) const;
  openai::Usage usage() const;
  std::string chunk(const openai::Delta& d) const;
  std::vector<std::string> fail(const Error& e, bool& done);
  std::vector<openai::TopLogprob> named(std::span<const TopLogprobs::Entry> top) const;
  openai::TokenLogprob output_logprob(const ChoiceEvent& ev) const;

  openai::Endpoint endpoint_;
  openai::ResponseMeta meta_;
  std::vector<uint32_t> prompt_tokens_;
  std::vector<EchoedPrompt> echo_;
  TokenText token_text_;
  std::vector<State> choices_;
  size_t finished_ = 0;
  std::optional<Error> failure_;
};

}  // namespace myriad::node
