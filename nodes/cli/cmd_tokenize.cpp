// `myriad tokenize` and `myriad detokenize`: the tokenizer from the command
// line, printing JSON.
//   myriad tokenize --tokenizer DIR (--text TEXT | --chat FILE.json) [--no-special] [--chat-template FILE]
//     -> {"ids": [...]}            (with --chat also "text": the rendered prompt)
//   myriad detokenize --tokenizer DIR --ids 1,2,3 [--skip-special]
//     -> {"text": "..."}
// --chat renders a JSON list of {"role", "content"} messages with
// add_generation_prompt=true through the chat template (tokenizer_config.json's,
// or --chat-template FILE) and tokenizes the result without adding special
// tokens (the template writes them), as transformers' apply_chat_template does.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "args.h"
#include "commands.h"
#include "runtime/chat_template.h"
#include "runtime/tokenizer.h"

namespace myriad::cli {

namespace {

using nlohmann::json;

int fail(const char* cmd, const Error& e, int code = 1) {
  std::fprintf(stderr, "myriad %s: %s\n", cmd, e.to_string().c_str());
  return code;
}

void print_json(const json& j) {
  // Decoded text may hold U+FFFD but never invalid UTF-8; replace anyway so
  // that printing can never throw.
  std::printf("%s\n", j.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
}

Result<std::string> read_file(const std::string& path, const char* what) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return make_error(ErrorCode::kNotFound, std::string("cannot open ") + what + " " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

Result<json> read_messages(const std::string& path) {
  auto text = read_file(path, "chat file");
  if (!text.ok()) return text.error();
  json j = json::parse(text.value(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return make_error(ErrorCode::kBadFile, path + " is not valid JSON");
  if (!j.is_array()) return make_error(ErrorCode::kBadFile, path + ": expected a JSON list of {\"role\", \"content\"} messages");
  for (size_t i = 0; i < j.size(); ++i) {
    const json& m = j[i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content") ||
        !m["content"].is_string())
      return make_error(ErrorCode::kBadFile, path + ": message " + std::to_string(i) +
                                                 " must be an object with string \"role\" and \"content\"");
  }
  return j;
}


}  // namespace

int cmd_tokenize(const TokenizeArgs& args) {
  const bool has_text = args.text.has_value(), has_chat = args.chat.has_value();
  if (has_text == has_chat)
    return fail("tokenize", make_error(ErrorCode::kInvalidArgument, "give exactly one of --text and --chat"), 2);
  if (args.chat_template && !has_chat)
    return fail("tokenize", make_error(ErrorCode::kInvalidArgument, "--chat-template needs --chat"), 2);
  const std::string& dir = args.tokenizer;
  auto tok = Tokenizer::load(dir);
  if (!tok.ok()) return fail("tokenize", tok.error());

  if (has_text) {
    const auto ids = tok.value()->encode(*args.text, !args.no_special);
    print_json(json{{"ids", ids}});
    return 0;
  }
  auto messages = read_messages(*args.chat);
  if (!messages.ok()) return fail("tokenize", messages.error());
  std::string tmpl;
  if (args.chat_template) {
    auto t = read_file(*args.chat_template, "chat template");
    if (!t.ok()) return fail("tokenize", t.error());
    tmpl = std::move(t.value());
  } else if (tok.value()->config().chat_template) {
    tmpl = *tok.value()->config().chat_template;
  } else {
    return fail("tokenize", make_error(ErrorCode::kNotFound, dir +
                                                                 "/tokenizer_config.json has no chat_template; "
                                                                 "pass --chat-template FILE"));
  }
  auto rendered = render_chat_template(tmpl, messages.value(), /*add_generation_prompt=*/true,
                                       chat_template_context(tok.value()->config()));
  if (!rendered.ok()) return fail("tokenize", rendered.error());
  const auto ids = tok.value()->encode(rendered.value(), /*add_special_tokens=*/false);
  print_json(json{{"ids", ids}, {"text", rendered.value()}});
  return 0;
}

int cmd_detokenize(const DetokenizeArgs& args) {
  auto ids = parse_id_list(args.ids);
  if (!ids.ok()) return fail("detokenize", ids.error(), 2);
  auto tok = Tokenizer::load(args.tokenizer);
  if (!tok.ok()) return fail("detokenize", tok.error());
  print_json(json{{"text", tok.value()->decode(ids.value(), args.skip_special)}});
  return 0;
}

}  // namespace myriad::cli
