#include "runtime/jinja/parser.h"

#include <initializer_list>

#include "runtime/jinja/evaluator.h"
#include "runtime/jinja/lexer.h"

namespace myriad::jinja {

namespace {

class Parser {
 public:
  Parser(std::vector<Token> tokens, const ChatTemplateLimits& limits) : t_(std::move(tokens)), limits_(limits) {}

  Result<Body> parse_all() {
    std::string end;
    Body body;
    MYRIAD_TRY(parse_body({}, &body, &end));
    return body;
  }

 private:
  // ---- token helpers ----
  const Token& cur() const { return t_[i_]; }
  const Token& peek(std::size_t k = 1) const { return t_[std::min(i_ + k, t_.size() - 1)]; }
  void advance() {
    if (i_ + 1 < t_.size()) ++i_;
  }
  bool is_op(const char* op) const { return cur().kind == TokenKind::kOp && cur().text == op; }
  bool is_name(const char* name) const { return cur().kind == TokenKind::kName && cur().text == name; }
  bool accept_op(const char* op) {
    if (!is_op(op)) return false;
    advance();
    return true;
  }
  bool accept_name(const char* name) {
    if (!is_name(name)) return false;
    advance();
    return true;
  }
  static std::string describe(const Token& t) {
    switch (t.kind) {
      case TokenKind::kText: return "template text";
      case TokenKind::kVarBegin: return "'{{'";
      case TokenKind::kVarEnd: return "'}}'";
      case TokenKind::kBlockBegin: return "'{%'";
      case TokenKind::kBlockEnd: return "'%}'";
      case TokenKind::kName: return "'" + t.text + "'";
      case TokenKind::kString: return "string literal";
      case TokenKind::kInt:
      case TokenKind::kFloat: return "number " + t.text;
      case TokenKind::kOp: return "'" + t.text + "'";
      case TokenKind::kEof: return "end of template";
    }
    return "?";
  }
  Error unexpected(const std::string& expected) const {
    return template_error(ErrorCode::kBadFile, cur().pos, "expected " + expected + ", got " + describe(cur()));
  }
  Status expect_op(const char* op) {
    if (!accept_op(op)) return unexpected(std::string("'") + op + "'");
    return ok_status();
  }
  Status expect_block_end() {
    if (cur().kind != TokenKind::kBlockEnd) return unexpected("'%}'");
    advance();
    return ok_status();
  }
  Result<std::string> expect_name(const char* what) {
    if (cur().kind != TokenKind::kName) return unexpected(what);
    std::string n = cur().text;
    advance();
    return n;
  }

  // Depth guard: every recursive parse step holds one.
  struct DepthGuard {
    Parser* p;
    explicit DepthGuard(Parser* parser) : p(parser) { ++p->depth_; }
    ~DepthGuard() { --p->depth_; }
  };
  Status check_depth() const {
    if (depth_ > limits_.max_nesting) {
      return template_error(ErrorCode::kResourceExhausted, cur().pos,
                            "template nested deeper than " + std::to_string(limits_.max_nesting) + " levels");
    }
    return ok_status();
  }

  static ExprPtr make(ExprKind kind, Pos pos) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->pos = pos;
    return e;
  }

  // ---- statements ----

