#include "nodes/openai/requests.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>

#include "json_body.h"

namespace myriad::openai {

namespace {

using nlohmann::json;
using Problem = std::optional<ApiError>;

#define MYRIAD_API_TRY(expr)             \
  do {                                   \
    if (Problem _p = (expr)) return *_p; \
  } while (0)

// Absent and null are the same (vLLM's Optional fields; clients send null
// for "not given").
const json* field(const json& obj, const char* key) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

const char* kind_of(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "an integer";
    case json::value_t::number_float:
      return "a number";
    case json::value_t::string:
      return "a string";
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    default:
      return "an unsupported value";
  }
}

// The value as the user wrote it, cut short (a 1 MB string is not echoed).
std::string shown(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

ApiError wrong_type(const std::string& param, std::string_view expected, const json& got) {
  std::string m = param;
  m += ": expected ";
  m += expected;
  m += ", got ";
  m += kind_of(got);
  return invalid_request(std::move(m), param, "invalid_type");
}

ApiError bad_value(const std::string& param, const json& got, std::string_view rule) {
  std::string m = param;
  m += ' ';
  m += shown(got);
  m += ' ';
  m += rule;
  return invalid_request(std::move(m), param, "invalid_value");
}

ApiError unsupported_value(const std::string& param, std::string message) {
  return invalid_request(std::move(message), param, "unsupported_value");
}

// Booleans.
Problem read_bool(const json& o, const char* key, bool& out) {
  const json* v = field(o, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) return wrong_type(key, "a boolean", *v);
  out = v->get<bool>();
  return std::nullopt;
}

// Strings.
Problem read_string(const json& o, const char* key, std::string& out) {
  const json* v = field(o, key);
  if (!v) return std::nullopt;
  if (!v->is_string()) return wrong_type(key, "a string", *v);
  out = v->get<std::string>();
  return std::nullopt;
}

// Numbers (integers or floats) within a range; `rule` says the range in words.
struct Range {
  double lo, hi;
  bool lo_open, hi_open;
  const char* rule;
};

Problem read_float(const json& o, const char* key, const Range& r, float& out) {
  const json* v = field(o, key);
  if (!v) return std::nullopt;
  if (!v->is_number()) return wrong_type(key, "a number", *v);
  const double x = v->get<double>();
  const bool above_lo = r.lo_open ? x > r.lo : x >= r.lo;
  const bool below_hi = r.hi_open ? x < r.hi : x <= r.hi;
  if (!std::isfinite(x) || !above_lo || !below_hi) return bad_value(key, *v, r.rule);
  out = float(x);
  return std::nullopt;
}

// Integers in [lo, hi]. A float with no fraction (16.0, as some clients
// write numbers) counts as the integer.
Problem read_int_value(const std::string& param, const json* v, int64_t lo, int64_t hi, const char* rule,
                       std::optional<int64_t>& out) {
  if (!v) return std::nullopt;
  int64_t x = 0;
  if (v->is_number_unsigned()) {
    const uint64_t u = v->get<uint64_t>();
    if (u > uint64_t(hi)) return bad_value(param, *v, rule);
    x = int64_t(u);
  } else if (v->is_number_integer()) {
    x = v->get<int64_t>();
  } else if (v->is_number_float()) {
    const double d = v->get<double>();
    // 2^63 is exact as a double; below it every integral double fits int64.
    if (!(std::floor(d) == d) || d >= 9223372036854775808.0 || d < -9223372036854775808.0)
      return d == std::floor(d) ? bad_value(param, *v, rule) : wrong_type(param, "an integer", *v);
    x = int64_t(d);
  } else {
    return wrong_type(param, "an integer", *v);
  }
  if (x < lo || x > hi) return bad_value(param, *v, rule);
  out = x;
  return std::nullopt;
}

Problem read_int(const json& o, const char* key, int64_t lo, int64_t hi, const char* rule,
                 std::optional<int64_t>& out) {
  return read_int_value(key, field(o, key), lo, hi, rule, out);
}

Problem read_model(const json& o, std::string& out) {
  const json* v = field(o, "model");
  if (!v)
    return invalid_request("model is required: the base model's name or an adapter's (tenant/name[@version])",
                           "model", "missing_required_parameter");
  if (!v->is_string()) return wrong_type("model", "a string", *v);
  out = v->get<std::string>();
  if (out.empty()) return invalid_request("model is empty", "model", "invalid_value");
  return std::nullopt;
}

// Fields Myriad does not implement yet. A neutral value (what the field's
// absence means) is accepted, since some clients always send one.
struct Unsupported {
  const char* key;
  bool (*neutral)(const json&);
  const char* why;
};

bool empty_container(const json& v) { return (v.is_array() || v.is_object()) && v.empty(); }
bool is_none(const json& v) { return v.is_string() && v.get_ref<const std::string&>() == "none"; }
bool empty_string(const json& v) { return v.is_string() && v.get_ref<const std::string&>().empty(); }
bool text_format(const json& v) {
  if (!v.is_object()) return false;
  const auto t = v.find("type");
  return t != v.end() && t->is_string() && t->get_ref<const std::string&>() == "text";
}

constexpr Unsupported kUnsupported[] = {
    {"response_format", text_format,
     "structured output is not implemented; remove it or send {\"type\": \"text\"}"},
    {"tools", empty_container, "tool calling is not implemented; remove the field"},
    {"tool_choice", is_none, "tool calling is not implemented; remove it or send \"none\""},
    {"functions", empty_container, "function calling is not implemented; remove the field"},
    {"function_call", is_none, "function calling is not implemented; remove it or send \"none\""},
};
constexpr Unsupported kSuffix = {"suffix", empty_string, "insertion is not implemented; remove it"};

Problem check_unsupported(const json& o, const Unsupported& u) {
  const json* v = field(o, u.key);
  if (!v || u.neutral(*v)) return std::nullopt;
  std::string m = u.key;
  m += " is not supported yet: ";
  m += u.why;
  return invalid_request(std::move(m), u.key, "unsupported_parameter");
}

Problem check_all_unsupported(const json& o) {
  for (const Unsupported& u : kUnsupported) MYRIAD_API_TRY(check_unsupported(o, u));
  return std::nullopt;
}

Problem read_stop(const json& o, const ProtocolLimits& limits, std::vector<std::string>& out) {
  const json* v = field(o, "stop");
  if (!v) return std::nullopt;
  if (v->is_string()) {
    if (v->get_ref<const std::string&>().empty())
      return bad_value("stop", *v, "is empty: a stop string needs text");
    out.push_back(v->get<std::string>());
    return std::nullopt;
  }
  if (!v->is_array()) return wrong_type("stop", "a string or an array of strings", *v);
  if (v->size() > limits.max_stop_strings) {
    std::string m = "stop has " + std::to_string(v->size()) + " strings; at most ";
    m += std::to_string(limits.max_stop_strings);
    m += " are allowed";
    return invalid_request(std::move(m), "stop", "invalid_value");
  }
  for (size_t i = 0; i < v->size(); ++i) {
    const json& s = (*v)[i];
    const std::string param = "stop[" + std::to_string(i) + "]";
    if (!s.is_string()) return wrong_type(param, "a string", s);
    if (s.get_ref<const std::string&>().empty())
      return bad_value(param, s, "is empty: a stop string needs text");
    out.push_back(s.get<std::string>());
  }
  return std::nullopt;
}

// {"token id": bias}: ids as decimal strings (as OpenAI's), biases in
// [-100, 100]. Ids against the vocabulary, the gateway checks.
Problem read_logit_bias(const json& o, const ProtocolLimits& limits, std::vector<LogitBias>& out) {
  const json* v = field(o, "logit_bias");
  if (!v) return std::nullopt;
  if (!v->is_object()) return wrong_type("logit_bias", "an object", *v);
  if (v->empty()) return std::nullopt;
  if (!limits.applies_logit_bias)
    return unsupported_value("logit_bias",
                             "logit_bias is not supported by this server's executor yet; remove it or send {}");
  if (v->size() > kMaxLogitBias)
    return invalid_request("logit_bias has " + std::to_string(v->size()) + " tokens; at most " +
                               std::to_string(kMaxLogitBias),
                           "logit_bias", "invalid_value");
  for (auto it = v->begin(); it != v->end(); ++it) {
    const std::string& key = it.key();
    int32_t token = -1;
    const auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), token);
    if (key.empty() || ec != std::errc() || end != key.data() + key.size() || token < 0)
      return invalid_request("logit_bias key " + shown(json(key)) + " is not a token id (a decimal integer >= 0)",
                             "logit_bias", "invalid_value");
    const std::string param = "logit_bias[" + shown(json(key)) + "]";
    const json& b = it.value();
    if (!b.is_number()) return wrong_type(param, "a number", b);
    const double x = b.get<double>();
    if (!(std::fabs(x) <= double(kMaxLogitBiasValue)))
      return bad_value(param, b, "is out of range: must be in [-100, 100]");
    out.push_back({token, float(x)});
  }
  return std::nullopt;
}

