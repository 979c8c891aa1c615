// jinja::Value: the dynamic value of the chat-template evaluator, modelled on
// the Python objects Jinja2 handles (undefined, None, bool, int, float, str,
// list, dict, namespace, callables).
//
// Invariant: strings, lists and dicts are immutable and shared (copying a
// Value copies a pointer); only a namespace() object is mutable (`{% set
// ns.x = ... %}`), as in Jinja's ImmutableSandboxedEnvironment. Strings hold
// UTF-8; dicts keep insertion order, like Python dicts.
// Owner: runtime/jinja. Thread-safety: a Value may be read from many threads;
// a namespace is only written by the render that created it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/result.h"

namespace myriad::jinja {

class Value;
using Array = std::vector<Value>;

// An ordered dict (also a namespace's attributes). Linear lookup: template
// dicts are small, and insertion order must be kept.
struct Object {
  std::vector<std::pair<std::string, Value>> items;
  const Value* find(std::string_view key) const;
  Value* find(std::string_view key);
  void set(std::string key, Value value);  // replaces or appends
};

struct MacroDef;  // evaluator-owned (a macro's body and closure)

// Something callable that is a value: a global function (range, namespace, ...),
// a macro, or a bound method (`d.items` read without calling it).
struct Callable {
  enum class Kind { kGlobal, kMacro, kBoundMethod };
  Kind kind = Kind::kGlobal;
  std::string name;
  std::shared_ptr<const MacroDef> macro;   // kMacro
  std::shared_ptr<const Value> self;       // kBoundMethod
};

struct Undefined {
  std::shared_ptr<const std::string> name;  // what was looked up, for error messages
};
struct None {};
struct Namespace {
  std::shared_ptr<Object> attrs;  // mutable, shared by every copy
};

class Value {
 public:
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kArray, kObject, kNamespace, kCallable };

  Value() : v_(Undefined{}) {}
  static Value undefined(std::string name) { return Value(Undefined{std::make_shared<const std::string>(std::move(name))}); }
  static Value none() { return Value(None{}); }
  // A Python tuple: a list that prints as (a, b) (tuple literals, dict.items()).
  static Value tuple(Array a) {
    Value v(std::move(a));
    v.flavor_ = Flavor::kTuple;
    return v;
  }
  bool is_tuple() const { return flavor_ == Flavor::kTuple; }
  // A Python iterator/generator (what map, select, unique... return in Jinja):
  // always truthy, even when empty, and printed as <generator object>.
  static Value iterator(Array a) {
    Value v(std::move(a));
    v.flavor_ = Flavor::kIterator;
    return v;
  }
  bool is_iterator() const { return flavor_ == Flavor::kIterator; }
  Value(bool b) : v_(b) {}                                // NOLINT
  Value(std::int64_t i) : v_(i) {}                        // NOLINT
  Value(int i) : v_(static_cast<std::int64_t>(i)) {}      // NOLINT
  Value(double d) : v_(d) {}                              // NOLINT
  Value(std::string s) : v_(std::make_shared<const std::string>(std::move(s))) {}  // NOLINT
  Value(const char* s) : Value(std::string(s)) {}         // NOLINT
  Value(Array a);   // NOLINT
  Value(Object o);  // NOLINT
  Value(Namespace n) : v_(std::move(n)), depth_(1) {}     // NOLINT
  Value(Callable c) : v_(std::make_shared<const Callable>(std::move(c))) {}  // NOLINT
  Value(Undefined u) : v_(std::move(u)) {}                // NOLINT
  Value(None n) : v_(n) {}                                // NOLINT

  Kind kind() const { return static_cast<Kind>(v_.index()); }
  bool is_undefined() const { return kind() == Kind::kUndefined; }
  bool is_none() const { return kind() == Kind::kNone; }
  bool is_bool() const { return kind() == Kind::kBool; }
  bool is_int() const { return kind() == Kind::kInt; }
  bool is_float() const { return kind() == Kind::kFloat; }
  bool is_number() const { return is_int() || is_float() || is_bool(); }  // Python: bool is an int
  bool is_string() const { return kind() == Kind::kString; }
  bool is_array() const { return kind() == Kind::kArray; }
  bool is_object() const { return kind() == Kind::kObject; }
  bool is_namespace() const { return kind() == Kind::kNamespace; }
  bool is_callable() const { return kind() == Kind::kCallable; }

