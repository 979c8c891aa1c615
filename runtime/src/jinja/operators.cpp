// Python operator semantics for jinja values: arithmetic, item and attribute
// access, iteration.
#include <cmath>
#include <limits>

#include "runtime/jinja/evaluator.h"
#include "runtime/jinja/text.h"

namespace myriad::jinja {

Error type_error(std::string message) { return make_error(ErrorCode::kInvalidArgument, std::move(message)); }

Error undefined_error(const Value& v) {
  const std::string& name = v.undefined_name();
  if (name.empty()) return type_error("undefined value used");
  return type_error(name + " is undefined");
}

Result<Array> iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return Array{};
    case Value::Kind::kArray: return v.as_array();
    case Value::Kind::kObject: {
      Array keys;
      keys.reserve(v.as_object().items.size());
      for (const auto& kv : v.as_object().items) keys.emplace_back(kv.first);
      return keys;
    }
    case Value::Kind::kString: {
      Array chars;
      const std::string& s = v.as_string();
      if (is_ascii(s)) {
        for (char c : s) chars.emplace_back(std::string(1, c));
      } else {
        for (char32_t c : utf8_decode(s)) {
          std::string one;
          utf8_append(one, c);
          chars.emplace_back(std::move(one));
        }
      }
      return chars;
    }
    default: return type_error(std::string("'") + v.type_name() + "' object is not iterable");
  }
}

namespace {

bool as_index(const Value& key, std::int64_t* out) {
  if (key.is_int()) {
    *out = key.as_int();
    return true;
  }
  if (key.is_bool()) {
    *out = key.as_bool() ? 1 : 0;
    return true;
  }
  return false;
}

Value missing(const Value& obj, const std::string& what) {
  std::string msg = "'";  // built by append: GCC 12 misreports operator+ chains (-Wrestrict)
  msg.append(obj.type_name()).append(" object' has no attribute ").append(what);
  return Value::undefined(std::move(msg));
}

}  // namespace

Value get_item(const Value& obj, const Value& key) {
  std::int64_t idx = 0;
  switch (obj.kind()) {
    case Value::Kind::kArray: {
      if (!as_index(key, &idx)) {
        if (key.is_string()) return get_attr(obj, key.as_string());
        return missing(obj, key.repr());
      }
      const Array& a = obj.as_array();
      auto n = static_cast<std::int64_t>(a.size());
      if (idx < 0) idx += n;
      if (idx < 0 || idx >= n) return Value::undefined("list index " + key.repr() + " out of range");
      return a[static_cast<std::size_t>(idx)];
    }
    case Value::Kind::kString: {
      if (!as_index(key, &idx)) {
        if (key.is_string()) return get_attr(obj, key.as_string());
        return missing(obj, key.repr());
      }
      const std::string& s = obj.as_string();
      if (is_ascii(s)) {
        auto n = static_cast<std::int64_t>(s.size());
        if (idx < 0) idx += n;
        if (idx < 0 || idx >= n) return Value::undefined("string index " + key.repr() + " out of range");
        return Value(std::string(1, s[static_cast<std::size_t>(idx)]));
      }
      std::u32string u = utf8_decode(s);
      auto n = static_cast<std::int64_t>(u.size());
      if (idx < 0) idx += n;
      if (idx < 0 || idx >= n) return Value::undefined("string index " + key.repr() + " out of range");
      std::string one;
      utf8_append(one, u[static_cast<std::size_t>(idx)]);
      return Value(std::move(one));
    }
    case Value::Kind::kObject: {
      if (key.is_string()) {
        if (const Value* v = obj.as_object().find(key.as_string())) return *v;
        if (has_method(obj, key.as_string())) return get_attr(obj, key.as_string());
      }
      return Value::undefined("'dict object' has no attribute " + key.repr());
    }
    case Value::Kind::kNamespace:
      if (key.is_string()) return get_attr(obj, key.as_string());
      return missing(obj, key.repr());
    default:
      return missing(obj, key.repr());
  }
}

Value get_attr(const Value& obj, const std::string& name) {
  if (has_method(obj, name)) {
    Callable c;
    c.kind = Callable::Kind::kBoundMethod;
    c.name = name;
    c.self = std::make_shared<const Value>(obj);
    return Value(std::move(c));
  }
  switch (obj.kind()) {
    case Value::Kind::kObject:
      if (const Value* v = obj.as_object().find(name)) return *v;
      return Value::undefined("'dict object' has no attribute '" + name + "'");
    case Value::Kind::kNamespace:
      if (const Value* v = obj.as_namespace().attrs->find(name)) return *v;
      return Value::undefined("'Namespace' has no attribute '" + name + "'");
    default:
      return missing(obj, "'" + name + "'");
  }
}