// vLLM's stop_token_ids: token ids >= 0 (against the vocabulary, the gateway
// checks nothing: an id the model cannot sample never stops it).
Problem read_stop_token_ids(const json& o, const ProtocolLimits& limits, std::vector<int32_t>& out) {
  const json* v = field(o, "stop_token_ids");
  if (!v) return std::nullopt;
  if (!v->is_array()) return wrong_type("stop_token_ids", "an array of token ids", *v);
  if (v->size() > limits.max_stop_token_ids)
    return invalid_request("stop_token_ids has " + std::to_string(v->size()) + " ids; at most " +
                               std::to_string(limits.max_stop_token_ids),
                           "stop_token_ids", "invalid_value");
  for (size_t i = 0; i < v->size(); ++i) {
    std::optional<int64_t> id;
    MYRIAD_API_TRY(read_int_value("stop_token_ids[" + std::to_string(i) + "]", &(*v)[i], 0,
                                  std::numeric_limits<int32_t>::max(), "is out of range: must be a token id >= 0", id));
    out.push_back(int32_t(*id));
  }
  return std::nullopt;
}

// min_tokens against the max_tokens read (none: the gateway checks).
Problem check_min_tokens(const GenerationOptions& opt) {
  if (!opt.max_tokens || opt.min_tokens <= *opt.max_tokens) return std::nullopt;
  return invalid_request("min_tokens " + std::to_string(opt.min_tokens) + " exceeds max_tokens " +
                             std::to_string(*opt.max_tokens),
                         "min_tokens", "invalid_value");
}