  bool as_bool() const { return std::get<bool>(v_); }
  std::int64_t as_int() const { return std::get<std::int64_t>(v_); }
  double as_float() const { return std::get<double>(v_); }
  double as_double() const;  // any number, bool included
  const std::string& as_string() const { return *std::get<5>(v_); }
  const Array& as_array() const { return *std::get<6>(v_); }
  const Object& as_object() const { return *std::get<7>(v_); }
  const Namespace& as_namespace() const { return std::get<8>(v_); }
  const Callable& as_callable() const { return *std::get<9>(v_); }
  const std::string& undefined_name() const;  // "" when anonymous

  // Python truthiness (empty str/list/dict, 0, None and undefined are false).
  bool truthy() const;
  // Jinja's `{{ x }}`: str(x) in Python (None -> "None", True -> "True",
  // lists and dicts as Python repr), undefined -> "".
  // Stops early (leaving a truncated text) once more than `cap` bytes are
  // written: sharing can make a small value print exponentially long.
  static constexpr std::size_t kDefaultPrintCap = std::size_t{64} << 20;
  std::string to_output(std::size_t cap = kDefaultPrintCap) const;
  // Python repr(x) (strings quoted), used inside lists and dicts.
  std::string repr(std::size_t cap = kDefaultPrintCap) const;
  // Nesting depth of lists/dicts (0 for scalars; a namespace counts 1, since
  // it may change). Lists and dicts are immutable, so this is exact for them.
  int depth() const { return depth_; }
  // Number of values in the tree, a shared sub-value counted every time it
  // appears, so it is what printing or comparing walks (saturates at 2^32-1).
  std::uint32_t nodes() const { return nodes_; }
  // Python's type name, for error messages ("str", "int", "list", "dict"...).
  const char* type_name() const;

  // JSON deeper than kMaxJsonDepth converts to None below that depth and sets
  // *too_deep (when given): callers report it, nothing recurses unboundedly.
  static constexpr int kMaxJsonDepth = 512;
  static Value from_json(const nlohmann::json& j, bool* too_deep = nullptr);
  static Value from_json(const nlohmann::ordered_json& j, bool* too_deep = nullptr);  // keeps key order

 private:
  std::variant<Undefined, None, bool, std::int64_t, double, std::shared_ptr<const std::string>,
               std::shared_ptr<const Array>, std::shared_ptr<const Object>, Namespace,
               std::shared_ptr<const Callable>>
      v_;
  enum class Flavor : std::uint8_t { kList, kTuple, kIterator };
  Flavor flavor_ = Flavor::kList;  // only meaningful for kArray
  std::uint16_t depth_ = 0;
  std::uint32_t nodes_ = 1;  // tree size, counting shared sub-values each time (saturating)
};

// Python ==, with 1 == 1.0 == True; lists and dicts compare deeply.
bool values_equal(const Value& a, const Value& b);
// Python <: numbers, strings (by code point), lists lexicographically.
// Err for unorderable types. Returns -1, 0 or 1.
Result<int> values_compare(const Value& a, const Value& b);

// json.dumps(x, ensure_ascii, indent, separators, sort_keys) as transformers'
// tojson filter calls it. indent < 0 means None. Err for undefined, callables.
struct JsonDumpOptions {
  bool ensure_ascii = false;
  int indent = -1;
  std::string item_separator;  // "" = Python's default for the indent
  std::string key_separator;   // "" = ": "
  bool sort_keys = false;
  std::size_t max_bytes = std::size_t{64} << 20;  // stop (with an Error) past this
};
Result<std::string> dump_json(const Value& v, const JsonDumpOptions& options);

// Python float repr (shortest round trip: 1.0, 0.1, 1e+20, inf, nan).
std::string python_float_repr(double d);

}  // namespace myriad::jinja

// `lhs = value of expr`, or return its Error (for Result-returning functions).
#define JINJA_CONCAT_INNER(a, b) a##b
#define JINJA_CONCAT(a, b) JINJA_CONCAT_INNER(a, b)
#define JINJA_ASSIGN_OR_RETURN(lhs, expr) JINJA_ASSIGN_IMPL(JINJA_CONCAT(_jinja_r_, __LINE__), lhs, expr)
#define JINJA_ASSIGN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                      \
  if (!tmp.ok()) return tmp.error();      \
  lhs = std::move(tmp).value()
