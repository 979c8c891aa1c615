// jinja AST: expressions (Expr) and statements (Node) of a parsed template.
// Invariant: built once by the parser and never modified; every node carries
// the 1-based line/column of its first token for error messages. Children
// are owned (unique_ptr), so the tree is freed with its Program.
// Owner: runtime/jinja (parser builds, evaluator reads). Thread-safety:
// immutable after parsing, safe to read from many threads.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "runtime/jinja/value.h"

namespace myriad::jinja {

struct Pos {
  int line = 1;
  int column = 1;
};

enum class ExprKind {
  kLiteral,   // literal
  kName,      // name
  kList,      // args = items
  kTuple,     // args = items (a Python tuple; evaluated as a list)
  kDict,      // args = key, value, key, value...
  kGetAttr,   // args[0].name
  kGetItem,   // args[0][args[1]]
  kSlice,     // args[0][args[1]:args[2]:args[3]] (null = omitted)
  kCall,      // args[0](args[1..], kwargs)
  kFilter,    // args[0] | name(args[1..], kwargs)
  kTest,      // args[0] is [not] name(args[1..])
  kUnary,     // op args[0]: "-", "+", "not"
  kBinary,    // args[0] op args[1]: + - * / // % ** ~ and or
  kCompare,   // args[0] ops[0] args[1] ops[1] args[2] ... (chained)
  kCond,      // args[1] if args[0] else args[2] (args[2] null = undefined)
};

struct Expr {
  ExprKind kind = ExprKind::kLiteral;
  Pos pos;
  Value literal;
  std::string name;                   // name, attribute, filter, test or operator
  std::vector<std::string> ops;       // kCompare: "==", "!=", "<", ">", "<=", ">=", "in", "notin"
  std::vector<std::unique_ptr<Expr>> args;
  std::vector<std::pair<std::string, std::unique_ptr<Expr>>> kwargs;
  bool negated = false;               // kTest: `is not`
};
using ExprPtr = std::unique_ptr<Expr>;

struct Node;
using Body = std::vector<Node>;

enum class NodeKind {
  kText,       // text
  kOutput,     // {{ expr }}
  kIf,         // branches: (cond, body)...; else_body
  kFor,        // targets in expr [if cond]: body [else else_body]
  kSet,        // set targets = expr, or set ns.attr = expr (attr non-empty)
  kSetBlock,   // set target %}body{% endset
  kMacro,      // macro name(params) body
  kFilterBlock,  // filter name(args) body endfilter (expr = filter applied to a placeholder)
  kBreak,
  kContinue,
  kScope,      // body with its own scope ({% generation %} / {% with %})
};

struct MacroParam {
  std::string name;
  ExprPtr default_value;  // null = required
};

struct Node {
  NodeKind kind = NodeKind::kText;
  Pos pos;
  std::string text;                       // kText; kSet: namespace attribute; kMacro: name
  ExprPtr expr;                           // kOutput, kSet, kFor iterable, kFilterBlock
  ExprPtr cond;                           // kFor: `if` filter
  std::vector<std::string> targets;       // kFor, kSet, kSetBlock
  std::vector<std::pair<ExprPtr, Body>> branches;  // kIf
  Body body;                              // kFor, kSetBlock, kMacro, kFilterBlock, kScope
  Body else_body;                         // kIf, kFor
  std::vector<MacroParam> params;         // kMacro
  std::vector<std::pair<std::string, ExprPtr>> bindings;  // kScope ({% with a = 1 %})
};

// A compiled template: the top-level body and the limits it was compiled with.
struct Program;

}  // namespace myriad::jinja