// The fields both endpoints read the same way.
Problem read_common(const json& o, const ProtocolLimits& limits, GenerationOptions& opt) {
  MYRIAD_API_TRY(check_all_unsupported(o));
  SamplingParams& sp = opt.sampling;
  MYRIAD_API_TRY(read_float(o, "temperature", {0, 2, false, false, "is out of range: must be in [0, 2]"},
                            sp.temperature));
  MYRIAD_API_TRY(read_float(o, "top_p", {0, 1, true, false, "is out of range: must be in (0, 1]"}, sp.top_p));
  std::optional<int64_t> top_k;
  // vLLM's extension: -1 or 0 turn it off.
  MYRIAD_API_TRY(read_int(o, "top_k", -1, std::numeric_limits<int32_t>::max(),
                          "is out of range: must be -1, 0 (off) or >= 1", top_k));
  if (top_k) sp.top_k = *top_k < 0 ? 0 : int32_t(*top_k);
  MYRIAD_API_TRY(read_float(o, "presence_penalty",
                            {-2, 2, false, false, "is out of range: must be in [-2, 2]"},
                            sp.presence_penalty));
  MYRIAD_API_TRY(read_float(o, "frequency_penalty",
                            {-2, 2, false, false, "is out of range: must be in [-2, 2]"},
                            sp.frequency_penalty));
  MYRIAD_API_TRY(
      read_float(o, "repetition_penalty",
                 {0, std::numeric_limits<double>::max(), true, false, "is out of range: must be > 0"},
                 sp.repetition_penalty));
  if (const json* seed = field(o, "seed")) {
    // Any 64-bit integer; the bits seed the counter RNG.
    if (seed->is_number_unsigned()) {
      sp.seed = seed->get<uint64_t>();
    } else {
      std::optional<int64_t> s;
      MYRIAD_API_TRY(read_int_value("seed", seed, std::numeric_limits<int64_t>::min(),
                                    std::numeric_limits<int64_t>::max(), "is out of range: must fit 64 bits",
                                    s));
      sp.seed = uint64_t(*s);
    }
    opt.has_seed = true;
  }
  MYRIAD_API_TRY(read_stop(o, limits, opt.stop));
  MYRIAD_API_TRY(read_logit_bias(o, limits, opt.logit_bias));
  MYRIAD_API_TRY(read_stop_token_ids(o, limits, opt.stop_token_ids));
  std::optional<int64_t> min_tokens;  // vLLM's extension; checked against max_tokens once that is read
  MYRIAD_API_TRY(read_int(o, "min_tokens", 0, std::numeric_limits<int32_t>::max(), "is out of range: must be >= 0",
                          min_tokens));
  if (min_tokens && *min_tokens > 0) {
    if (!limits.applies_logit_bias)
      return unsupported_value("min_tokens", "min_tokens is not supported by this server's executor yet (it cannot "
                                             "keep the stop tokens from being sampled); remove it or send 0");
    opt.min_tokens = uint32_t(*min_tokens);
  }
  std::optional<int64_t> n;
  const std::string n_rule = "is out of range: must be in [1, " + std::to_string(limits.max_choices) + "]";
  MYRIAD_API_TRY(read_int(o, "n", 1, limits.max_choices, n_rule.c_str(), n));
  if (n) opt.n = uint32_t(*n);
  MYRIAD_API_TRY(read_bool(o, "stream", opt.stream));
  MYRIAD_API_TRY(read_bool(o, "ignore_eos", opt.ignore_eos));  // vLLM's extension
  if (const json* so = field(o, "stream_options")) {
    if (!so->is_object()) return wrong_type("stream_options", "an object", *so);
    if (!opt.stream)
      return invalid_request("stream_options is only allowed when stream is true", "stream_options",
                             "invalid_value");
    if (const json* iu = field(*so, "include_usage")) {
      if (!iu->is_boolean()) return wrong_type("stream_options.include_usage", "a boolean", *iu);
      opt.include_usage = iu->get<bool>();
    }
  }
  std::string user;  // accepted for OpenAI compatibility and ignored
  MYRIAD_API_TRY(read_string(o, "user", user));
  return std::nullopt;
}

