// Jinja2's built-in tests (`x is defined`, `x is string`, `x is eq 3`...).
#include <cmath>

#include "runtime/jinja/evaluator.h"
#include "runtime/jinja/text.h"

namespace myriad::jinja {

namespace {

using TestFn = Result<bool> (*)(Renderer&, const Value&, CallArgs&);

Result<bool> t_defined(Renderer&, const Value& v, CallArgs&) { return !v.is_undefined(); }
Result<bool> t_undefined(Renderer&, const Value& v, CallArgs&) { return v.is_undefined(); }
Result<bool> t_none(Renderer&, const Value& v, CallArgs&) { return v.is_none(); }
Result<bool> t_boolean(Renderer&, const Value& v, CallArgs&) { return v.is_bool(); }
Result<bool> t_true(Renderer&, const Value& v, CallArgs&) { return v.is_bool() && v.as_bool(); }
Result<bool> t_false(Renderer&, const Value& v, CallArgs&) { return v.is_bool() && !v.as_bool(); }
Result<bool> t_integer(Renderer&, const Value& v, CallArgs&) { return v.is_int(); }
Result<bool> t_float(Renderer&, const Value& v, CallArgs&) { return v.is_float(); }
Result<bool> t_number(Renderer&, const Value& v, CallArgs&) { return v.is_number(); }
Result<bool> t_string(Renderer&, const Value& v, CallArgs&) { return v.is_string(); }
Result<bool> t_mapping(Renderer&, const Value& v, CallArgs&) { return v.is_object(); }
Result<bool> t_iterable(Renderer&, const Value& v, CallArgs&) {
  return v.is_string() || v.is_array() || v.is_object() || v.is_undefined();
}
Result<bool> t_sequence(Renderer&, const Value& v, CallArgs&) {
  // Jinja checks len() and __getitem__, which Undefined has too.
  return v.is_string() || v.is_array() || v.is_object() || v.is_undefined();
}
Result<bool> t_callable(Renderer&, const Value& v, CallArgs&) { return v.is_callable(); }
Result<bool> t_escaped(Renderer&, const Value&, CallArgs&) { return false; }

Result<bool> t_in(Renderer&, const Value& v, CallArgs& a) {
  MYRIAD_TRY(a.bind("in", {"seq"}));
  const Value& seq = a.arg(0);
  switch (seq.kind()) {
    case Value::Kind::kString:
      if (!v.is_string()) {
        return type_error(std::string("'in <string>' requires string as left operand, not ") + v.type_name());
      }
      return seq.as_string().find(v.as_string()) != std::string::npos;
    case Value::Kind::kArray:
      for (const Value& x : seq.as_array()) {
        if (values_equal(x, v)) return true;
      }
      return false;
    case Value::Kind::kObject:
      return v.is_string() && seq.as_object().find(v.as_string()) != nullptr;
    case Value::Kind::kUndefined:
      return false;
    default:
      return type_error(std::string("argument of type '") + seq.type_name() + "' is not iterable");
  }
}

Result<bool> compare_test(const Value& v, CallArgs& a, const char* name, int want) {
  MYRIAD_TRY(a.bind(name, {"other"}));
  if (want == 2) return values_equal(v, a.arg(0));
  if (want == -2) return !values_equal(v, a.arg(0));
  if (v.is_undefined()) return undefined_error(v);
  if (a.arg(0).is_undefined()) return undefined_error(a.arg(0));
  int c;
  JINJA_ASSIGN_OR_RETURN(c, values_compare(v, a.arg(0)));
  switch (want) {
    case -1: return c < 0;
    case 1: return c > 0;
    case -3: return c <= 0;
    default: return c >= 0;
  }
}
Result<bool> t_eq(Renderer&, const Value& v, CallArgs& a) { return compare_test(v, a, "eq", 2); }
Result<bool> t_ne(Renderer&, const Value& v, CallArgs& a) { return compare_test(v, a, "ne", -2); }
Result<bool> t_lt(Renderer&, const Value& v, CallArgs& a) { return compare_test(v, a, "lt", -1); }
Result<bool> t_gt(Renderer&, const Value& v, CallArgs& a) { return compare_test(v, a, "gt", 1); }
Result<bool> t_le(Renderer&, const Value& v, CallArgs& a) { return compare_test(v, a, "le", -3); }
Result<bool> t_ge(Renderer&, const Value& v, CallArgs& a) { return compare_test(v, a, "ge", 3); }

Result<bool> t_sameas(Renderer&, const Value& v, CallArgs& a) {
  MYRIAD_TRY(a.bind("sameas", {"other"}));
  const Value& o = a.arg(0);
  // `is` identity: singletons (None, True, False) compare by value; others by sharing.
  if (v.is_none() || o.is_none()) return v.is_none() && o.is_none();
  if (v.is_bool() || o.is_bool()) return v.is_bool() && o.is_bool() && v.as_bool() == o.as_bool();
  if (v.is_namespace() && o.is_namespace()) return v.as_namespace().attrs == o.as_namespace().attrs;
  if (v.is_array() && o.is_array()) return &v.as_array() == &o.as_array();
  if (v.is_object() && o.is_object()) return &v.as_object() == &o.as_object();
  return values_equal(v, o) && v.kind() == o.kind();
}

// `value % num == 0` with Python's % (floats allowed).
Result<bool> divisible(Renderer& r, const Value& v, const Value& num) {
  Value m;
  JINJA_ASSIGN_OR_RETURN(m, binary_op(r, "%", v, num));
  if (!m.is_number()) return type_error(std::string("unsupported operand for %: '") + v.type_name() + "'");
  return m.as_double() == 0.0;
}

Result<bool> t_odd(Renderer& r, const Value& v, CallArgs& a) {
  MYRIAD_TRY(a.bind("odd", {}));
  Value m;
  JINJA_ASSIGN_OR_RETURN(m, binary_op(r, "%", v, Value(2)));
  if (!m.is_number()) return type_error(std::string("unsupported operand for %: '") + v.type_name() + "'");
  return m.as_double() == 1.0;
}
Result<bool> t_even(Renderer& r, const Value& v, CallArgs& a) {
  MYRIAD_TRY(a.bind("even", {}));
  return divisible(r, v, Value(2));
}
Result<bool> t_divisibleby(Renderer& r, const Value& v, CallArgs& a) {
  MYRIAD_TRY(a.bind("divisibleby", {"num"}));
  return divisible(r, v, a.arg(0));
}
// str.islower()/isupper(): no character of the other case and at least one cased.
Result<bool> t_lower(Renderer&, const Value& v, CallArgs& a) {
  MYRIAD_TRY(a.bind("lower", {}));
  std::string s = v.to_output();
  return str_lower(s) == s && str_upper(s) != s;
}
Result<bool> t_upper(Renderer&, const Value& v, CallArgs& a) {
  MYRIAD_TRY(a.bind("upper", {}));
  std::string s = v.to_output();
  return str_upper(s) == s && str_lower(s) != s;
}

struct TestEntry {
  std::string_view name;
  TestFn fn;
};

constexpr TestEntry kTests[] = {
    {"defined", t_defined}, {"undefined", t_undefined}, {"none", t_none},
    {"boolean", t_boolean}, {"true", t_true},           {"false", t_false},
    {"integer", t_integer}, {"float", t_float},         {"number", t_number},
    {"string", t_string},   {"mapping", t_mapping},     {"iterable", t_iterable},
    {"sequence", t_sequence}, {"callable", t_callable}, {"escaped", t_escaped},
    {"in", t_in},           {"eq", t_eq},               {"equalto", t_eq},
    {"==", t_eq},           {"ne", t_ne},               {"!=", t_ne},
    {"lt", t_lt},           {"lessthan", t_lt},         {"<", t_lt},
    {"le", t_le},           {"<=", t_le},               {"gt", t_gt},
    {"greaterthan", t_gt},  {">", t_gt},                {"ge", t_ge},
    {">=", t_ge},           {"odd", t_odd},             {"even", t_even},
    {"divisibleby", t_divisibleby}, {"lower", t_lower}, {"upper", t_upper},
    {"sameas", t_sameas},
};

}  // namespace

bool is_test_name(std::string_view name) {
  for (const auto& t : kTests) {
    if (t.name == name) return true;
  }
  return false;
}

Result<bool> apply_test(Renderer& r, std::string_view name, const Value& input, CallArgs& args) {
  for (const auto& t : kTests) {
    if (t.name == name) return t.fn(r, input, args);
  }
  return make_error(ErrorCode::kUnsupported, "no test named '" + std::string(name) + "'");
}

}  // namespace myriad::jinja
