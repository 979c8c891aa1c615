#include "runtime/jinja/evaluator.h"

#include "runtime/jinja/lexer.h"
#include "runtime/jinja/text.h"

namespace myriad::jinja {

// ---- Frame ----

const Value* Frame::lookup(std::string_view name) const {
  for (const Frame* f = this; f != nullptr; f = f->parent.get()) {
    for (auto it = f->vars.rbegin(); it != f->vars.rend(); ++it) {
      if (it->first == name) return &it->second;
    }
  }
  return nullptr;
}

void Frame::set(const std::string& name, Value value) {
  for (auto& [k, v] : vars) {
    if (k == name) {
      v = std::move(value);
      return;
    }
  }
  vars.emplace_back(name, std::move(value));
}

// ---- CallArgs ----

Status CallArgs::bind(std::string_view what, std::initializer_list<std::string_view> params) {
  params_.assign(params.begin(), params.end());
  if (positional.size() > params_.size()) {
    return type_error(std::string(what) + " takes at most " + std::to_string(params_.size()) + " argument(s), " +
                      std::to_string(positional.size()) + " given");
  }
  bound_.assign(params_.size(), nullptr);
  for (std::size_t i = 0; i < positional.size(); ++i) bound_[i] = &positional[i];
  for (const auto& [key, value] : keyword) {
    std::size_t i = 0;
    while (i < params_.size() && params_[i] != key) ++i;
    if (i == params_.size()) return type_error(std::string(what) + " got an unexpected keyword argument '" + key + "'");
    if (bound_[i] != nullptr) return type_error(std::string(what) + " got multiple values for argument '" + key + "'");
    bound_[i] = &value;
  }
  return ok_status();
}

const Value& CallArgs::arg(std::size_t i) const {
  static const Value kUndefined;
  if (i >= bound_.size() || bound_[i] == nullptr) return kUndefined;
  return *bound_[i];
}

// ---- Renderer ----

namespace {

Error at(Pos pos, const Error& e) {
  if (e.message.rfind("chat template line ", 0) == 0) return e;  // already placed
  return template_error(e.code, pos, e.message);
}

}  // namespace

FramePtr Renderer::new_frame(const FramePtr& parent) {
  auto f = std::make_shared<Frame>();
  f->parent = parent;
  return f;
}

Status Renderer::count_iterations(std::uint64_t n) {
  iterations_ += n;
  if (iterations_ > program_.limits.max_loop_iterations) {
    return make_error(ErrorCode::kResourceExhausted,
                      "more than " + std::to_string(program_.limits.max_loop_iterations) + " loop iterations");
  }
  return ok_status();
}

Status Renderer::count_bytes(std::size_t bytes) {
  if (bytes > program_.limits.max_output_bytes) {
    return make_error(ErrorCode::kResourceExhausted,
                      "string of " + std::to_string(bytes) + " bytes exceeds the output limit of " +
                          std::to_string(program_.limits.max_output_bytes));
  }
  bytes_built_ += bytes;
  // Quadratic string building (x = x + x in a loop) is bounded too.
  if (bytes_built_ > 16 * static_cast<std::uint64_t>(program_.limits.max_output_bytes)) {
    return make_error(ErrorCode::kResourceExhausted, "template built more than 16x the output limit in strings");
  }
  return ok_status();
}

Status Renderer::check_depth(const Value& v) const {
  if (v.depth() > kMaxValueDepth) {
    return make_error(ErrorCode::kResourceExhausted,
                      "value nested deeper than " + std::to_string(kMaxValueDepth) + " levels");
  }
  if (v.nodes() > kMaxValueNodes) {
    return make_error(ErrorCode::kResourceExhausted,
                      "value of more than " + std::to_string(kMaxValueNodes) + " items (counting shared ones)");
  }
  return ok_status();
}

Result<std::string> Renderer::render(const nlohmann::json& context) { return render_json(context); }
Result<std::string> Renderer::render(const nlohmann::ordered_json& context) { return render_json(context); }

template <class Json>
Result<std::string> Renderer::render_json(const Json& context) {
  if (!context.is_object()) {
    return make_error(ErrorCode::kInvalidArgument, "chat template context must be a JSON object");
  }
  root_ = std::make_shared<Frame>();
  bool too_deep = false;
  for (auto it = context.begin(); it != context.end(); ++it) {
    root_->set(it.key(), Value::from_json(it.value(), &too_deep));
  }
  if (too_deep) {
    return make_error(ErrorCode::kInvalidArgument, "chat template context nested deeper than " +
                                                       std::to_string(Value::kMaxJsonDepth) + " levels");
  }
  std::string out;
  auto flow = exec(program_.body, root_, out);
  root_.reset();
  // The tracker holds every namespace, so clearing one never frees another
  // from inside its destructor: no recursion, whatever they point to.
  for (auto& ns : namespaces_) ns->items.clear();
  namespaces_.clear();
  if (!flow.ok()) return flow.error();
  return out;
}

Result<Flow> Renderer::exec(const Body& body, const FramePtr& frame, std::string& out) {
  for (const Node& node : body) {
    Flow flow;
    JINJA_ASSIGN_OR_RETURN(flow, exec_node(node, frame, out));
    if (flow != Flow::kNormal) return flow;
  }
  return Flow::kNormal;
}

Result<Flow> Renderer::exec_node(const Node& node, const FramePtr& frame, std::string& out) {
  switch (node.kind) {
    case NodeKind::kText:
      out += node.text;
      break;
    case NodeKind::kOutput: {
      Value v;
      JINJA_ASSIGN_OR_RETURN(v, eval(*node.expr, frame));
      if (v.is_string()) out += v.as_string();
      else out += v.to_output(program_.limits.max_output_bytes);
      break;
    }
    case NodeKind::kIf: {
      for (const auto& [cond, body] : node.branches) {
        Value c;
        JINJA_ASSIGN_OR_RETURN(c, eval(*cond, frame));
        if (c.truthy()) return exec(body, frame, out);
      }
      return exec(node.else_body, frame, out);
    }
    case NodeKind::kFor:
      return exec_for(node, frame, out);
    case NodeKind::kSet:
      MYRIAD_TRY(exec_set(node, frame));
      break;
    case NodeKind::kSetBlock: {
      std::string captured;
      Flow f;
      JINJA_ASSIGN_OR_RETURN(f, exec(node.body, new_frame(frame), captured));
      (void)f;
      frame->set(node.targets[0], Value(std::move(captured)));
      break;
    }
    case NodeKind::kMacro: {
      auto def = std::make_shared<MacroDef>();
      def->node = &node;
      def->closure = frame;
      Callable c;
      c.kind = Callable::Kind::kMacro;
      c.name = node.text;
      c.macro = std::move(def);
      frame->set(node.text, Value(std::move(c)));
      break;
    }
    case NodeKind::kFilterBlock: {
      std::string captured;
      Flow f;
      JINJA_ASSIGN_OR_RETURN(f, exec(node.body, new_frame(frame), captured));
      (void)f;
      CallArgs args;
      MYRIAD_TRY(eval_args(*node.expr, 1, frame, &args));
      auto r = apply_filter(*this, node.expr->name, Value(std::move(captured)), args);
      if (!r.ok()) return at(node.expr->pos, r.error());
      out += r.value().to_output();
      break;
    }
    case NodeKind::kScope: {
      FramePtr inner = new_frame(frame);
      for (const auto& [name, expr] : node.bindings) {
        Value v;
        JINJA_ASSIGN_OR_RETURN(v, eval(*expr, frame));
        inner->set(name, std::move(v));
      }
      return exec(node.body, inner, out);
    }
    case NodeKind::kBreak:
      return Flow::kBreak;
    case NodeKind::kContinue:
      return Flow::kContinue;
  }
  if (out.size() > program_.limits.max_output_bytes) {
    return template_error(ErrorCode::kResourceExhausted, node.pos,
                          "rendered text exceeds " + std::to_string(program_.limits.max_output_bytes) + " bytes");
  }
  return Flow::kNormal;
}

namespace {

Status bind_targets(const std::vector<std::string>& targets, const Value& v, Frame* frame) {
  if (targets.size() == 1) {
    frame->set(targets[0], v);
    return ok_status();
  }
  if (!v.is_array()) {
    return type_error(std::string("cannot unpack '") + v.type_name() + "' into " + std::to_string(targets.size()) +
                      " variables");
  }
  const Array& a = v.as_array();
  if (a.size() != targets.size()) {
    return type_error("cannot unpack " + std::to_string(a.size()) + " values into " + std::to_string(targets.size()) +
                      " variables");
  }
  for (std::size_t i = 0; i < a.size(); ++i) frame->set(targets[i], a[i]);
  return ok_status();
}

}  // namespace

Result<Flow> Renderer::exec_for(const Node& node, const FramePtr& frame, std::string& out) {
  Value iterable;
  JINJA_ASSIGN_OR_RETURN(iterable, eval(*node.expr, frame));
  if (iterable.is_none() || iterable.is_number()) {
    return template_error(ErrorCode::kInvalidArgument, node.expr->pos,
                          std::string("'") + iterable.type_name() + "' object is not iterable");
  }
  auto items_r = iterate(iterable);
  if (!items_r.ok()) return at(node.expr->pos, items_r.error());
  Array items = std::move(items_r).value();
  if (node.cond) {  // `for x in xs if cond`: filter first, so loop.length counts kept items
    Array kept;
    for (const Value& item : items) {
      auto c = count_iterations(1);
      if (!c.ok()) return at(node.pos, c.error());
      FramePtr probe = new_frame(frame);
      auto b = bind_targets(node.targets, item, probe.get());
      if (!b.ok()) return at(node.pos, b.error());
      Value keep;
      JINJA_ASSIGN_OR_RETURN(keep, eval(*node.cond, probe));
      if (keep.truthy()) kept.push_back(item);
    }
    items = std::move(kept);
  }
  if (items.empty()) {
    Flow f;
    JINJA_ASSIGN_OR_RETURN(f, exec(node.else_body, new_frame(frame), out));
    (void)f;
    return Flow::kNormal;
  }
  const auto n = static_cast<std::int64_t>(items.size());
  const std::int64_t depth = 1;  // depth only grows in recursive loops, which are not supported
  for (std::int64_t i = 0; i < n; ++i) {
    auto c = count_iterations(1);
    if (!c.ok()) return at(node.pos, c.error());
    FramePtr inner = new_frame(frame);
    const Value& item = items[static_cast<std::size_t>(i)];
    auto b = bind_targets(node.targets, item, inner.get());
    if (!b.ok()) return at(node.pos, b.error());
    Object loop;
    loop.items.reserve(11);
    loop.items.emplace_back("index", Value(i + 1));
    loop.items.emplace_back("index0", Value(i));
    loop.items.emplace_back("revindex", Value(n - i));
    loop.items.emplace_back("revindex0", Value(n - i - 1));
    loop.items.emplace_back("first", Value(i == 0));
    loop.items.emplace_back("last", Value(i == n - 1));
    loop.items.emplace_back("length", Value(n));
    loop.items.emplace_back("depth", Value(depth));
    loop.items.emplace_back("depth0", Value(depth - 1));
    if (i > 0) loop.items.emplace_back("previtem", items[static_cast<std::size_t>(i - 1)]);
    if (i + 1 < n) loop.items.emplace_back("nextitem", items[static_cast<std::size_t>(i + 1)]);
    inner->set("loop", Value(std::move(loop)));
    Flow f;
    JINJA_ASSIGN_OR_RETURN(f, exec(node.body, inner, out));
    if (f == Flow::kBreak) break;
  }
  return Flow::kNormal;
}

Status Renderer::exec_set(const Node& node, const FramePtr& frame) {
  Value v;
  JINJA_ASSIGN_OR_RETURN(v, eval(*node.expr, frame));
  if (auto d = check_depth(v); !d.ok()) return at(node.pos, d.error());
  if (!node.text.empty()) {  // {% set ns.attr = v %}
    const Value* target = frame->lookup(node.targets[0]);
    if (target == nullptr || !target->is_namespace()) {
      return template_error(ErrorCode::kInvalidArgument, node.pos,
                            "cannot assign attribute on non-namespace object '" + node.targets[0] + "'");
    }
    target->as_namespace().attrs->set(node.text, std::move(v));
    return ok_status();
  }
  auto b = bind_targets(node.targets, v, frame.get());
  if (!b.ok()) return at(node.pos, b.error());
  return ok_status();
}

// ---- expressions ----

Result<Value> Renderer::eval(const Expr& e, const FramePtr& frame) {
  auto r = eval_inner(e, frame);
  if (!r.ok()) return at(e.pos, r.error());
  return r;
}

Status Renderer::eval_args(const Expr& e, std::size_t first, const FramePtr& frame, CallArgs* args) {
  for (std::size_t i = first; i < e.args.size(); ++i) {
    Value v;
    JINJA_ASSIGN_OR_RETURN(v, eval(*e.args[i], frame));
    args->positional.push_back(std::move(v));
  }
  for (const auto& [key, expr] : e.kwargs) {
    Value v;
    JINJA_ASSIGN_OR_RETURN(v, eval(*expr, frame));
    args->keyword.emplace_back(key, std::move(v));
  }
  return ok_status();
}

namespace {

Result<std::int64_t> slice_bound(const Value& v, const char* what) {
  if (v.is_undefined() || v.is_none()) return std::int64_t{0};
  if (v.is_int()) return v.as_int();
  if (v.is_bool()) return static_cast<std::int64_t>(v.as_bool());
  return type_error(std::string("slice ") + what + " must be an integer or None, not '" + v.type_name() + "'");
}

// Python slice index arithmetic (PySlice_AdjustIndices).
template <class Seq>
Seq slice_seq(const Seq& s, const Value& start_v, const Value& stop_v, std::int64_t step, std::int64_t start_i,
              std::int64_t stop_i) {
  const auto n = static_cast<std::int64_t>(s.size());
  std::int64_t start, stop;
  bool has_start = !(start_v.is_undefined() || start_v.is_none());
  bool has_stop = !(stop_v.is_undefined() || stop_v.is_none());
  if (step > 0) {
    start = has_start ? start_i : 0;
    stop = has_stop ? stop_i : n;
    if (start < 0) start = std::max<std::int64_t>(start + n, 0);
    if (start > n) start = n;
    if (stop < 0) stop = std::max<std::int64_t>(stop + n, 0);
    if (stop > n) stop = n;
  } else {
    start = has_start ? start_i : n - 1;
    stop = has_stop ? stop_i : -1 - n;  // "before the beginning"
    if (start < 0) start = std::max<std::int64_t>(start + n, -1);
    if (start >= n) start = n - 1;
    if (has_stop) {
      if (stop < 0) stop = std::max<std::int64_t>(stop + n, -1);
      if (stop >= n) stop = n - 1;
    } else {
      stop = -1;
    }
  }
  Seq out;
  if (step > 0) {
    for (std::int64_t i = start; i < stop; i += step) out.push_back(s[static_cast<std::size_t>(i)]);
  } else {
    for (std::int64_t i = start; i > stop; i += step) out.push_back(s[static_cast<std::size_t>(i)]);
  }
  return out;
}

}  // namespace

Result<Value> Renderer::eval_inner(const Expr& e, const FramePtr& frame) {
  switch (e.kind) {
    case ExprKind::kLiteral:
      return e.literal;
    case ExprKind::kName: {
      if (const Value* v = frame->lookup(e.name)) return *v;
      if (is_global(e.name)) {
        Callable c;
        c.kind = Callable::Kind::kGlobal;
        c.name = e.name;
        return Value(std::move(c));
      }
      return Value::undefined("'" + e.name + "'");
    }
    case ExprKind::kList:
    case ExprKind::kTuple: {
      Array a;
      a.reserve(e.args.size());
      for (const auto& item : e.args) {
        Value v;
        JINJA_ASSIGN_OR_RETURN(v, eval(*item, frame));
        a.push_back(std::move(v));
      }
      return e.kind == ExprKind::kTuple ? Value::tuple(std::move(a)) : Value(std::move(a));
    }
    case ExprKind::kDict: {
      Object o;
      for (std::size_t i = 0; i + 1 < e.args.size(); i += 2) {
        Value k, v;
        JINJA_ASSIGN_OR_RETURN(k, eval(*e.args[i], frame));
        JINJA_ASSIGN_OR_RETURN(v, eval(*e.args[i + 1], frame));
        if (!k.is_string()) {
          return template_error(ErrorCode::kUnsupported, e.args[i]->pos,
                                std::string("dict keys must be strings in chat templates, got '") + k.type_name() + "'");
        }
        o.set(k.as_string(), std::move(v));
      }
      return Value(std::move(o));
    }
    case ExprKind::kGetAttr: {
      Value obj;
      JINJA_ASSIGN_OR_RETURN(obj, eval(*e.args[0], frame));
      if (obj.is_undefined()) return undefined_error(obj);
      return get_attr(obj, e.name);
    }
    case ExprKind::kGetItem: {
      Value obj, key;
      JINJA_ASSIGN_OR_RETURN(obj, eval(*e.args[0], frame));
      if (obj.is_undefined()) return undefined_error(obj);
      JINJA_ASSIGN_OR_RETURN(key, eval(*e.args[1], frame));
      return get_item(obj, key);
    }
    case ExprKind::kSlice: {
      Value obj, bounds[3];
      JINJA_ASSIGN_OR_RETURN(obj, eval(*e.args[0], frame));
      if (obj.is_undefined()) return undefined_error(obj);
      for (int k = 0; k < 3; ++k) {
        if (e.args[static_cast<std::size_t>(k) + 1]) {
          JINJA_ASSIGN_OR_RETURN(bounds[k], eval(*e.args[static_cast<std::size_t>(k) + 1], frame));
        }
      }
      std::int64_t start, stop, step;
      JINJA_ASSIGN_OR_RETURN(start, slice_bound(bounds[0], "start"));
      JINJA_ASSIGN_OR_RETURN(stop, slice_bound(bounds[1], "stop"));
      JINJA_ASSIGN_OR_RETURN(step, slice_bound(bounds[2], "step"));
      if (bounds[2].is_undefined() || bounds[2].is_none()) step = 1;
      if (step == 0) return type_error("slice step cannot be zero");
      if (obj.is_array()) {
        MYRIAD_TRY(count_iterations(obj.as_array().size()));
        return Value(slice_seq(obj.as_array(), bounds[0], bounds[1], step, start, stop));
      }
      if (obj.is_string()) {
        MYRIAD_TRY(count_bytes(obj.as_string().size()));
        if (is_ascii(obj.as_string())) return Value(slice_seq(obj.as_string(), bounds[0], bounds[1], step, start, stop));
        return Value(utf8_encode(slice_seq(utf8_decode(obj.as_string()), bounds[0], bounds[1], step, start, stop)));
      }
      return type_error(std::string("'") + obj.type_name() + "' object is not subscriptable");
    }
    case ExprKind::kCall:
      return eval_call(e, frame);
    case ExprKind::kFilter: {
      Value input;
      JINJA_ASSIGN_OR_RETURN(input, eval(*e.args[0], frame));
      CallArgs args;
      MYRIAD_TRY(eval_args(e, 1, frame, &args));
      return apply_filter(*this, e.name, input, args);
    }
    case ExprKind::kTest: {
      Value input;
      JINJA_ASSIGN_OR_RETURN(input, eval(*e.args[0], frame));
      CallArgs args;
      MYRIAD_TRY(eval_args(e, 1, frame, &args));
      bool r;
      JINJA_ASSIGN_OR_RETURN(r, apply_test(*this, e.name, input, args));
      return Value(r != e.negated);
    }
    case ExprKind::kUnary: {
      Value v;
      JINJA_ASSIGN_OR_RETURN(v, eval(*e.args[0], frame));
      if (e.name == "not") return Value(!v.truthy());
      if (v.is_undefined()) return undefined_error(v);
      if (!v.is_number()) return type_error(std::string("bad operand type for unary ") + e.name + ": '" + v.type_name() + "'");
      if (e.name == "+") return v.is_bool() ? Value(static_cast<std::int64_t>(v.as_bool())) : v;
      if (v.is_float()) return Value(-v.as_float());
      std::int64_t i = v.is_int() ? v.as_int() : static_cast<std::int64_t>(v.as_bool());
      if (i == std::numeric_limits<std::int64_t>::min()) return type_error("integer overflow in unary -");
      return Value(-i);
    }
    case ExprKind::kBinary: {
      Value a;
      JINJA_ASSIGN_OR_RETURN(a, eval(*e.args[0], frame));
      if (e.name == "and") return a.truthy() ? eval(*e.args[1], frame) : Result<Value>(a);
      if (e.name == "or") return a.truthy() ? Result<Value>(a) : eval(*e.args[1], frame);
      Value b;
      JINJA_ASSIGN_OR_RETURN(b, eval(*e.args[1], frame));
      return binary_op(*this, e.name, a, b);
    }
    case ExprKind::kCompare: {
      Value left;
      JINJA_ASSIGN_OR_RETURN(left, eval(*e.args[0], frame));
      for (std::size_t i = 0; i < e.ops.size(); ++i) {
        Value right;
        JINJA_ASSIGN_OR_RETURN(right, eval(*e.args[i + 1], frame));
        const std::string& op = e.ops[i];
        bool ok;
        if (op == "==") ok = values_equal(left, right);
        else if (op == "!=") ok = !values_equal(left, right);
        else if (op == "in" || op == "notin") {
          CallArgs args;
          args.positional.push_back(right);
          JINJA_ASSIGN_OR_RETURN(ok, apply_test(*this, "in", left, args));
          if (op == "notin") ok = !ok;
        } else {
          if (left.is_undefined()) return undefined_error(left);
          if (right.is_undefined()) return undefined_error(right);
          int c;
          JINJA_ASSIGN_OR_RETURN(c, values_compare(left, right));
          ok = op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0;
        }
        if (!ok) return Value(false);
        left = std::move(right);
      }
      return Value(true);
    }
    case ExprKind::kCond: {
      Value c;
      JINJA_ASSIGN_OR_RETURN(c, eval(*e.args[0], frame));
      if (c.truthy()) return eval(*e.args[1], frame);
      if (e.args[2]) return eval(*e.args[2], frame);
      return Value();
    }
  }
  return type_error("unknown expression");
}

Result<Value> Renderer::eval_call(const Expr& e, const FramePtr& frame) {
  const Expr& callee_expr = *e.args[0];
  CallArgs args;
  if (callee_expr.kind == ExprKind::kGetAttr) {  // obj.method(...): no bound-method value needed
    Value obj;
    JINJA_ASSIGN_OR_RETURN(obj, eval(*callee_expr.args[0], frame));
    if (obj.is_undefined()) return undefined_error(obj);
    if (has_method(obj, callee_expr.name)) {
      MYRIAD_TRY(eval_args(e, 1, frame, &args));
      return call_method(*this, obj, callee_expr.name, args);
    }
    Value callee = get_attr(obj, callee_expr.name);
    MYRIAD_TRY(eval_args(e, 1, frame, &args));
    return call(callee, args);
  }
  Value callee;
  JINJA_ASSIGN_OR_RETURN(callee, eval(callee_expr, frame));
  MYRIAD_TRY(eval_args(e, 1, frame, &args));
  return call(callee, args);
}

Result<Value> Renderer::call(const Value& callee, CallArgs& args) {
  if (callee.is_undefined()) return undefined_error(callee);
  if (!callee.is_callable()) return type_error(std::string("'") + callee.type_name() + "' object is not callable");
  const Callable& c = callee.as_callable();
  switch (c.kind) {
    case Callable::Kind::kGlobal: return call_global(*this, c.name, args);
    case Callable::Kind::kBoundMethod: return call_method(*this, *c.self, c.name, args);
    case Callable::Kind::kMacro: return call_macro(*c.macro, args);
  }
  return type_error("not callable");
}

Result<Value> Renderer::call_macro(const MacroDef& macro, CallArgs& args) {
  const Node& node = *macro.node;
  if (call_depth_ >= program_.limits.max_call_depth) {
    return make_error(ErrorCode::kResourceExhausted,
                      "macro '" + node.text + "' nested deeper than " + std::to_string(program_.limits.max_call_depth) +
                          " calls");
  }
  MYRIAD_TRY(count_iterations(1));
  if (args.positional.size() > node.params.size()) {
    return type_error("macro '" + node.text + "' takes not more than " + std::to_string(node.params.size()) +
                      " argument(s)");
  }
  FramePtr closure = macro.closure.lock();
  FramePtr inner = new_frame(closure ? closure : root_);
  std::vector<bool> given(node.params.size(), false);
  for (std::size_t i = 0; i < args.positional.size(); ++i) {
    inner->set(node.params[i].name, args.positional[i]);
    given[i] = true;
  }
  for (const auto& [key, value] : args.keyword) {
    std::size_t i = 0;
    while (i < node.params.size() && node.params[i].name != key) ++i;
    if (i == node.params.size()) return type_error("macro '" + node.text + "' takes no keyword argument '" + key + "'");
    inner->set(key, value);
    given[i] = true;
  }
  ++call_depth_;
  for (std::size_t i = 0; i < node.params.size(); ++i) {
    if (given[i]) continue;
    Value v = Value::undefined("'" + node.params[i].name + "'");
    if (node.params[i].default_value) {
      auto d = eval(*node.params[i].default_value, inner);
      if (!d.ok()) {
        --call_depth_;
        return d.error();
      }
      v = std::move(d).value();
    }
    inner->set(node.params[i].name, std::move(v));
  }
  std::string out;
  auto flow = exec(node.body, inner, out);
  --call_depth_;
  if (!flow.ok()) return flow.error();
  return Value(std::move(out));
}

}  // namespace myriad::jinja
