// Chat templates: renders the Jinja chat template of a Hugging Face tokenizer
// (tokenizer_config.json "chat_template") the way transformers'
// apply_chat_template does (Jinja2 ImmutableSandboxedEnvironment with
// trim_blocks, lstrip_blocks and loopcontrols; tojson without HTML escaping;
// raise_exception and strftime_now as globals). The Jinja subset and the known
// differences from Python are listed in docs/chat-templates.md.
//
// Invariant: a ChatTemplate is an immutable compiled program; render() never
// changes it, so one ChatTemplate may be rendered from many threads at once.
// Hostile templates cannot crash the process: parse nesting, macro recursion,
// loop iterations and output size are bounded (ChatTemplateLimits) and every
// failure is an Error naming the line and column of the template.
// Owner: runtime (chat-template helper). Thread-safety: see the invariant.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "runtime/result.h"
#include "runtime/tokenizer_config.h"

namespace myriad {

namespace jinja {
struct Program;
}

// Bounds that keep a hostile template from exhausting the server.
struct ChatTemplateLimits {
  int max_nesting = 100;                    // parse depth of blocks and expressions
  int max_call_depth = 64;                  // nested macro calls
  std::uint64_t max_loop_iterations = 1'000'000;  // all loops/range()/filters in one render
  std::size_t max_output_bytes = 64u << 20;  // rendered text and any string value
};

class ChatTemplate {
 public:
  // Parses the template; a syntax error names line:column and what was expected.
  static Result<ChatTemplate> compile(std::string_view source, ChatTemplateLimits limits = {});

  // Renders with `context` (a JSON object) as the template's variables.
  // raise_exception('msg') in the template becomes an Error carrying 'msg'.
  Result<std::string> render(const nlohmann::json& context) const;
  // The same from an ordered_json, whose objects keep their key order: Python
  // dicts do, so `tools | tojson` only prints keys in the request's order when
  // the request was parsed as ordered_json (nlohmann::json sorts keys).
  Result<std::string> render_ordered(const nlohmann::ordered_json& context) const;

 private:
  explicit ChatTemplate(std::shared_ptr<const jinja::Program> program) : program_(std::move(program)) {}
  std::shared_ptr<const jinja::Program> program_;
};

// Renders a Jinja chat template with {messages, add_generation_prompt} plus
// the tokenizer_config.json variables (bos_token, eos_token, unk_token,
// pad_token as strings: they may appear in the config as strings or
// {"content": ...} objects; null or absent ones stay undefined, as in
// transformers' special_tokens_map). sep_token, cls_token, mask_token and the
// additional_special_tokens list are passed too, as transformers does.
Result<std::string> render_chat_template(const std::string& template_source,
                                         const nlohmann::json& messages, bool add_generation_prompt,
                                         const nlohmann::json& tokenizer_config);

// tokenizer_config.json as a chat template sees it (special tokens as
// strings even where the file has {"content": ...} objects): the context for
// render_chat_template.
nlohmann::json chat_template_context(const TokenizerConfig& config);

// The template source of a tokenizer_config.json: "chat_template" as a string,
// or the entry named `name` of a list of {"name", "template"} objects
// (transformers' named templates). kNotFound when there is none.
Result<std::string> chat_template_from_config(const nlohmann::json& tokenizer_config,
                                              std::string_view name = "default");

}  // namespace myriad
