// What /v1/completions and /v1/chat/completions answer, as wire text: the
// non-streaming JSON bodies and the server-sent-event chunks of a stream,
// byte for byte in OpenAI's shape (keys in OpenAI's order, compact JSON).
//
// A chat stream, as OpenAI sends it (the API reference's streaming example
// and its stream_options.include_usage doc):
//   data:
//   {..."choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}
//   data: {..."choices":[{"index":0,"delta":{"content":"Hel"},"logprobs":null,"finish_reason":null}]}
//   data: {..."choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}
//   data: {..."choices":[],"usage":{...}}          only with include_usage
//   data: [DONE]
// With include_usage every other chunk carries "usage":null. A completions
// stream is the same without the role chunk (choices hold "text").
//
// finish_reason: Myriad's kStop -> "stop", kLength -> "length"; kCancelled
// and kDeadline -> "abort", vLLM's reason for a request ended by the server
// ("aborted for another reason", vllm/v1/engine FINISH_REASON_STRINGS). Not
// one of OpenAI's values: the SDKs pass the string through untyped, and a
// client that reads it learns the text is cut short, which "stop" would hide
// and "length" (max_tokens reached) would misstate.
//
// Logprobs take per-token (text, logprob) inputs; a logprob below -9999 or
// not finite is sent as -9999.0 (JSON has no -Infinity; vLLM does the same).
// Floats print as the shortest decimal that reads back as the same float.
// Text is any UTF-8; a token's text that is not valid UTF-8 on its own (part
// of a character) is sent with U+FFFD in "token", and its exact bytes in
// chat's "bytes". Pure functions; thread-safe; never throw.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/request.h"

namespace myriad::openai {

enum class Endpoint : uint8_t { kCompletions, kChatCompletions };

// "cmpl-" / "chatcmpl-" followed by the request id in 16 hex digits: unique
// as the gateway's request ids are (across workers and restarts).
std::string response_id(Endpoint endpoint, uint64_t request_id);

// "stop", "length" or "abort" (see above).
const char* finish_reason_string(FinishReason reason);

struct TopLogprob {
  std::string token;  // its text
  float logprob = 0.0f;
};

// One token with its logprob and, when asked, the most likely alternatives
// at its position (most likely first). An echoed prompt's first token has
// no logprob (nothing precedes it): null on the wire, as vLLM sends it.
struct TokenLogprob {
  std::string token;
  std::optional<float> logprob = 0.0f;
  std::vector<TopLogprob> top;
};

struct Usage {
  uint32_t prompt_tokens = 0;
  uint32_t completion_tokens = 0;
};

// What every body and chunk of one request repeats.
struct ResponseMeta {
  std::string id;              // response_id(...)
  int64_t created = 0;         // Unix seconds, the same on every chunk
  std::string model;           // the request's "model" as written
  bool logprobs = false;       // asked for: choices carry a logprobs object, else "logprobs":null
  bool include_usage = false;  // streams: "usage":null on each chunk, then usage_chunk
  // A routed mixture of experts: "experts": [{"name", "weight"}] on the
  // response and on every chunk (absent otherwise).
  std::vector<std::pair<std::string, double>> experts;
};

// A finished, non-streamed choice.
struct Choice {
  uint32_t index = 0;  // completions: prompt * n + sample; chat: the sample
  std::string text;
  FinishReason finish_reason = FinishReason::kStop;
  std::vector<TokenLogprob> logprobs;  // read when meta.logprobs
};

// The choices in the order given (callers sort them by index).
std::string completion_response(const ResponseMeta& meta, std::span<const Choice> choices, const Usage& usage);
std::string chat_completion_response(const ResponseMeta& meta, std::span<const Choice> choices,
                                     const Usage& usage);
inline std::string completion_response(const ResponseMeta& meta, const Choice& choice, const Usage& usage) {
  return completion_response(meta, std::span(&choice, 1), usage);
}
inline std::string chat_completion_response(const ResponseMeta& meta, const Choice& choice, const Usage& usage) {
  return chat_completion_response(meta, std::span(&choice, 1), usage);
}

// One step of a stream. The engine hands out whole UTF-8 characters, so
// `text` is valid UTF-8.
struct Delta {
  std::string_view text = {};
  std::span<const TokenLogprob> logprobs = {};     // the tokens this delta's text came from (meta.logprobs)
  std::optional<FinishReason> finish_reason = {};  // set on the last chunk
  // Completions: code points of output text sent before this delta, so
  // "text_offset" continues across chunks (Python's len(), as clients slice).
  uint32_t text_offset = 0;
  uint32_t index = 0;  // the choice this delta belongs to
};

// Chat: the first chunk, {"role":"assistant","content":""}.
std::string chat_role_chunk(const ResponseMeta& meta, uint32_t index = 0);
// Chat: {"content": text}; with empty text and a finish_reason, the empty
// delta {} OpenAI ends a stream with.
std::string chat_chunk(const ResponseMeta& meta, const Delta& delta);
// Completions: {"text": text, ...}.
std::string completion_chunk(const ResponseMeta& meta, const Delta& delta);
// The usage-only chunk ("choices":[]) sent after the last choice chunk when
// include_usage is set.
std::string usage_chunk(Endpoint endpoint, const ResponseMeta& meta, const Usage& usage);

// Code points of UTF-8 text (Python's len(), as clients slice text by
// text_offset): every byte that is not a continuation byte.
uint32_t code_points(std::string_view s);

// "data: " + json + "\n\n"
std::string sse_event(std::string_view json);
// "data: [DONE]\n\n", the stream's last event.
std::string_view sse_done();

}  // namespace myriad::openai
