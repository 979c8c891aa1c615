// jinja evaluator: renders a Program against a JSON context. Variables live in
// a chain of frames: the context is the root frame, every for-loop iteration,
// macro call and {% with %} gets a child frame (so `set` inside a loop does
// not leak out of it, as in Jinja), while `if` bodies share their frame.
// Built-in filters (filters.cpp), tests (tests.cpp), str/dict methods
// (methods.cpp) and globals (globals.cpp) are free functions over a Renderer.
//
// Invariant: one Renderer renders one template once; it counts the work done
// (loop iterations, macro calls, bytes of strings built) against the
// Program's limits and stops with an Error when one is exceeded.
// Owner: runtime/jinja. Thread-safety: a Renderer is single-threaded; the
// Program it reads is shared and immutable.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/jinja/ast.h"
#include "runtime/jinja/parser.h"
#include "runtime/jinja/value.h"
#include "runtime/result.h"

namespace myriad::jinja {

struct Frame {
  std::shared_ptr<Frame> parent;
  std::vector<std::pair<std::string, Value>> vars;

  const Value* lookup(std::string_view name) const;
  void set(const std::string& name, Value value);
};
using FramePtr = std::shared_ptr<Frame>;

struct MacroDef {
  const Node* node = nullptr;
  std::weak_ptr<Frame> closure;  // weak: the frame holds the macro (no cycle)
};

// Arguments of a filter, test, method, global or macro call.
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;

  // Checks the arguments against a signature (positional or by name) and
  // remembers it for arg(). `what` names the callee in error messages.
  Status bind(std::string_view what, std::initializer_list<std::string_view> params);
  // The i-th parameter of the bound signature, or Undefined if not given.
  const Value& arg(std::size_t i) const;
  bool has(std::size_t i) const { return !arg(i).is_undefined(); }

 private:
  std::vector<std::string_view> params_;
  std::vector<const Value*> bound_;
};

enum class Flow { kNormal, kBreak, kContinue };

class Renderer {
 public:
  explicit Renderer(const Program& program) : program_(program) {}

  Result<std::string> render(const nlohmann::json& context);
  Result<std::string> render(const nlohmann::ordered_json& context);

  // ---- used by filters, tests, methods and globals ----
  Result<Value> call(const Value& callee, CallArgs& args);
  // Counts loop iterations / items processed; Err past the limit.
  Status count_iterations(std::uint64_t n);
  // Accounts a string of `bytes` being built; Err past the limits.
  Status count_bytes(std::size_t bytes);
  const ChatTemplateLimits& limits() const { return program_.limits; }
  // A namespace() made in this render: cleared when the render ends, which
  // breaks reference cycles (`{% set ns.me = ns %}`) and long chains.
  void track_namespace(std::shared_ptr<Object> attrs) { namespaces_.push_back(std::move(attrs)); }
  // Values kept in variables may not nest deeper than this (a loop could
  // otherwise build `[[[...]]]` a million deep, and freeing it would recurse).
  static constexpr int kMaxValueDepth = 256;
  // ...nor hold more than this many values counting shared ones repeatedly
  // (`[x, x]` a hundred times over would be 2^100 to print or compare).
  static constexpr std::uint32_t kMaxValueNodes = 1u << 24;
  Status check_depth(const Value& v) const;

 private:
  template <class Json>
  Result<std::string> render_json(const Json& context);
  Result<Flow> exec(const Body& body, const FramePtr& frame, std::string& out);
  Result<Flow> exec_node(const Node& node, const FramePtr& frame, std::string& out);
  Result<Flow> exec_for(const Node& node, const FramePtr& frame, std::string& out);
  Status exec_set(const Node& node, const FramePtr& frame);
  Result<Value> eval(const Expr& e, const FramePtr& frame);
  Result<Value> eval_inner(const Expr& e, const FramePtr& frame);
  Result<Value> eval_call(const Expr& e, const FramePtr& frame);
  Status eval_args(const Expr& e, std::size_t first, const FramePtr& frame, CallArgs* args);
  Result<Value> call_macro(const MacroDef& macro, CallArgs& args);
  FramePtr new_frame(const FramePtr& parent);

  const Program& program_;
  FramePtr root_;
  int call_depth_ = 0;
  std::uint64_t iterations_ = 0;
  std::uint64_t bytes_built_ = 0;
  std::vector<std::shared_ptr<Object>> namespaces_;
};

// ---- built-ins (each file holds one family) ----
Result<Value> apply_filter(Renderer& r, std::string_view name, const Value& input, CallArgs& args);
bool is_filter_name(std::string_view name);
Result<bool> apply_test(Renderer& r, std::string_view name, const Value& input, CallArgs& args);
bool is_test_name(std::string_view name);
// A method of str / dict (Python semantics); Err for unknown ones.
Result<Value> call_method(Renderer& r, const Value& self, std::string_view name, CallArgs& args);
bool has_method(const Value& self, std::string_view name);
// range, namespace, dict, raise_exception, strftime_now.
bool is_global(std::string_view name);
Result<Value> call_global(Renderer& r, std::string_view name, CallArgs& args);

// Shared helpers for the built-ins.
Error type_error(std::string message);
Error undefined_error(const Value& v);
// The items a for loop (or a filter) iterates: list items, dict keys, string
// characters; undefined is empty. Err for other types.
Result<Array> iterate(const Value& v);
// Python a[i] on a list or str (negative from the end); Undefined when out of range.
Value get_item(const Value& obj, const Value& key);
// Jinja's environment.getattr(obj, name): attribute (method) first, then item.
Value get_attr(const Value& obj, const std::string& name);
Result<Value> binary_op(Renderer& r, std::string_view op, const Value& a, const Value& b);

}  // namespace myriad::jinja
