// The request bodies of POST /v1/completions and POST /v1/chat/completions,
// parsed and validated apart from any server (as vLLM's
// entrypoints/openai/protocol.py does): bytes in, a checked call or the
// ApiError to answer with out. What is accepted, refused and ignored is
// listed in docs/api.md; in short:
// - every field a client may send is type- and range-checked, and an error
//   names it ("temperature 3 is out of range [0, 2]", param "temperature");
// - fields Myriad does not implement yet (tools, response_format,
//   logit_bias, suffix, best_of > 1...) are a 400 naming
//   the field, never silently dropped; null (and a neutral value such as
//   "tools": []) counts as absent;
// - unknown fields are ignored, as vLLM and OpenAI do;
// - malformed JSON is a 400 naming line, column and byte offset.
// The model string is kept as written (responses echo it); resolving it is
// resolve_model_field's (model_field.h). Token-level checks (prompt plus
// max_tokens against the context, token ids against the vocabulary) need
// the tokenizer and belong to the gateway (runtime/request_validation.h).
// Pure functions; thread-safe; no exceptions (JSON is parsed by nlohmann's
// SAX interface, which reports errors to a handler instead of throwing).
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "nodes/openai/api_error.h"
#include "runtime/logit_bias.h"
#include "runtime/sampling_params.h"

namespace myriad::openai {

struct ProtocolLimits {
  size_t max_body_bytes = size_t(8) << 20;  // larger: 413 (the HTTP server checks first too)
  int max_json_depth = 64;                  // deeper: 400; a stack guard (real bodies nest <= 5)
  size_t max_stop_strings = 4;              // OpenAI's limit
  size_t max_stop_token_ids = 64;
  // Alternatives per token the engine can report for logprobs/top_logprobs
  // (the server sets its executor's: NodeService::max_top_logprobs). Asking
  // for more is refused instead of answered with fewer.
  uint32_t max_top_logprobs = 0;
  // Whether the engine applies logit_bias (NodeService::applies_logit_bias);
  // if not, a non-empty one is refused.
  bool applies_logit_bias = false;
  uint32_t max_tokens =
      0;  // 0 = not checked here (the gateway checks prompt + max_tokens against the context)
  // Choices one request may ask for: n, times the prompts of a completion
  // (OpenAI's limit on n is 128).
  uint32_t max_choices = 128;
};

// What both endpoints share once parsed. Defaults are OpenAI's.
struct GenerationOptions {
  // Completions: 16 when absent (OpenAI's documented default). Chat: empty
  // when absent, meaning "until the context is full" (the gateway decides).
  // Chat takes max_completion_tokens over the deprecated max_tokens.
  // Completions with echo may ask for 0: the prompt is scored, nothing generated.
  std::optional<uint32_t> max_tokens;
  uint32_t n = 1;                 // choices per prompt, each sampled on its own
  SamplingParams sampling;        // temperature 1, top_p 1, top_k off, no penalties
  std::vector<LogitBias> logit_bias;  // added to these tokens' logits (ids not yet checked against the vocabulary)
  bool has_seed = false;          // false: sampling.seed is 0 and the gateway picks one
  std::vector<std::string> stop;  // each non-empty
  std::vector<int32_t> stop_token_ids;  // vLLM's extension: sampling one ends the choice (the token is kept)
  uint32_t min_tokens = 0;              // vLLM's extension: no stop token or string ends a choice before this many
  bool logprobs = false;          // return the sampled tokens' logprobs
  uint32_t top_logprobs = 0;      // and this many alternatives per token
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool ignore_eos = false;     // vLLM's extension: generate max_tokens even past the end-of-sequence token
};

// A prompt: text to tokenize, or token ids as given (range-checked against
// the vocabulary by the gateway).
using PromptInput = std::variant<std::string, std::vector<int32_t>>;

struct CompletionCall {
  std::string model;  // as written
  // At least one; choice i * n + j is sample j of prompt i (OpenAI's order).
  std::vector<PromptInput> prompts;
  bool echo = false;  // each choice's text (and logprobs) starts with its prompt
  GenerationOptions options;
};

struct ChatMessage {
  std::string role;     // "system", "user" or "assistant" ("developer" is read as "system")
  std::string content;  // text parts joined in order
  std::string name;     // optional participant name; empty if absent
};

struct ChatCall {
  std::string model;
  std::vector<ChatMessage> messages;  // at least one
  GenerationOptions options;
};

ApiResult<CompletionCall> parse_completion_request(std::string_view body, const ProtocolLimits& limits);
ApiResult<ChatCall> parse_chat_request(std::string_view body, const ProtocolLimits& limits);

// The messages as a chat template reads them: [{"role", "content"[, "name"]}].
nlohmann::json template_messages(const std::vector<ChatMessage>& messages);

}  // namespace myriad::openai