  // Parses nodes until `{% <one of ends> ...`; leaves the cursor after the end keyword.
  Status parse_body(std::initializer_list<const char*> ends, Body* body, std::string* end_found) {
    DepthGuard guard(this);
    MYRIAD_TRY(check_depth());
    Pos start = cur().pos;
    while (true) {
      const Token& tok = cur();
      switch (tok.kind) {
        case TokenKind::kEof: {
          if (ends.size() == 0) return ok_status();
          std::string names;
          for (const char* e : ends) names += std::string(names.empty() ? "" : " or ") + "'" + e + "'";
          return template_error(ErrorCode::kBadFile, start,
                                "unexpected end of template: block opened here was never closed (expected " + names + ")");
        }
        case TokenKind::kText: {
          Node n;
          n.kind = NodeKind::kText;
          n.pos = tok.pos;
          n.text = tok.text;
          body->push_back(std::move(n));
          advance();
          break;
        }
        case TokenKind::kVarBegin: {
          Node n;
          n.kind = NodeKind::kOutput;
          n.pos = tok.pos;
          advance();
          JINJA_ASSIGN_OR_RETURN(n.expr, parse_expression());
          if (cur().kind != TokenKind::kVarEnd) return unexpected("'}}'");
          advance();
          body->push_back(std::move(n));
          break;
        }
        case TokenKind::kBlockBegin: {
          advance();
          if (cur().kind != TokenKind::kName) return unexpected("a tag name");
          std::string kw = cur().text;
          for (const char* e : ends) {
            if (kw == e) {
              advance();
              *end_found = kw;
              return ok_status();
            }
          }
          MYRIAD_TRY(parse_statement(body));
          break;
        }
        default:
          return unexpected("text, '{{' or '{%'");
      }
    }
  }

