#include "nodes/openai/responses.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "json_text.h"

namespace myriad::openai {

namespace {

using ojson = nlohmann::ordered_json;

// The float's shortest decimal, read back as a double, so -0.1f prints
// "-0.1" and not "-0.10000000149011612"; clamped as vLLM clamps.
double wire_logprob(float lp) {
  if (!std::isfinite(lp) || lp < -9999.0f) return -9999.0;
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, lp);
  double d = lp;
  std::from_chars(buf, r.ptr, d);
  return d;
}

ojson byte_list(std::string_view s) {
  ojson b = ojson::array();
  for (unsigned char c : s) b.push_back(int(c));
  return b;
}

// {"tokens":[...],"token_logprobs":[...],"top_logprobs":[{tok:lp,...}],"text_offset":[...]}
ojson completion_logprobs(std::span<const TokenLogprob> tokens, uint32_t text_offset) {
  ojson toks = ojson::array(), lps = ojson::array(), tops = ojson::array(), offs = ojson::array();
  for (const TokenLogprob& t : tokens) {
    toks.push_back(t.token);
    if (!t.logprob) {  // an echoed prompt's first token
      lps.push_back(nullptr);
      tops.push_back(nullptr);
    } else {
      lps.push_back(wire_logprob(*t.logprob));
      ojson top = ojson::object();
      for (const TopLogprob& a : t.top)
        if (!top.contains(a.token)) top[a.token] = wire_logprob(a.logprob);  // the likelier of equal texts
      tops.push_back(std::move(top));
    }
    offs.push_back(text_offset);
    text_offset += code_points(t.token);
  }
  ojson out;
  out["tokens"] = std::move(toks);
  out["token_logprobs"] = std::move(lps);
  out["top_logprobs"] = std::move(tops);
  out["text_offset"] = std::move(offs);
  return out;
}

// {"content":[{"token","logprob","bytes","top_logprobs":[{"token","logprob","bytes"}]}],"refusal":null}
ojson chat_logprobs(std::span<const TokenLogprob> tokens) {
  ojson content = ojson::array();
  for (const TokenLogprob& t : tokens) {
    ojson e;
    e["token"] = t.token;
    e["logprob"] = wire_logprob(t.logprob.value_or(-9999.0f));  // chat echoes no prompt
    e["bytes"] = byte_list(t.token);
    ojson top = ojson::array();
    for (const TopLogprob& a : t.top) {
      ojson x;
      x["token"] = a.token;
      x["logprob"] = wire_logprob(a.logprob);
      x["bytes"] = byte_list(a.token);
      top.push_back(std::move(x));
    }
    e["top_logprobs"] = std::move(top);
    content.push_back(std::move(e));
  }
  ojson out;
  out["content"] = std::move(content);
  out["refusal"] = nullptr;
  return out;
}

ojson usage_json(const Usage& u) {
  ojson j;
  j["prompt_tokens"] = u.prompt_tokens;
  j["completion_tokens"] = u.completion_tokens;
  j["total_tokens"] = uint64_t(u.prompt_tokens) + u.completion_tokens;
  return j;
}

ojson head(const ResponseMeta& meta, const char* object) {
  ojson j;
  j["id"] = meta.id;
  j["object"] = object;
  j["created"] = meta.created;
  j["model"] = meta.model;
  if (!meta.experts.empty()) {
    ojson experts = ojson::array();
    for (const auto& [name, weight] : meta.experts) {
      ojson e;
      e["name"] = name;
      e["weight"] = weight;
      experts.push_back(std::move(e));
    }
    j["experts"] = std::move(experts);
  }
  return j;
}

ojson finish_json(std::optional<FinishReason> r) {
  return r ? ojson(finish_reason_string(*r)) : ojson(nullptr);
}

// A chunk: head, the one choice, and "usage":null when include_usage.
std::string chunk(const ResponseMeta& meta, const char* object, ojson choice) {
  ojson j = head(meta, object);
  j["choices"] = ojson::array({std::move(choice)});
  if (meta.include_usage) j["usage"] = nullptr;
  return dump_json(j);
}

}  // namespace