Problem check_top_logprobs(const char* param, int64_t k, const ProtocolLimits& limits) {
  if (uint64_t(k) <= limits.max_top_logprobs) return std::nullopt;
  std::string m = std::string(param) + " " + std::to_string(k) +
                  " is more alternatives per token than this server returns (";
  m += std::to_string(limits.max_top_logprobs);
  m += "); the sampled token's logprob is always returned, so ask for ";
  m += std::to_string(limits.max_top_logprobs);
  m += limits.max_top_logprobs == 0 ? "" : " or fewer";
  return unsupported_value(param, std::move(m));
}

Problem read_max_tokens(const json& o, const char* key, const ProtocolLimits& limits,
                        std::optional<uint32_t>& out, int64_t lo = 1) {
  const int64_t hi =
      limits.max_tokens != 0 ? int64_t(limits.max_tokens) : int64_t(std::numeric_limits<uint32_t>::max());
  const std::string rule = "is out of range: must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  std::optional<int64_t> v;
  MYRIAD_API_TRY(read_int_value(key, field(o, key), lo, hi, rule.c_str(), v));
  if (v) out = uint32_t(*v);
  return std::nullopt;
}

// prompt: "text", [ids...], or an array of several: ["text", ...] or [[ids...], ...].
Problem read_token_ids(const json& arr, const std::string& param, std::vector<int32_t>& out) {
  if (arr.empty()) return invalid_request(param + " is an empty token array", param, "invalid_value");
  out.reserve(arr.size());
  for (size_t i = 0; i < arr.size(); ++i) {
    std::optional<int64_t> id;
    const std::string p = param + "[" + std::to_string(i) + "]";
    MYRIAD_API_TRY(read_int_value(p, &arr[i], 0, std::numeric_limits<int32_t>::max(),
                                  "is out of range: a token id is >= 0", id));
    if (!id) return wrong_type(p, "a token id (an integer)", arr[i]);  // null inside the array
    out.push_back(int32_t(*id));
  }
  return std::nullopt;
}

