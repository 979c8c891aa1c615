// libFuzzer target: the OpenAI request parsers (nodes/openai/requests.h) on
// arbitrary bytes, as an HTTP body arrives from anyone. Either answer must
// be well-formed: an error is a 400/413 whose OpenAI error JSON reads back,
// an accepted call holds only values in the documented ranges, and the
// response builders turn whatever the call carried (the model string, the
// prompt text, the raw input as a delta) into JSON that reads back.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "nodes/openai/api_error.h"
#include "nodes/openai/model_field.h"
#include "nodes/openai/requests.h"
#include "nodes/openai/responses.h"

namespace {

using namespace myriad::openai;
using myriad::kMaxLogitBias;
using myriad::kMaxLogitBiasValue;
using myriad::LogitBias;

void check_error(const ApiError& e) {
  if ((e.status != 400 && e.status != 413) || e.message.empty() || e.type != "invalid_request_error")
    std::abort();
  const auto j = nlohmann::json::parse(to_json(e), nullptr, false);
  if (j.is_discarded() || !j["error"]["message"].is_string()) std::abort();
}

void check_options(const GenerationOptions& o, const ProtocolLimits& limits, bool echo = false) {
  const auto& s = o.sampling;
  if (!(s.temperature >= 0 && s.temperature <= 2) || !(s.top_p > 0 && s.top_p <= 1) || s.top_k < 0)
    std::abort();
  if (!(s.presence_penalty >= -2 && s.presence_penalty <= 2) ||
      !(s.frequency_penalty >= -2 && s.frequency_penalty <= 2))
    std::abort();
  if (!(s.repetition_penalty > 0)) std::abort();
  if (o.max_tokens && *o.max_tokens == 0 && !echo) std::abort();  // 0 only scores an echoed prompt
  if (o.n < 1 || o.n > limits.max_choices) std::abort();
  if (o.stop.size() > limits.max_stop_strings) std::abort();
  for (const auto& stop : o.stop)
    if (stop.empty()) std::abort();
  if (o.top_logprobs > limits.max_top_logprobs || (o.top_logprobs > 0 && !o.logprobs)) std::abort();
  if (o.include_usage && !o.stream) std::abort();
  if (o.logit_bias.size() > kMaxLogitBias || (!o.logit_bias.empty() && !limits.applies_logit_bias)) std::abort();
  for (const LogitBias& b : o.logit_bias)
    if (b.token < 0 || !(std::fabs(b.bias) <= kMaxLogitBiasValue)) std::abort();
  if (o.stop_token_ids.size() > limits.max_stop_token_ids) std::abort();
  for (const int32_t id : o.stop_token_ids)
    if (id < 0) std::abort();
  if (o.min_tokens > 0 && (!limits.applies_logit_bias || (o.max_tokens && o.min_tokens > *o.max_tokens))) std::abort();
}

void check_reads_back(const std::string& text) {
  if (nlohmann::json::parse(text, nullptr, false).is_discarded()) std::abort();
}

void build_responses(const std::string& model, std::string_view text, bool logprobs) {
  // A token's text is short; a long one only slows the fuzzer (chat's
  // "bytes" is one JSON number per byte) without reaching new code.
  text = text.substr(0, 64);
  ResponseMeta m{response_id(Endpoint::kChatCompletions, 7), 1, model, logprobs, true};
  (void)resolve_model_field(model, "base", "tenant");
  const TokenLogprob tok{std::string(text), -0.5f, {{std::string(text), -0.5f}}};
  Choice c{1, std::string(text), myriad::FinishReason::kStop, {tok}};
  check_reads_back(chat_completion_response(m, c, {1, 1}));
  check_reads_back(completion_response(m, c, {1, 1}));
  check_reads_back(chat_chunk(m, {.text = text, .logprobs = {&tok, 1}}));
  check_reads_back(completion_chunk(m, {.text = text, .logprobs = {&tok, 1}}));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  ProtocolLimits limits;
  limits.max_top_logprobs = 5;
  limits.applies_logit_bias = size % 2 == 0;  // both answers to a bias, from the same corpus
  limits.max_body_bytes = 1 << 20;

  auto c = parse_completion_request(body, limits);
  if (!c.ok()) {
    check_error(c.error());
  } else {
    check_options(c->options, limits, c->echo);
    if (c->model.empty() || !c->options.max_tokens) std::abort();
    if (c->prompts.empty() || c->prompts.size() * c->options.n > limits.max_choices) std::abort();
    const auto* text = std::get_if<std::string>(&c->prompts[0]);
    build_responses(c->model, text ? *text : std::string_view("x"), c->options.logprobs);
  }

  auto ch = parse_chat_request(body, limits);
  if (!ch.ok()) {
    check_error(ch.error());
  } else {
    check_options(ch->options, limits);
    if (ch->model.empty() || ch->messages.empty()) std::abort();
    for (const auto& msg : ch->messages)
      if (msg.role != "system" && msg.role != "user" && msg.role != "assistant") std::abort();
    build_responses(ch->model, ch->messages.back().content, ch->options.logprobs);
    check_reads_back(
        template_messages(ch->messages).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }

  // Raw bytes as a token's text (need not be UTF-8): still JSON that reads back.
  build_responses("m", body, true);
  return 0;
}
