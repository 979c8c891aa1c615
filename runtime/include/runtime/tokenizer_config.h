// TokenizerConfig: what Myriad reads from a Hugging Face tokenizer_config.json
// (special-token strings, chat template, decode clean-up, add_bos/add_eos).
// Token fields may be plain strings or {"content": ...} objects; absent or null
// fields stay empty/nullopt. `raw` keeps the whole file for the chat renderer.
// Immutable value type; thread-safe to share once built.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "runtime/result.h"

namespace myriad {

struct TokenizerConfig {
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
  std::optional<std::string> unk_token;
  std::optional<std::string> pad_token;
  // The "default" template when the file holds a list of {name, template}.
  std::optional<std::string> chat_template;
  bool clean_up_tokenization_spaces = false;  // decode() applies it when true
  std::optional<bool> add_bos_token;
  std::optional<bool> add_eos_token;
  nlohmann::json raw = nlohmann::json::object();

  // Variables a chat template sees besides messages/add_generation_prompt:
  // {bos_token, eos_token, unk_token, pad_token} as strings (only those set).
  nlohmann::json template_variables() const;
};

// `source` names the file in error messages.
Result<TokenizerConfig> parse_tokenizer_config(const nlohmann::json& j, const std::string& source);
Result<TokenizerConfig> load_tokenizer_config(const std::string& path);

}  // namespace myriad