Problem read_prompts(const json& o, std::vector<PromptInput>& out) {
  const json* v = field(o, "prompt");
  if (!v) return invalid_request("prompt is required", "prompt", "missing_required_parameter");
  if (v->is_string()) {
    out.emplace_back(v->get<std::string>());
    return std::nullopt;
  }
  if (!v->is_array()) return wrong_type("prompt", "a string or an array of token ids", *v);
  if (v->empty()) return invalid_request("prompt is an empty array", "prompt", "invalid_value");
  if (v->front().is_number()) {
    std::vector<int32_t> ids;
    MYRIAD_API_TRY(read_token_ids(*v, "prompt", ids));
    out.emplace_back(std::move(ids));
    return std::nullopt;
  }
  // Several prompts, all strings or all token arrays (as OpenAI's schema has it).
  const bool strings = v->front().is_string();
  for (size_t i = 0; i < v->size(); ++i) {
    const json& p = (*v)[i];
    const std::string param = "prompt[" + std::to_string(i) + "]";
    if (strings) {
      if (!p.is_string()) return wrong_type(param, "a string, as prompt[0] is", p);
      out.emplace_back(p.get<std::string>());
    } else {
      if (!p.is_array())
        return wrong_type(param, i == 0 ? "a string, a token id or an array of token ids" : "an array of token ids",
                          p);
      std::vector<int32_t> ids;
      MYRIAD_API_TRY(read_token_ids(p, param, ids));
      out.emplace_back(std::move(ids));
    }
  }
  return std::nullopt;
}

Problem read_message(const json& m, size_t i, ChatMessage& out) {
  const std::string at = "messages[" + std::to_string(i) + "]";
  if (!m.is_object()) return wrong_type(at, "an object", m);
  const json* role = field(m, "role");
  if (!role) return invalid_request(at + ".role is required", at + ".role", "missing_required_parameter");
  if (!role->is_string()) return wrong_type(at + ".role", "a string", *role);
  const std::string& r = role->get_ref<const std::string&>();
  if (r == "system" || r == "user" || r == "assistant") {
    out.role = r;
  } else if (r == "developer") {
    out.role = "system";  // OpenAI's newer name for system instructions
  } else if (r == "tool" || r == "function") {
    return unsupported_value(
        at + ".role", at + ".role \"" + r + "\" is not supported yet: tool calling is not implemented");
  } else {
    return bad_value(at + ".role", *role, "is not one of \"system\", \"developer\", \"user\", \"assistant\"");
  }
  if (const json* calls = field(m, "tool_calls"); calls && !empty_container(*calls))
    return invalid_request(at + ".tool_calls is not supported yet: tool calling is not implemented",
                           at + ".tool_calls", "unsupported_parameter");
  if (const json* name = field(m, "name")) {
    if (!name->is_string()) return wrong_type(at + ".name", "a string", *name);
    out.name = name->get<std::string>();
  }
  const json* content = field(m, "content");
  if (!content) {
    if (out.role == "assistant") return std::nullopt;  // an empty assistant turn
    return invalid_request(at + ".content is required", at + ".content", "missing_required_parameter");
  }
  if (content->is_string()) {
    out.content = content->get<std::string>();
    return std::nullopt;
  }
  if (!content->is_array())
    return wrong_type(at + ".content", "a string or an array of content parts", *content);
  // Text parts are joined with "\n", as vLLM does.
  for (size_t j = 0; j < content->size(); ++j) {
    const json& part = (*content)[j];
    const std::string p = at + ".content[" + std::to_string(j) + "]";
    if (!part.is_object()) return wrong_type(p, "an object", part);
    const json* type = field(part, "type");
    if (!type) return invalid_request(p + ".type is required", p + ".type", "missing_required_parameter");
    if (!type->is_string()) return wrong_type(p + ".type", "a string", *type);
    if (type->get_ref<const std::string&>() != "text")
      return unsupported_value(
          p + ".type",
          p + ".type " + shown(*type) + " is not supported: only \"text\" parts (the models are text-only)");
    const json* text = field(part, "text");
    if (!text) return invalid_request(p + ".text is required", p + ".text", "missing_required_parameter");
    if (!text->is_string()) return wrong_type(p + ".text", "a string", *text);
    if (j > 0) out.content += '\n';
    out.content += text->get_ref<const std::string&>();
  }
  return std::nullopt;
}

Problem read_messages(const json& o, std::vector<ChatMessage>& out) {
  const json* v = field(o, "messages");
  if (!v) return invalid_request("messages is required", "messages", "missing_required_parameter");
  if (!v->is_array()) return wrong_type("messages", "an array of messages", *v);
  if (v->empty())
    return invalid_request("messages is empty: at least one message is required", "messages",
                           "invalid_value");
  out.resize(v->size());
  for (size_t i = 0; i < v->size(); ++i) MYRIAD_API_TRY(read_message((*v)[i], i, out[i]));
  return std::nullopt;
}

}  // namespace