  Status parse_statement(Body* body) {
    const Token& kw = cur();
    Pos pos = kw.pos;
    std::string name = kw.text;
    advance();
    Node n;
    n.pos = pos;
    if (name == "if") {
      n.kind = NodeKind::kIf;
      std::string end = "elif";
      while (end == "elif") {
        ExprPtr cond;
        JINJA_ASSIGN_OR_RETURN(cond, parse_expression());
        MYRIAD_TRY(expect_block_end());
        Body b;
        MYRIAD_TRY(parse_body({"elif", "else", "endif"}, &b, &end));
        n.branches.emplace_back(std::move(cond), std::move(b));
      }
      if (end == "else") {
        MYRIAD_TRY(expect_block_end());
        MYRIAD_TRY(parse_body({"endif"}, &n.else_body, &end));
      }
      MYRIAD_TRY(expect_block_end());
    } else if (name == "for") {
      n.kind = NodeKind::kFor;
      MYRIAD_TRY(parse_targets(&n.targets));
      if (!accept_name("in")) return unexpected("'in'");
      JINJA_ASSIGN_OR_RETURN(n.expr, parse_or());
      if (accept_name("if")) {
        JINJA_ASSIGN_OR_RETURN(n.cond, parse_expression());
      }
      if (is_name("recursive")) {
        return template_error(ErrorCode::kUnsupported, cur().pos, "recursive for loops are not supported");
      }
      MYRIAD_TRY(expect_block_end());
      ++loop_depth_;
      std::string end;
      MYRIAD_TRY(parse_body({"else", "endfor"}, &n.body, &end));
      --loop_depth_;
      if (end == "else") {
        MYRIAD_TRY(expect_block_end());
        MYRIAD_TRY(parse_body({"endfor"}, &n.else_body, &end));
      }
      MYRIAD_TRY(expect_block_end());
    } else if (name == "set") {
      std::string first;
      JINJA_ASSIGN_OR_RETURN(first, expect_name("a variable name"));
      if (accept_op(".")) {  // {% set ns.attr = value %}
        n.kind = NodeKind::kSet;
        n.targets.push_back(first);
        JINJA_ASSIGN_OR_RETURN(n.text, expect_name("an attribute name"));
        MYRIAD_TRY(expect_op("="));
        JINJA_ASSIGN_OR_RETURN(n.expr, parse_tuple_or_expression());
        MYRIAD_TRY(expect_block_end());
      } else {
        n.targets.push_back(first);
        while (accept_op(",")) {
          std::string t;
          JINJA_ASSIGN_OR_RETURN(t, expect_name("a variable name"));
          n.targets.push_back(t);
        }
        if (accept_op("=")) {
          n.kind = NodeKind::kSet;
          JINJA_ASSIGN_OR_RETURN(n.expr, parse_tuple_or_expression());
          MYRIAD_TRY(expect_block_end());
        } else {
          if (n.targets.size() != 1) return unexpected("'='");
          n.kind = NodeKind::kSetBlock;
          MYRIAD_TRY(expect_block_end());
          std::string end;
          MYRIAD_TRY(parse_body({"endset"}, &n.body, &end));
          MYRIAD_TRY(expect_block_end());
        }
      }
    } else if (name == "macro") {
      n.kind = NodeKind::kMacro;
      JINJA_ASSIGN_OR_RETURN(n.text, expect_name("a macro name"));
      MYRIAD_TRY(expect_op("("));
      while (!is_op(")")) {
        MacroParam p;
        JINJA_ASSIGN_OR_RETURN(p.name, expect_name("a parameter name"));
        if (accept_op("=")) {
          JINJA_ASSIGN_OR_RETURN(p.default_value, parse_expression());
        }
        n.params.push_back(std::move(p));
        if (!accept_op(",")) break;
      }
      MYRIAD_TRY(expect_op(")"));
      MYRIAD_TRY(expect_block_end());
      int saved_loop_depth = loop_depth_;
      loop_depth_ = 0;
      std::string end;
      MYRIAD_TRY(parse_body({"endmacro"}, &n.body, &end));
      loop_depth_ = saved_loop_depth;
      if (cur().kind == TokenKind::kName && cur().text == n.text) advance();  // {% endmacro name %}
      MYRIAD_TRY(expect_block_end());
    } else if (name == "filter") {
      n.kind = NodeKind::kFilterBlock;
      auto placeholder = make(ExprKind::kLiteral, pos);
      JINJA_ASSIGN_OR_RETURN(n.expr, parse_filter(std::move(placeholder)));
      MYRIAD_TRY(expect_block_end());
      std::string end;
      MYRIAD_TRY(parse_body({"endfilter"}, &n.body, &end));
      MYRIAD_TRY(expect_block_end());
    } else if (name == "with" || name == "generation") {
      n.kind = NodeKind::kScope;
      if (name == "with") {
        while (cur().kind == TokenKind::kName) {
          std::string var = cur().text;
          advance();
          MYRIAD_TRY(expect_op("="));
          ExprPtr value;
          JINJA_ASSIGN_OR_RETURN(value, parse_expression());
          n.bindings.emplace_back(std::move(var), std::move(value));
          if (!accept_op(",")) break;
        }
      }
      MYRIAD_TRY(expect_block_end());
      std::string end;
      if (name == "with") {
        MYRIAD_TRY(parse_body({"endwith"}, &n.body, &end));
      } else {
        MYRIAD_TRY(parse_body({"endgeneration"}, &n.body, &end));
      }
      MYRIAD_TRY(expect_block_end());
    } else if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) {
        return template_error(ErrorCode::kBadFile, pos, "'" + name + "' outside of a for loop");
      }
      n.kind = name == "break" ? NodeKind::kBreak : NodeKind::kContinue;
      MYRIAD_TRY(expect_block_end());
    } else if (name == "extends" || name == "include" || name == "import" || name == "from" || name == "block" ||
               name == "call" || name == "do" || name == "autoescape") {
      return template_error(ErrorCode::kUnsupported, pos, "the '" + name + "' tag is not supported in chat templates");
    } else {
      return template_error(ErrorCode::kBadFile, pos, "unknown or misplaced tag '" + name + "'");
    }
    body->push_back(std::move(n));
    return ok_status();
  }

  Status parse_targets(std::vector<std::string>* targets) {
    bool paren = accept_op("(");
    do {
      std::string t;
      JINJA_ASSIGN_OR_RETURN(t, expect_name("a loop variable name"));
      targets->push_back(t);
    } while (accept_op(","));
    if (paren) MYRIAD_TRY(expect_op(")"));
    return ok_status();
  }

  // ---- expressions ----

  // `a, b` without parentheses makes a tuple (set statements).
  Result<ExprPtr> parse_tuple_or_expression() {
    Pos pos = cur().pos;
    ExprPtr first;
    JINJA_ASSIGN_OR_RETURN(first, parse_expression());
    if (!is_op(",")) return first;
    auto tuple = make(ExprKind::kTuple, pos);
    tuple->args.push_back(std::move(first));
    while (accept_op(",")) {
      ExprPtr e;
      JINJA_ASSIGN_OR_RETURN(e, parse_expression());
      tuple->args.push_back(std::move(e));
    }
    return tuple;
  }

  Result<ExprPtr> parse_expression() {
    DepthGuard guard(this);
    MYRIAD_TRY(check_depth());
    ExprPtr e;
    JINJA_ASSIGN_OR_RETURN(e, parse_or());
    while (is_name("if")) {
      Pos pos = cur().pos;
      advance();
      auto cond = make(ExprKind::kCond, pos);
      ExprPtr test;
      JINJA_ASSIGN_OR_RETURN(test, parse_or());
      ExprPtr otherwise;
      if (accept_name("else")) {
        JINJA_ASSIGN_OR_RETURN(otherwise, parse_expression());
      }
      cond->args.push_back(std::move(test));
      cond->args.push_back(std::move(e));
      cond->args.push_back(std::move(otherwise));
      e = std::move(cond);
    }
    return e;
  }

  Result<ExprPtr> binary(ExprPtr left, const std::string& op, Pos pos, ExprPtr right) {
    auto b = make(ExprKind::kBinary, pos);
    b->name = op;
    b->args.push_back(std::move(left));
    b->args.push_back(std::move(right));
    return b;
  }

  Result<ExprPtr> parse_or() {
    ExprPtr e;
    JINJA_ASSIGN_OR_RETURN(e, parse_and());
    while (is_name("or")) {
      Pos pos = cur().pos;
      advance();
      ExprPtr r;
      JINJA_ASSIGN_OR_RETURN(r, parse_and());
      JINJA_ASSIGN_OR_RETURN(e, binary(std::move(e), "or", pos, std::move(r)));
    }
    return e;
  }

  Result<ExprPtr> parse_and() {
    ExprPtr e;
    JINJA_ASSIGN_OR_RETURN(e, parse_not());
    while (is_name("and")) {
      Pos pos = cur().pos;
      advance();
      ExprPtr r;
      JINJA_ASSIGN_OR_RETURN(r, parse_not());
      JINJA_ASSIGN_OR_RETURN(e, binary(std::move(e), "and", pos, std::move(r)));
    }
    return e;
  }

  Result<ExprPtr> parse_not() {
    if (is_name("not")) {
      DepthGuard guard(this);
      MYRIAD_TRY(check_depth());
      auto u = make(ExprKind::kUnary, cur().pos);
      advance();
      u->name = "not";
      ExprPtr operand;
      JINJA_ASSIGN_OR_RETURN(operand, parse_not());
      u->args.push_back(std::move(operand));
      return u;
    }
    return parse_compare();
  }

  Result<ExprPtr> parse_compare() {
    Pos pos = cur().pos;
    ExprPtr first;
    JINJA_ASSIGN_OR_RETURN(first, parse_math1());
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (cur().kind == TokenKind::kOp &&
          (cur().text == "==" || cur().text == "!=" || cur().text == "<" || cur().text == ">" ||
           cur().text == "<=" || cur().text == ">=")) {
        op = cur().text;
        advance();
      } else if (is_name("in")) {
        op = "in";
        advance();
      } else if (is_name("not") && peek().kind == TokenKind::kName && peek().text == "in") {
        op = "notin";
        advance();
        advance();
      } else {
        break;
      }
      if (!cmp) {
        cmp = make(ExprKind::kCompare, pos);
        cmp->args.push_back(std::move(first));
      }
      ExprPtr rhs;
      JINJA_ASSIGN_OR_RETURN(rhs, parse_math1());
      cmp->ops.push_back(op);
      cmp->args.push_back(std::move(rhs));
    }
    if (cmp) return cmp;
    return first;
  }

  template <class Next>
  Result<ExprPtr> left_assoc(std::initializer_list<const char*> ops, Next next) {
    ExprPtr e;
    JINJA_ASSIGN_OR_RETURN(e, (this->*next)());
    while (true) {
      const char* matched = nullptr;
      for (const char* op : ops) {
        if (is_op(op)) matched = op;
      }
      if (matched == nullptr) return e;
      Pos pos = cur().pos;
      advance();
      ExprPtr r;
      JINJA_ASSIGN_OR_RETURN(r, (this->*next)());
      JINJA_ASSIGN_OR_RETURN(e, binary(std::move(e), matched, pos, std::move(r)));
    }
  }

  Result<ExprPtr> parse_math1() { return left_assoc({"+", "-"}, &Parser::parse_concat); }
  Result<ExprPtr> parse_concat() { return left_assoc({"~"}, &Parser::parse_math2); }
  Result<ExprPtr> parse_math2() { return left_assoc({"*", "/", "//", "%"}, &Parser::parse_pow); }
  Result<ExprPtr> parse_pow() { return left_assoc({"**"}, &Parser::parse_unary_filtered); }
  Result<ExprPtr> parse_unary_filtered() { return parse_unary(true); }

  Result<ExprPtr> parse_unary(bool with_filter) {
    DepthGuard guard(this);
    MYRIAD_TRY(check_depth());
    ExprPtr node;
    if (is_op("-") || is_op("+")) {
      auto u = make(ExprKind::kUnary, cur().pos);
      u->name = cur().text;
      advance();
      ExprPtr operand;
      JINJA_ASSIGN_OR_RETURN(operand, parse_unary(false));
      u->args.push_back(std::move(operand));
      node = std::move(u);
    } else {
      JINJA_ASSIGN_OR_RETURN(node, parse_primary());
    }
    JINJA_ASSIGN_OR_RETURN(node, parse_postfix(std::move(node)));
    if (with_filter) {
      JINJA_ASSIGN_OR_RETURN(node, parse_filter_expr(std::move(node)));
    }
    return node;
  }

  Result<ExprPtr> parse_primary() {
    const Token& tok = cur();
    Pos pos = tok.pos;
    switch (tok.kind) {
      case TokenKind::kName: {
        auto e = make(ExprKind::kLiteral, pos);
        const std::string& n = tok.text;
        if (n == "true" || n == "True") e->literal = Value(true);
        else if (n == "false" || n == "False") e->literal = Value(false);
        else if (n == "none" || n == "None") e->literal = Value::none();
        else {
          e->kind = ExprKind::kName;
          e->name = n;
        }
        advance();
        return e;
      }
      case TokenKind::kString: {
        std::string s = tok.text;
        advance();
        while (cur().kind == TokenKind::kString) {  // 'a' 'b' == 'ab'
          s += cur().text;
          advance();
        }
        auto e = make(ExprKind::kLiteral, pos);
        e->literal = Value(std::move(s));
        return e;
      }
      case TokenKind::kInt: {
        auto e = make(ExprKind::kLiteral, pos);
        e->literal = Value(tok.int_value);
        advance();
        return e;
      }
      case TokenKind::kFloat: {
        auto e = make(ExprKind::kLiteral, pos);
        e->literal = Value(tok.float_value);
        advance();
        return e;
      }
      case TokenKind::kOp:
        if (tok.text == "(") {
          advance();
          if (accept_op(")")) return make(ExprKind::kTuple, pos);
          ExprPtr e;
          JINJA_ASSIGN_OR_RETURN(e, parse_expression());
          if (is_op(",")) {
            auto tuple = make(ExprKind::kTuple, pos);
            tuple->args.push_back(std::move(e));
            while (accept_op(",")) {
              if (is_op(")")) break;
              ExprPtr item;
              JINJA_ASSIGN_OR_RETURN(item, parse_expression());
              tuple->args.push_back(std::move(item));
            }
            e = std::move(tuple);
          }
          MYRIAD_TRY(expect_op(")"));
          return e;
        }
        if (tok.text == "[") {
          advance();
          auto list = make(ExprKind::kList, pos);
          while (!is_op("]")) {
            ExprPtr item;
            JINJA_ASSIGN_OR_RETURN(item, parse_expression());
            list->args.push_back(std::move(item));
            if (!accept_op(",")) break;
          }
          MYRIAD_TRY(expect_op("]"));
          return list;
        }
        if (tok.text == "{") {
          advance();
          auto dict = make(ExprKind::kDict, pos);
          while (!is_op("}")) {
            ExprPtr key, value;
            JINJA_ASSIGN_OR_RETURN(key, parse_expression());
            MYRIAD_TRY(expect_op(":"));
            JINJA_ASSIGN_OR_RETURN(value, parse_expression());
            dict->args.push_back(std::move(key));
            dict->args.push_back(std::move(value));
            if (!accept_op(",")) break;
          }
          MYRIAD_TRY(expect_op("}"));
          return dict;
        }
        break;
      default:
        break;
    }
    return unexpected("an expression");
  }

  Status parse_call_args(Expr* call) {
    // cursor is after '('
    while (!is_op(")")) {
      if (is_op("*") || is_op("**")) {
        return template_error(ErrorCode::kUnsupported, cur().pos, "*args / **kwargs in calls are not supported");
      }
      if (cur().kind == TokenKind::kName && peek().kind == TokenKind::kOp && peek().text == "=") {
        std::string key = cur().text;
        advance();
        advance();
        ExprPtr value;
        JINJA_ASSIGN_OR_RETURN(value, parse_expression());
        call->kwargs.emplace_back(std::move(key), std::move(value));
      } else {
        if (!call->kwargs.empty()) return unexpected("a keyword argument (positional after keyword)");
        ExprPtr value;
        JINJA_ASSIGN_OR_RETURN(value, parse_expression());
        call->args.push_back(std::move(value));
      }
      if (!accept_op(",")) break;
    }
    return expect_op(")");
  }

  Result<ExprPtr> parse_postfix(ExprPtr node) {
    while (true) {
      Pos pos = cur().pos;
      if (accept_op(".")) {
        if (cur().kind == TokenKind::kName) {
          auto e = make(ExprKind::kGetAttr, pos);
          e->name = cur().text;
          advance();
          e->args.push_back(std::move(node));
          node = std::move(e);
        } else if (cur().kind == TokenKind::kInt) {  // x.0 == x[0]
          auto e = make(ExprKind::kGetItem, pos);
          auto idx = make(ExprKind::kLiteral, cur().pos);
          idx->literal = Value(cur().int_value);
          advance();
          e->args.push_back(std::move(node));
          e->args.push_back(std::move(idx));
          node = std::move(e);
        } else {
          return unexpected("an attribute name");
        }
      } else if (accept_op("[")) {
        JINJA_ASSIGN_OR_RETURN(node, parse_subscript(std::move(node), pos));
      } else if (accept_op("(")) {
        auto call = make(ExprKind::kCall, pos);
        call->args.push_back(std::move(node));
        MYRIAD_TRY(parse_call_args(call.get()));
        node = std::move(call);
      } else {
        return node;
      }
    }
  }

  Result<ExprPtr> parse_subscript(ExprPtr node, Pos pos) {
    // cursor after '['
    ExprPtr parts[3];
    int colons = 0;
    for (int k = 0; k < 3; ++k) {
      if (!is_op(":") && !is_op("]")) {
        JINJA_ASSIGN_OR_RETURN(parts[k], parse_expression());
      }
      if (k < 2 && accept_op(":")) {
        ++colons;
        continue;
      }
      break;
    }
    MYRIAD_TRY(expect_op("]"));
    if (colons == 0) {
      if (!parts[0]) return template_error(ErrorCode::kBadFile, pos, "empty subscript");
      auto e = make(ExprKind::kGetItem, pos);
      e->args.push_back(std::move(node));
      e->args.push_back(std::move(parts[0]));
      return e;
    }
    auto e = make(ExprKind::kSlice, pos);
    e->args.push_back(std::move(node));
    for (auto& p : parts) e->args.push_back(std::move(p));
    return e;
  }

  Result<ExprPtr> parse_filter(ExprPtr node) {
    // cursor at the filter name
    Pos pos = cur().pos;
    std::string name;
    JINJA_ASSIGN_OR_RETURN(name, expect_name("a filter name"));
    while (is_op(".") && peek().kind == TokenKind::kName) {  // dotted filter names
      advance();
      name += "." + cur().text;
      advance();
    }
    // Like Jinja, an unknown filter is a compile error even in a branch never taken.
    if (!is_filter_name(name)) return template_error(ErrorCode::kUnsupported, pos, "no filter named '" + name + "'");
    auto f = make(ExprKind::kFilter, pos);
    f->name = name;
    f->args.push_back(std::move(node));
    if (accept_op("(")) MYRIAD_TRY(parse_call_args(f.get()));
    return f;
  }

  Result<ExprPtr> parse_filter_expr(ExprPtr node) {
    while (true) {
      Pos pos = cur().pos;
      if (accept_op("|")) {
        JINJA_ASSIGN_OR_RETURN(node, parse_filter(std::move(node)));
      } else if (is_name("is")) {
        advance();
        auto t = make(ExprKind::kTest, pos);
        t->negated = accept_name("not");
        Pos name_pos = cur().pos;
        JINJA_ASSIGN_OR_RETURN(t->name, expect_name("a test name"));
        if (!is_test_name(t->name)) {
          return template_error(ErrorCode::kUnsupported, name_pos, "no test named '" + t->name + "'");
        }
        t->args.push_back(std::move(node));
        if (accept_op("(")) {
          MYRIAD_TRY(parse_call_args(t.get()));
        } else if ((cur().kind == TokenKind::kName || cur().kind == TokenKind::kString ||
                    cur().kind == TokenKind::kInt || cur().kind == TokenKind::kFloat || is_op("(") ||
                    is_op("[") || is_op("{")) &&
                   !(is_name("else") || is_name("or") || is_name("and"))) {
          if (is_name("is")) return unexpected("a test argument");
          ExprPtr arg;
          JINJA_ASSIGN_OR_RETURN(arg, parse_primary());
          JINJA_ASSIGN_OR_RETURN(arg, parse_postfix(std::move(arg)));
          t->args.push_back(std::move(arg));
        }
        node = std::move(t);
      } else if (accept_op("(")) {
        auto call = make(ExprKind::kCall, pos);
        call->args.push_back(std::move(node));
        MYRIAD_TRY(parse_call_args(call.get()));
        node = std::move(call);
      } else {
        return node;
      }
    }
  }

  std::vector<Token> t_;
  std::size_t i_ = 0;
  const ChatTemplateLimits& limits_;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

Result<std::unique_ptr<Program>> parse_template(std::string_view source, const ChatTemplateLimits& limits) {
  std::vector<Token> tokens;
  JINJA_ASSIGN_OR_RETURN(tokens, tokenize(source));
  Parser parser(std::move(tokens), limits);
  auto program = std::make_unique<Program>();
  JINJA_ASSIGN_OR_RETURN(program->body, parser.parse_all());
  program->limits = limits;
  return program;
}

}  // namespace myriad::jinja