std::string response_id(Endpoint endpoint, uint64_t request_id) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(request_id));
  std::string id = endpoint == Endpoint::kCompletions ? "cmpl-" : "chatcmpl-";
  id += hex;
  return id;
}

const char* finish_reason_string(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kCancelled:
    case FinishReason::kDeadline:
      return "abort";
  }
  return "abort";
}

std::string completion_response(const ResponseMeta& meta, std::span<const Choice> choices, const Usage& usage) {
  ojson list = ojson::array();
  for (const Choice& choice : choices) {
    ojson c;
    c["text"] = choice.text;
    c["index"] = choice.index;
    c["logprobs"] = meta.logprobs ? completion_logprobs(choice.logprobs, 0) : ojson(nullptr);
    c["finish_reason"] = finish_reason_string(choice.finish_reason);
    list.push_back(std::move(c));
  }
  ojson j = head(meta, "text_completion");
  j["choices"] = std::move(list);
  j["usage"] = usage_json(usage);
  return dump_json(j);
}

std::string chat_completion_response(const ResponseMeta& meta, std::span<const Choice> choices,
                                     const Usage& usage) {
  ojson list = ojson::array();
  for (const Choice& choice : choices) {
    ojson message;
    message["role"] = "assistant";
    message["content"] = choice.text;
    ojson c;
    c["index"] = choice.index;
    c["message"] = std::move(message);
    c["logprobs"] = meta.logprobs ? chat_logprobs(choice.logprobs) : ojson(nullptr);
    c["finish_reason"] = finish_reason_string(choice.finish_reason);
    list.push_back(std::move(c));
  }
  ojson j = head(meta, "chat.completion");
  j["choices"] = std::move(list);
  j["usage"] = usage_json(usage);
  return dump_json(j);
}

std::string chat_role_chunk(const ResponseMeta& meta, uint32_t index) {
  ojson delta;
  delta["role"] = "assistant";
  delta["content"] = "";
  ojson c;
  c["index"] = index;
  c["delta"] = std::move(delta);
  c["logprobs"] = nullptr;
  c["finish_reason"] = nullptr;
  return chunk(meta, "chat.completion.chunk", std::move(c));
}

std::string chat_chunk(const ResponseMeta& meta, const Delta& d) {
  ojson delta = ojson::object();
  if (!d.text.empty() || !d.finish_reason) delta["content"] = d.text;
  ojson c;
  c["index"] = d.index;
  c["delta"] = std::move(delta);
  c["logprobs"] = meta.logprobs && !d.logprobs.empty() ? chat_logprobs(d.logprobs) : ojson(nullptr);
  c["finish_reason"] = finish_json(d.finish_reason);
  return chunk(meta, "chat.completion.chunk", std::move(c));
}

std::string completion_chunk(const ResponseMeta& meta, const Delta& d) {
  ojson c;
  c["text"] = d.text;
  c["index"] = d.index;
  c["logprobs"] =
      meta.logprobs && !d.logprobs.empty() ? completion_logprobs(d.logprobs, d.text_offset) : ojson(nullptr);
  c["finish_reason"] = finish_json(d.finish_reason);
  return chunk(meta, "text_completion", std::move(c));
}

std::string usage_chunk(Endpoint endpoint, const ResponseMeta& meta, const Usage& usage) {
  ojson j = head(meta, endpoint == Endpoint::kCompletions ? "text_completion" : "chat.completion.chunk");
  j["choices"] = ojson::array();
  j["usage"] = usage_json(usage);
  return dump_json(j);
}

uint32_t code_points(std::string_view s) {
  uint32_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::string sse_event(std::string_view json) {
  std::string e;
  e.reserve(json.size() + 8);
  e += "data: ";
  e += json;
  e += "\n\n";
  return e;
}

std::string_view sse_done() { return "data: [DONE]\n\n"; }

}  // namespace myriad::openai