ApiResult<CompletionCall> parse_completion_request(std::string_view body, const ProtocolLimits& limits) {
  auto root = parse_json_body(body, limits);
  if (!root.ok()) return root.error();
  const json& o = root.value();
  CompletionCall call;
  MYRIAD_API_TRY(read_model(o, call.model));
  MYRIAD_API_TRY(read_prompts(o, call.prompts));
  MYRIAD_API_TRY(check_unsupported(o, kSuffix));
  GenerationOptions& opt = call.options;
  MYRIAD_API_TRY(read_common(o, limits, opt));
  if (call.prompts.size() * opt.n > limits.max_choices) {
    std::string m = std::to_string(call.prompts.size()) + " prompts times n " + std::to_string(opt.n) + " make " +
                    std::to_string(call.prompts.size() * opt.n) + " choices; at most " +
                    std::to_string(limits.max_choices) + " per request";
    return invalid_request(std::move(m), "prompt", "invalid_value");
  }
  MYRIAD_API_TRY(read_bool(o, "echo", call.echo));
  // With echo, max_tokens 0 scores the prompt and generates nothing (as vLLM allows).
  MYRIAD_API_TRY(read_max_tokens(o, "max_tokens", limits, opt.max_tokens, call.echo ? 0 : 1));
  if (!opt.max_tokens) opt.max_tokens = 16;  // OpenAI's default for completions
  MYRIAD_API_TRY(check_min_tokens(opt));
  // logprobs: how many top alternatives per token (OpenAI allows 0..5).
  std::optional<int64_t> lp;
  MYRIAD_API_TRY(read_int(o, "logprobs", 0, 5, "is out of range: must be in [0, 5]", lp));
  if (lp) {
    MYRIAD_API_TRY(check_top_logprobs("logprobs", *lp, limits));
    opt.logprobs = true;
    opt.top_logprobs = uint32_t(*lp);
  }
  std::optional<int64_t> best_of;
  MYRIAD_API_TRY(read_int(o, "best_of", 1, std::numeric_limits<int64_t>::max(),
                          "is out of range: must be >= 1", best_of));
  if (best_of && *best_of != 1)
    return unsupported_value("best_of",
                             "best_of " + std::to_string(*best_of) + " is not supported yet: only 1");
  return call;
}

ApiResult<ChatCall> parse_chat_request(std::string_view body, const ProtocolLimits& limits) {
  auto root = parse_json_body(body, limits);
  if (!root.ok()) return root.error();
  const json& o = root.value();
  ChatCall call;
  MYRIAD_API_TRY(read_model(o, call.model));
  MYRIAD_API_TRY(read_messages(o, call.messages));
  GenerationOptions& opt = call.options;
  MYRIAD_API_TRY(read_common(o, limits, opt));
  // max_completion_tokens replaces the deprecated max_tokens; both are
  // checked, the newer wins.
  MYRIAD_API_TRY(read_max_tokens(o, "max_tokens", limits, opt.max_tokens));
  std::optional<uint32_t> mct;
  MYRIAD_API_TRY(read_max_tokens(o, "max_completion_tokens", limits, mct));
  if (mct) opt.max_tokens = mct;
  MYRIAD_API_TRY(check_min_tokens(opt));
  MYRIAD_API_TRY(read_bool(o, "logprobs", opt.logprobs));
  std::optional<int64_t> top;
  MYRIAD_API_TRY(read_int(o, "top_logprobs", 0, 20, "is out of range: must be in [0, 20]", top));
  if (top) {
    if (!opt.logprobs)
      return invalid_request("top_logprobs needs logprobs: true", "top_logprobs", "invalid_value");
    MYRIAD_API_TRY(check_top_logprobs("top_logprobs", *top, limits));
    opt.top_logprobs = uint32_t(*top);
  }
  return call;
}

json template_messages(const std::vector<ChatMessage>& messages) {
  json out = json::array();
  for (const ChatMessage& m : messages) {
    json j = {{"role", m.role}, {"content", m.content}};
    if (!m.name.empty()) j["name"] = m.name;
    out.push_back(std::move(j));
  }
  return out;
}

}  // namespace myriad::openai
