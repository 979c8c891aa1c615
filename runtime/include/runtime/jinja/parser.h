// jinja parser: tokens -> Program (the AST of a template), following Jinja2's
// grammar and operator precedence (conditional < or < and < not < comparisons
// < + - < ~ < * / // % < ** < unary - + < postfix . [] () < filters | and
// tests `is`). Unsupported tags (extends, include, import, call, block) are
// kUnsupported errors rather than silently ignored.
// Invariant: nesting of blocks and expressions never exceeds
// limits.max_nesting, so evaluating the tree cannot overflow the stack.
// Owner: runtime/jinja. Thread-safety: pure function.
#pragma once

#include <memory>
#include <string_view>

#include "runtime/chat_template.h"
#include "runtime/jinja/ast.h"
#include "runtime/result.h"

namespace myriad::jinja {

struct Program {
  Body body;
  ChatTemplateLimits limits;
};

Result<std::unique_ptr<Program>> parse_template(std::string_view source, const ChatTemplateLimits& limits);

}  // namespace myriad::jinja