namespace {

Error unsupported(std::string_view op, const Value& a, const Value& b) {
  return type_error("unsupported operand type(s) for " + std::string(op) + ": '" + a.type_name() + "' and '" +
                    b.type_name() + "'");
}

std::int64_t int_of(const Value& v) { return v.is_int() ? v.as_int() : static_cast<std::int64_t>(v.as_bool()); }

Result<Value> repeat(Renderer& r, const Value& seq, std::int64_t n) {
  if (n < 0) n = 0;
  if (seq.is_string()) {
    const std::string& s = seq.as_string();
    if (!s.empty() && static_cast<std::uint64_t>(n) > r.limits().max_output_bytes / s.size()) {
      return make_error(ErrorCode::kResourceExhausted, "string repetition larger than the output limit");
    }
    MYRIAD_TRY(r.count_bytes(s.size() * static_cast<std::size_t>(n)));
    std::string out;
    out.reserve(s.size() * static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) out += s;
    return Value(std::move(out));
  }
  const Array& a = seq.as_array();
  MYRIAD_TRY(r.count_iterations(static_cast<std::uint64_t>(n) * std::max<std::size_t>(a.size(), 1)));
  Array out;
  for (std::int64_t i = 0; i < n; ++i) out.insert(out.end(), a.begin(), a.end());
  return seq.is_tuple() ? Value::tuple(std::move(out)) : Value(std::move(out));
}

// Python's printf-style `fmt % args` for %s %r %d %i %f %e %g %x %o %c %%,
// with flags, width and precision (no %(name)s mappings).
Result<Value> percent_format(Renderer& r, const std::string& fmt, const Value& args) {
  Array items = args.is_tuple() ? args.as_array() : Array{args};
  std::size_t next = 0;
  std::string out;
  for (std::size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out.push_back(fmt[i]);
      continue;
    }
    std::size_t j = i + 1;
    if (j < fmt.size() && fmt[j] == '%') {
      out.push_back('%');
      i = j;
      continue;
    }
    if (j < fmt.size() && fmt[j] == '(') {
      return make_error(ErrorCode::kUnsupported, "%(name) string formatting is not supported");
    }
    std::string spec = "%";
    while (j < fmt.size() && std::string_view("-+ #0").find(fmt[j]) != std::string_view::npos) spec += fmt[j++];
    int digits = 0;
    while (j < fmt.size() && ((fmt[j] >= '0' && fmt[j] <= '9') || fmt[j] == '.')) {
      if (++digits > 6) return type_error("format width/precision too long");
      spec += fmt[j++];
    }
    if (j >= fmt.size()) return type_error("incomplete format");
    char conv = fmt[j];
    i = j;
    if (next >= items.size()) return type_error("not enough arguments for format string");
    const Value& v = items[next++];
    char buf[512];
    if (conv == 's' || conv == 'r') {
      std::string text = conv == 's' ? v.to_output() : v.repr();
      std::string f = spec + "s";
      if (spec == "%") {
        out += text;
      } else {
        std::vector<char> big(text.size() + 1100);
        std::snprintf(big.data(), big.size(), f.c_str(), text.c_str());
        out += big.data();
      }
    } else if (conv == 'd' || conv == 'i' || conv == 'x' || conv == 'X' || conv == 'o' || conv == 'c') {
      if (!v.is_number()) return type_error(std::string("%") + conv + " format: a real number is required, not " + v.type_name());
      long long n = v.is_float() ? static_cast<long long>(v.as_float()) : static_cast<long long>(v.is_int() ? v.as_int() : v.as_bool());
      if (conv == 'c') {
        if (n < 0 || n > 0x10FFFF) return type_error("%c arg not in range(0x110000)");
        utf8_append(out, static_cast<char32_t>(n));
        continue;
      }
      std::string f = spec + "ll" + (conv == 'i' ? 'd' : conv);
      std::snprintf(buf, sizeof(buf), f.c_str(), n);
      out += buf;
    } else if (std::string_view("feEgG").find(conv) != std::string_view::npos) {
      if (!v.is_number()) return type_error(std::string("must be real number, not ") + v.type_name());
      std::string f = spec + conv;
      std::snprintf(buf, sizeof(buf), f.c_str(), v.as_double());
      out += buf;
    } else {
      return make_error(ErrorCode::kUnsupported, std::string("unsupported format character '") + conv + "'");
    }
    MYRIAD_TRY(r.count_bytes(out.size()));
  }
  // Python skips this check for any non-tuple argument with __getitem__ (dict, list).
  if (next < items.size() && !args.is_object() && !(args.is_array() && !args.is_tuple())) {
    return type_error("not all arguments converted during string formatting");
  }
  return Value(std::move(out));
}

