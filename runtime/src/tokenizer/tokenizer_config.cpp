#include "runtime/tokenizer_config.h"

#include "text_util.h"

namespace myriad {

namespace {

using nlohmann::json;

// A special token is "x", {"content": "x", ...}, null, or absent.
Result<std::optional<std::string>> token_field(const json& j, const char* key, const std::string& source) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::optional<std::string>();
  if (it->is_string()) return std::optional<std::string>(it->get<std::string>());
  if (it->is_object()) {
    auto c = it->find("content");
    if (c != it->end() && c->is_string()) return std::optional<std::string>(c->get<std::string>());
  }
  return make_error(ErrorCode::kBadFile,
                    source + ": field '" + key + "' must be a string or an object with a string 'content'");
}

Result<std::optional<bool>> bool_field(const json& j, const char* key, const std::string& source) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::optional<bool>();
  if (!it->is_boolean()) return make_error(ErrorCode::kBadFile, source + ": field '" + key + "' must be a boolean");
  return std::optional<bool>(it->get<bool>());
}

}  // namespace

json TokenizerConfig::template_variables() const {
  json v = json::object();
  if (bos_token) v["bos_token"] = *bos_token;
  if (eos_token) v["eos_token"] = *eos_token;
  if (unk_token) v["unk_token"] = *unk_token;
  if (pad_token) v["pad_token"] = *pad_token;
  return v;
}

Result<TokenizerConfig> parse_tokenizer_config(const json& j, const std::string& source) {
  if (!j.is_object()) return make_error(ErrorCode::kBadFile, source + ": top level must be a JSON object");
  TokenizerConfig c;
  const std::pair<const char*, std::optional<std::string>*> tokens[] = {
      {"bos_token", &c.bos_token}, {"eos_token", &c.eos_token},
      {"unk_token", &c.unk_token}, {"pad_token", &c.pad_token}};
  for (const auto& [key, dst] : tokens) {
    auto r = token_field(j, key, source);
    if (!r.ok()) return r.error();
    *dst = std::move(r.value());
  }
  if (auto it = j.find("chat_template"); it != j.end() && !it->is_null()) {
    if (it->is_string()) {
      c.chat_template = it->get<std::string>();
    } else if (it->is_array()) {
      for (const auto& t : *it) {
        if (!t.is_object() || !t.contains("name") || !t.contains("template") || !t["name"].is_string() ||
            !t["template"].is_string())
          return make_error(ErrorCode::kBadFile,
                            source + ": chat_template list entries must be {\"name\": str, \"template\": str}");
        if (t["name"] == "default") c.chat_template = t["template"].get<std::string>();
      }
    } else {
      return make_error(ErrorCode::kBadFile, source + ": chat_template must be a string or a list of {name, template}");
    }
  }
  auto cleanup = bool_field(j, "clean_up_tokenization_spaces", source);
  if (!cleanup.ok()) return cleanup.error();
  c.clean_up_tokenization_spaces = cleanup.value().value_or(false);
  auto bos = bool_field(j, "add_bos_token", source);
  if (!bos.ok()) return bos.error();
  c.add_bos_token = bos.value();
  auto eos = bool_field(j, "add_eos_token", source);
  if (!eos.ok()) return eos.error();
  c.add_eos_token = eos.value();
  c.raw = j;  // model_max_length may be 1e30: kept as a double, never required
  return c;
}

Result<TokenizerConfig> load_tokenizer_config(const std::string& path) {
  auto j = tok::load_json_file(path);
  if (!j.ok()) return j.error();
  return parse_tokenizer_config(j.value(), path);
}

}  // namespace myriad
