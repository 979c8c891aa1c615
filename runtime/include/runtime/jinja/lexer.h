// jinja lexer: template source -> tokens, with the whitespace rules of
// Jinja2 as transformers configures it: `{%-`/`-%}` strip all whitespace,
// lstrip_blocks removes spaces/tabs before a block or comment tag that starts
// a line, trim_blocks removes the first newline after one, `+` disables both,
// the single trailing newline of the template is dropped
// (keep_trailing_newline=False), \r\n and \r in text become \n, and
// {% raw %}...{% endraw %} is passed through as text.
// Invariant: the token list ends with one kEof token; kText tokens are never
// empty. Owner: runtime/jinja. Thread-safety: pure function.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/jinja/ast.h"
#include "runtime/result.h"

namespace myriad::jinja {

enum class TokenKind { kText, kVarBegin, kVarEnd, kBlockBegin, kBlockEnd, kName, kString, kInt, kFloat, kOp, kEof };

struct Token {
  TokenKind kind = TokenKind::kEof;
  Pos pos;
  std::string text;        // kText, kName, kOp (the operator), kString (decoded)
  std::int64_t int_value = 0;
  double float_value = 0.0;
};

// Errors are kBadFile "line L, column C: ...".
Result<std::vector<Token>> tokenize(std::string_view source);

// "line L, column C: message" as every template error reads.
Error template_error(ErrorCode code, Pos pos, const std::string& message);

}  // namespace myriad::jinja