double py_fmod(double a, double b) {
  double m = std::fmod(a, b);
  if (m != 0.0 && ((m < 0) != (b < 0))) m += b;
  return m;
}

}  // namespace

Result<Value> binary_op(Renderer& r, std::string_view op, const Value& a, const Value& b) {
  if (op == "~") {
    std::string s = a.to_output();
    s += b.to_output();
    MYRIAD_TRY(r.count_bytes(s.size()));
    return Value(std::move(s));
  }
  if (a.is_undefined()) return undefined_error(a);
  if (b.is_undefined()) return undefined_error(b);
  const bool nums = a.is_number() && b.is_number();
  const bool ints = nums && !a.is_float() && !b.is_float();
  if (op == "+") {
    if (ints) {
      std::int64_t out;
      if (__builtin_add_overflow(int_of(a), int_of(b), &out)) return type_error("integer overflow in +");
      return Value(out);
    }
    if (nums) return Value(a.as_double() + b.as_double());
    if (a.is_string() && b.is_string()) {
      MYRIAD_TRY(r.count_bytes(a.as_string().size() + b.as_string().size()));
      std::string s;
      s.reserve(a.as_string().size() + b.as_string().size());
      s += a.as_string();
      s += b.as_string();
      return Value(std::move(s));
    }
    if (a.is_array() && b.is_array()) {
      MYRIAD_TRY(r.count_iterations(a.as_array().size() + b.as_array().size()));
      if (a.is_tuple() != b.is_tuple()) {
        return type_error(std::string("can only concatenate ") + (a.is_tuple() ? "tuple" : "list") + " (not \"" +
                          (b.is_tuple() ? "tuple" : "list") + "\") to " + (a.is_tuple() ? "tuple" : "list"));
      }
      Array out = a.as_array();
      out.insert(out.end(), b.as_array().begin(), b.as_array().end());
      return a.is_tuple() ? Value::tuple(std::move(out)) : Value(std::move(out));
    }
    if (a.is_string() || b.is_string()) {
      return type_error(std::string("can only concatenate str (not \"") + (a.is_string() ? b : a).type_name() +
                        "\") to str");
    }
    return unsupported(op, a, b);
  }
  if (op == "-") {
    if (ints) {
      std::int64_t out;
      if (__builtin_sub_overflow(int_of(a), int_of(b), &out)) return type_error("integer overflow in -");
      return Value(out);
    }
    if (nums) return Value(a.as_double() - b.as_double());
    return unsupported(op, a, b);
  }
  if (op == "*") {
    if (ints) {
      std::int64_t out;
      if (__builtin_mul_overflow(int_of(a), int_of(b), &out)) return type_error("integer overflow in *");
      return Value(out);
    }
    if (nums) return Value(a.as_double() * b.as_double());
    if ((a.is_string() || a.is_array()) && (b.is_int() || b.is_bool())) return repeat(r, a, int_of(b));
    if ((b.is_string() || b.is_array()) && (a.is_int() || a.is_bool())) return repeat(r, b, int_of(a));
    return unsupported(op, a, b);
  }
  if (op == "/") {
    if (!nums) return unsupported(op, a, b);
    if (b.as_double() == 0.0) return type_error("division by zero");
    return Value(a.as_double() / b.as_double());
  }
  if (op == "//" || op == "%") {
    if (!nums) {
      if (op == "%" && a.is_string()) return percent_format(r, a.as_string(), b);
      return unsupported(op, a, b);
    }
    if (b.as_double() == 0.0) return type_error(op == "%" ? "modulo by zero" : "integer division by zero");
    if (ints) {
      std::int64_t x = int_of(a), y = int_of(b);
      if (x == std::numeric_limits<std::int64_t>::min() && y == -1) return type_error("integer overflow in //");
      std::int64_t q = x / y, m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) {
        q -= 1;
        m += y;
      }
      return Value(op == "//" ? q : m);
    }
    double x = a.as_double(), y = b.as_double();
    if (op == "%") return Value(py_fmod(x, y));
    return Value(std::floor(x / y));
  }
  if (op == "**") {
    if (ints && int_of(b) >= 0) {
      std::int64_t base = int_of(a), e = int_of(b), out = 1;
      while (e > 0) {
        if (e & 1) {
          if (__builtin_mul_overflow(out, base, &out)) return type_error("integer overflow in **");
        }
        e >>= 1;
        if (e > 0 && __builtin_mul_overflow(base, base, &base)) return type_error("integer overflow in **");
      }
      return Value(out);
    }
    if (nums) return Value(std::pow(a.as_double(), b.as_double()));
    return unsupported(op, a, b);
  }
  return type_error("unknown operator " + std::string(op));
}

}  // namespace myriad::jinja
