#include "runtime/training/training_data.h"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "runtime/chat_template.h"
#include "../json_depth.h"

namespace myriad {

using nlohmann::json;

std::optional<TrainingExample> text_example(const std::string& text, const Tokenizer& tok, int32_t eos,
                                            int64_t max_tokens, int64_t line) {
  TrainingExample ex;
  ex.tokens = tok.encode(text, /*add_special_tokens=*/true);
  if (eos >= 0) ex.tokens.push_back(eos);
  if (max_tokens > 0 && int64_t(ex.tokens.size()) > max_tokens) ex.tokens.resize(size_t(max_tokens));
  if (ex.tokens.size() < 2) return std::nullopt;
  ex.targets.assign(ex.tokens.size(), 1);
  ex.targets[0] = 0;
  ex.line = line;
  return ex;
}

int64_t TrainingExample::target_count() const {
  int64_t n = 0;
  for (size_t i = 1; i < targets.size(); ++i) n += targets[i] != 0;
  return n;
}

namespace {

Error bad(const std::string& where, const std::string& what) { return make_error(ErrorCode::kBadFile, where + ": " + what); }

void append(TrainingExample& ex, const std::vector<int32_t>& ids, bool target) {
  ex.tokens.insert(ex.tokens.end(), ids.begin(), ids.end());
  ex.targets.insert(ex.targets.end(), ids.size(), uint8_t(target));
}

Result<TrainingExample> prompt_completion(const json& j, const Tokenizer& tok, const DatasetOptions& o,
                                          const std::string& where) {
  const auto& p = j.at("prompt");
  const auto& c = j.at("completion");
  if (!p.is_string() || !c.is_string()) return bad(where, "\"prompt\" and \"completion\" must be strings");
  const std::string prompt = p.get<std::string>(), completion = c.get<std::string>();
  if (completion.empty()) return bad(where, "\"completion\" is empty: nothing to learn");
  int32_t eos = 0;
  if (o.eos) {
    eos = *o.eos;
  } else if (!tok.eos_ids().empty()) {
    eos = tok.eos_ids()[0];
  } else {
    return bad(where, "the tokenizer has no EOS token to end the completion with");
  }
  // The tokens of the whole text; the loss starts where they leave the
  // prompt's own tokenization (the prompt's length when its tokens are a
  // prefix; earlier when the boundary merges, e.g. a prompt ending in a space
  // whose token joins the completion's first word: splicing the two
  // tokenizations would drop that word).
  const std::vector<int32_t> prompt_ids = tok.encode(prompt, /*add_special_tokens=*/true);
  const std::vector<int32_t> full = tok.encode(prompt + completion, /*add_special_tokens=*/true);
  size_t common = 0;
  while (common < prompt_ids.size() && common < full.size() && prompt_ids[common] == full[common]) ++common;
  if (full.size() <= common) return bad(where, "the completion adds no tokens after the prompt's");
  TrainingExample ex;
  append(ex, std::vector<int32_t>(full.begin(), full.begin() + int64_t(common)), false);
  append(ex, std::vector<int32_t>(full.begin() + int64_t(common), full.end()), true);
  append(ex, {eos}, true);
  return ex;
}

// {"text": T}: language modelling on the whole text (a corpus line, as a
// mixture's experts train), as text_example.
Result<TrainingExample> plain_text(const json& j, const Tokenizer& tok, const DatasetOptions& o,
                                   const std::string& where) {
  const auto& t = j.at("text");
  if (!t.is_string() || t.get<std::string>().empty()) return bad(where, "\"text\" must be a non-empty string");
  const int32_t eos = o.eos ? *o.eos : !tok.eos_ids().empty() ? tok.eos_ids()[0] : -1;
  auto ex = text_example(t.get<std::string>(), tok, eos, /*max_tokens=*/0, 0);
  if (!ex) return bad(where, "\"text\" has fewer than 2 tokens: nothing to learn");
  return std::move(*ex);
}

Result<TrainingExample> messages(const json& j, const Tokenizer& tok, const std::string& where) {
  const auto& m = j.at("messages");
  if (!m.is_array() || m.empty()) return bad(where, "\"messages\" must be a non-empty list");
  bool any_assistant = false;
  for (size_t i = 0; i < m.size(); ++i) {
    const auto& msg = m[i];
    if (!msg.is_object() || !msg.contains("role") || !msg["role"].is_string() || !msg.contains("content") ||
        !msg["content"].is_string())
      return bad(where, "message " + std::to_string(i) + " needs \"role\" and \"content\" strings");
    any_assistant = any_assistant || msg["role"] == "assistant";
  }
  if (!any_assistant) return bad(where, "\"messages\" has no assistant turn to learn");
  auto tmpl = chat_template_from_config(tok.config().raw);
  if (!tmpl.ok()) return bad(where, "the tokenizer has no chat template to render \"messages\" with");
  const json ctx = chat_template_context(tok.config());
  auto render = [&](size_t n, bool gen) -> Result<std::string> {
    return render_chat_template(tmpl.value(), json(std::vector<json>(m.begin(), m.begin() + int64_t(n))), gen, ctx);
  };
  auto full = render(m.size(), false);
  if (!full.ok()) return bad(where, "the chat template failed: " + full.error().message);
  const std::string& text = full.value();
  // Character ranges of the assistant turns in the full text: from the end of
  // the generation prompt the template renders for the turn (when that is a
  // prefix of the conversation) to the end of the answer's text, plus the
  // special token that closes the turn (<|im_end|>, <|eot_id|>, </s>). The
  // answer is searched for rather than rendered as a prefix because
  // templates render earlier turns differently once later ones follow (Qwen3
  // drops the empty think block of earlier answers; Llama 3 base appends the
  // assistant header whatever add_generation_prompt says).
  std::vector<std::pair<size_t, size_t>> turns;
  for (size_t i = 0; i < m.size(); ++i) {
    if (m[i]["role"] != "assistant") continue;
    auto before = render(i, true);
    if (!before.ok()) return bad(where, "the chat template failed on the turns before message " + std::to_string(i));
    const std::string& b = before.value();
    const size_t prev_end = turns.empty() ? 0 : turns.back().second;
    const bool prompt_is_prefix = b.size() >= prev_end && text.compare(0, b.size(), b) == 0;
    const size_t from = prompt_is_prefix ? b.size() : prev_end;
    std::string content = m[i]["content"].get<std::string>();
    size_t pos = text.find(content, from);
    if (pos == std::string::npos) {  // templates that trim the content
      const size_t f = content.find_first_not_of(" \t\n"), l = content.find_last_not_of(" \t\n");
      content = f == std::string::npos ? std::string() : content.substr(f, l - f + 1);
      pos = text.find(content, from);
    }
    if (pos == std::string::npos)
      return bad(where, "assistant message " + std::to_string(i) +
                            " cannot be located in the conversation the chat template renders");
    size_t end = pos + content.size();
    const std::vector<int32_t> next = tok.encode(std::string_view(text).substr(end, 64), false);
    if (!next.empty() && tok.is_special(next[0]))
      if (auto s = tok.id_to_token(next[0]); s && text.compare(end, s->size(), *s) == 0) end += s->size();
    turns.emplace_back(prompt_is_prefix ? b.size() : pos, end);
  }
  TrainingExample ex;
  size_t at = 0;
  for (const auto& [b, e] : turns) {
    if (b > at) append(ex, tok.encode(std::string_view(text).substr(at, b - at), false), false);
    if (e > b) append(ex, tok.encode(std::string_view(text).substr(b, e - b), false), true);
    at = std::max(at, e);
  }
  if (at < text.size()) append(ex, tok.encode(std::string_view(text).substr(at), false), false);
  return ex;
}

}  // namespace

Result<TrainingExample> encode_training_example(const json& j, const Tokenizer& tok, const DatasetOptions& o,
                                                const std::string& where) {
  if (!j.is_object()) return bad(where, "an example must be a JSON object");
  Result<TrainingExample> ex = make_error(ErrorCode::kInternal, "");
  if (j.contains("prompt") || j.contains("completion")) {
    if (!j.contains("prompt") || !j.contains("completion"))
      return bad(where, "needs both \"prompt\" and \"completion\"");
    if (j.contains("messages")) return bad(where, "has both \"messages\" and \"prompt\"/\"completion\"");
    if (j.contains("text")) return bad(where, "has both \"text\" and \"prompt\"/\"completion\"");
    ex = prompt_completion(j, tok, o, where);
  } else if (j.contains("messages")) {
    if (j.contains("text")) return bad(where, "has both \"messages\" and \"text\"");
    ex = messages(j, tok, where);
  } else if (j.contains("text")) {
    ex = plain_text(j, tok, o, where);
  } else {
    return bad(where, "needs \"prompt\" and \"completion\" strings, a \"messages\" list, or a \"text\" string");
  }
  if (!ex.ok()) return ex;
  TrainingExample& e = ex.value();
  if (o.max_tokens < 2) return make_error(ErrorCode::kInvalidArgument, "max_tokens must be at least 2");
  if (int64_t(e.tokens.size()) > o.max_tokens) {
    if (o.overflow == OverflowPolicy::kReject)
      return bad(where, std::to_string(e.tokens.size()) + " tokens exceed the limit of " +
                            std::to_string(o.max_tokens));
    e.tokens.resize(size_t(o.max_tokens));
    e.targets.resize(size_t(o.max_tokens));
  }
  if (e.target_count() == 0)
    return bad(where, "no token left to learn (the trained part starts after token " + std::to_string(o.max_tokens) +
                          ", or is empty)");
  return ex;
}

Result<std::vector<TrainingExample>> parse_training_jsonl(std::string_view text, const Tokenizer& tok,
                                                          const DatasetOptions& o, const std::string& source) {
  std::vector<TrainingExample> out;
  int64_t line_no = 0;
  size_t at = 0;
  while (at < text.size()) {
    size_t nl = text.find('\n', at);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(at, nl - at);
    at = nl + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    const std::string where = source + ":" + std::to_string(line_no);
    if (json_too_deep(line)) return bad(where, "JSON nested deeper than " + std::to_string(kMaxJsonDepth));
    json j = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return bad(where, "not a JSON object (malformed JSON)");
    auto ex = encode_training_example(j, tok, o, where);
    if (!ex.ok()) return ex.error();
    ex.value().line = line_no;
    out.push_back(std::move(ex.value()));
  }
  if (out.empty()) return bad(source, "no examples");
  return out;
}

Result<std::vector<TrainingExample>> load_training_jsonl(const std::string& path, const Tokenizer& tok,
                                                         const DatasetOptions& o) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(ErrorCode::kNotFound, path + ": cannot open the dataset");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_training_jsonl(ss.str(), tok, o, path);
}

}  // namespace myriad
