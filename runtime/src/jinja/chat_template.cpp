#include "runtime/chat_template.h"

#include "runtime/jinja/evaluator.h"
#include "runtime/jinja/parser.h"
#include "runtime/jinja/text.h"

namespace myriad {

namespace {

// Errors and output may carry bytes of a malformed template; keep them valid
// UTF-8 so a server can always put them into a JSON response.
Result<std::string> checked(Result<std::string> r) {
  if (!r.ok()) return make_error(r.error().code, jinja::valid_utf8(r.error().message));
  return jinja::valid_utf8(std::move(r).value());
}

}  // namespace

Result<ChatTemplate> ChatTemplate::compile(std::string_view source, ChatTemplateLimits limits) {
  auto program = jinja::parse_template(source, limits);
  if (!program.ok()) return make_error(program.error().code, jinja::valid_utf8(program.error().message));
  return ChatTemplate(std::shared_ptr<const jinja::Program>(std::move(program).value()));
}

Result<std::string> ChatTemplate::render(const nlohmann::json& context) const {
  jinja::Renderer renderer(*program_);
  return checked(renderer.render(context));
}

Result<std::string> ChatTemplate::render_ordered(const nlohmann::ordered_json& context) const {
  jinja::Renderer renderer(*program_);
  return checked(renderer.render(context));
}

namespace {

// A special token in tokenizer_config.json: "text" or {"content": "text", ...}.
const nlohmann::json* token_text(const nlohmann::json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end()) return nullptr;
  if (it->is_string()) return &*it;
  if (it->is_object()) {
    auto c = it->find("content");
    if (c != it->end() && c->is_string()) return &*c;
  }
  return nullptr;
}

}  // namespace

Result<std::string> render_chat_template(const std::string& template_source, const nlohmann::json& messages,
                                         bool add_generation_prompt, const nlohmann::json& tokenizer_config) {
  if (!messages.is_array()) return make_error(ErrorCode::kInvalidArgument, "chat messages must be a JSON array");
  if (!tokenizer_config.is_object() && !tokenizer_config.is_null()) {
    return make_error(ErrorCode::kInvalidArgument, "tokenizer_config must be a JSON object");
  }
  auto compiled = ChatTemplate::compile(template_source);
  if (!compiled.ok()) return compiled.error();
  nlohmann::json context = nlohmann::json::object();
  context["messages"] = messages;
  context["add_generation_prompt"] = add_generation_prompt;
  if (tokenizer_config.is_object()) {
    // transformers passes its special_tokens_map: the set tokens and the
    // additional_special_tokens list.
    for (const char* key : {"bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token",
                            "mask_token"}) {
      if (const nlohmann::json* t = token_text(tokenizer_config, key)) context[key] = *t;
    }
    auto extra = tokenizer_config.find("additional_special_tokens");
    if (extra != tokenizer_config.end() && extra->is_array() && !extra->empty()) {
      nlohmann::json list = nlohmann::json::array();
      for (const auto& t : *extra) {
        if (t.is_string()) list.push_back(t);
        else if (t.is_object() && t.contains("content") && t["content"].is_string()) list.push_back(t["content"]);
      }
      context["additional_special_tokens"] = std::move(list);
    }
  }
  return compiled.value().render(context);
}

Result<std::string> chat_template_from_config(const nlohmann::json& tokenizer_config, std::string_view name) {
  if (!tokenizer_config.is_object()) return make_error(ErrorCode::kInvalidArgument, "tokenizer_config must be a JSON object");
  auto it = tokenizer_config.find("chat_template");
  if (it == tokenizer_config.end() || it->is_null()) {
    return make_error(ErrorCode::kNotFound, "tokenizer_config.json has no chat_template");
  }
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array()) {
    for (const auto& entry : *it) {
      if (entry.is_object() && entry.value("name", "") == name && entry.contains("template") &&
          entry["template"].is_string()) {
        return entry["template"].get<std::string>();
      }
    }
    return make_error(ErrorCode::kNotFound, "tokenizer_config.json has no chat_template named '" + std::string(name) + "'");
  }
  return make_error(ErrorCode::kBadFile, "tokenizer_config.json chat_template must be a string or a list of {name, template}");
}

nlohmann::json chat_template_context(const TokenizerConfig& config) {
  nlohmann::json ctx = config.raw.is_object() ? config.raw : nlohmann::json::object();
  for (const char* key : {"bos_token", "eos_token", "unk_token", "pad_token"}) ctx.erase(key);
  ctx.update(config.template_variables());
  return ctx;
}

}  // namespace myriad
