#include "runtime/jinja/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include <utf8proc.h>

#include "runtime/jinja/text.h"

namespace myriad::jinja {

const Value* Object::find(std::string_view key) const {
  for (const auto& [k, v] : items) {
    if (k == key) return &v;
  }
  return nullptr;
}

Value* Object::find(std::string_view key) {
  for (auto& [k, v] : items) {
    if (k == key) return &v;
  }
  return nullptr;
}

void Object::set(std::string key, Value value) {
  if (Value* v = find(key)) {
    *v = std::move(value);
  } else {
    items.emplace_back(std::move(key), std::move(value));
  }
}

namespace {
template <class It, class Depth>
std::uint16_t depth_over(It begin, It end, Depth depth_of) {
  int d = 0;
  for (It it = begin; it != end; ++it) d = std::max(d, depth_of(*it));
  return static_cast<std::uint16_t>(std::min(d + 1, 60000));
}
}  // namespace

template <class It, class Nodes>
std::uint32_t nodes_over(It begin, It end, Nodes nodes_of) {
  std::uint64_t n = 1;
  for (It it = begin; it != end; ++it) n = std::min<std::uint64_t>(n + nodes_of(*it), UINT32_MAX);
  return static_cast<std::uint32_t>(n);
}

Value::Value(Array a)
    : depth_(depth_over(a.begin(), a.end(), [](const Value& v) { return v.depth(); })),
      nodes_(nodes_over(a.begin(), a.end(), [](const Value& v) { return v.nodes(); })) {
  v_ = std::make_shared<const Array>(std::move(a));
}

Value::Value(Object o)
    : depth_(depth_over(o.items.begin(), o.items.end(), [](const auto& kv) { return kv.second.depth(); })),
      nodes_(nodes_over(o.items.begin(), o.items.end(), [](const auto& kv) { return kv.second.nodes(); })) {
  v_ = std::make_shared<const Object>(std::move(o));
}

double Value::as_double() const {
  switch (kind()) {
    case Kind::kBool: return as_bool() ? 1.0 : 0.0;
    case Kind::kInt: return static_cast<double>(as_int());
    case Kind::kFloat: return as_float();
    default: return 0.0;
  }
}

const std::string& Value::undefined_name() const {
  static const std::string kEmpty;
  const auto& u = std::get<Undefined>(v_);
  return u.name ? *u.name : kEmpty;
}

bool Value::truthy() const {
  switch (kind()) {
    case Kind::kUndefined:
    case Kind::kNone: return false;
    case Kind::kBool: return as_bool();
    case Kind::kInt: return as_int() != 0;
    case Kind::kFloat: return as_float() != 0.0;
    case Kind::kString: return !as_string().empty();
    case Kind::kArray: return is_iterator() || !as_array().empty();
    case Kind::kObject: return !as_object().items.empty();
    case Kind::kNamespace:
    case Kind::kCallable: return true;
  }
  return false;
}

const char* Value::type_name() const {
  switch (kind()) {
    case Kind::kUndefined: return "Undefined";
    case Kind::kNone: return "NoneType";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kString: return "str";
    case Kind::kArray: return "list";
    case Kind::kObject: return "dict";
    case Kind::kNamespace: return "Namespace";
    case Kind::kCallable: return "function";
  }
  return "?";
}

std::string python_float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  if (d == 0.0) return std::signbit(d) ? "-0.0" : "0.0";
  // Shortest round-trip digits, then Python's repr layout: exponent form when
  // the decimal point falls before -4 or after 16 digits.
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  bool neg = sci[0] == '-';
  if (neg) sci.erase(0, 1);
  std::size_t e = sci.find('e');
  std::string mant = sci.substr(0, e);
  int exp10 = std::atoi(sci.c_str() + e + 1);
  std::string digits;
  for (char c : mant) {
    if (c != '.') digits.push_back(c);
  }
  int decpt = exp10 + 1;  // position of the decimal point relative to digits
  std::string out = neg ? "-" : "";
  if (decpt > -4 && decpt <= 16) {
    // Appends, not operator+ chains: GCC 12 misreports those (-Wrestrict).
    if (decpt <= 0) {
      out.append("0.").append(static_cast<std::size_t>(-decpt), '0').append(digits);
    } else if (static_cast<std::size_t>(decpt) >= digits.size()) {
      out.append(digits).append(static_cast<std::size_t>(decpt) - digits.size(), '0').append(".0");
    } else {
      out.append(digits, 0, static_cast<std::size_t>(decpt)).append(".").append(digits, static_cast<std::size_t>(decpt));
    }
    return out;
  }
  out.append(digits, 0, 1);
  if (digits.size() > 1) out.append(".").append(digits, 1);
  char ebuf[16];
  std::snprintf(ebuf, sizeof(ebuf), "e%c%02d", exp10 < 0 ? '-' : '+', std::abs(exp10));
  return out + ebuf;
}

namespace {

bool python_printable(char32_t c) {
  if (c == ' ') return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO: case UTF8PROC_CATEGORY_CN: case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP: case UTF8PROC_CATEGORY_ZS:
      return false;
    default:
      return true;
  }
}

std::string python_str_repr(const std::string& s) {
  bool has_single = s.find('\'') != std::string::npos;
  bool has_double = s.find('"') != std::string::npos;
  char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, quote);
  for (char32_t c : utf8_decode(s)) {
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x80 ? (c < 0x20 || c == 0x7F) : !python_printable(c)) {
      char buf[16];
      if (c < 0x100) {
        std::snprintf(buf, sizeof(buf), "\\x%02x", static_cast<unsigned>(c));
      } else if (c < 0x10000) {
        std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(c));
      } else {
        std::snprintf(buf, sizeof(buf), "\\U%08x", static_cast<unsigned>(c));
      }
      out += buf;
    } else {
      utf8_append(out, c);
    }
  }
  out.push_back(quote);
  return out;
}

}  // namespace

namespace {

// Python's repr with its recursion guard (a namespace that contains itself
// prints as <Namespace {...}>, like Py_ReprEnter) and a cap on the text:
// shared sub-values can make a small value print exponentially long, so
// printing stops once `cap` bytes are written (the caller's output limit
// then fails the render).
struct Printer {
  std::string& out;
  std::size_t cap;
  std::vector<const Object*> active;  // namespaces being printed
  int level = 0;                      // namespaces can chain arbitrarily deep

  bool full() const { return out.size() > cap; }

  void print(const Value& v, bool quoted) {
    if (full()) return;
    if (level > 1000) {  // where Python would raise RecursionError
      out += "...";
      return;
    }
    ++level;
    print_value(v, quoted);
    --level;
  }

  void print_value(const Value& v, bool quoted) {
    using K = Value::Kind;
    switch (v.kind()) {
      case K::kString:
        if (quoted) out += python_str_repr(v.as_string());
        else out += v.as_string();
        return;
      case K::kArray: {
        if (v.is_iterator()) {
          out += "<generator object>";
          return;
        }
        const bool tuple = v.is_tuple();
        out += tuple ? '(' : '[';
        bool first = true;
        for (const Value& item : v.as_array()) {
          if (full()) return;
          if (!first) out += ", ";
          first = false;
          print(item, true);
        }
        if (tuple && v.as_array().size() == 1) out += ',';
        out += tuple ? ')' : ']';
        return;
      }
      case K::kObject:
        print_dict(v.as_object());
        return;
      case K::kNamespace: {
        const Object* attrs = v.as_namespace().attrs.get();
        out += "<Namespace ";
        if (std::find(active.begin(), active.end(), attrs) != active.end()) {
          out += "{...}";
        } else {
          active.push_back(attrs);
          print_dict(*attrs);
          active.pop_back();
        }
        out += '>';
        return;
      }
      case K::kUndefined:
        if (quoted) out += "Undefined";
        return;
      case K::kNone: out += "None"; return;
      case K::kBool: out += v.as_bool() ? "True" : "False"; return;
      case K::kInt: out += std::to_string(v.as_int()); return;
      case K::kFloat: out += python_float_repr(v.as_float()); return;
      case K::kCallable: out += "<function " + v.as_callable().name + ">"; return;
    }
  }

  void print_dict(const Object& o) {
    out += '{';
    bool first = true;
    for (const auto& [k, item] : o.items) {
      if (full()) return;
      if (!first) out += ", ";
      first = false;
      out += python_str_repr(k);
      out += ": ";
      print(item, true);
    }
    out += '}';
  }
};

}  // namespace

std::string Value::repr(std::size_t cap) const {
  std::string out;
  Printer{out, cap, {}}.print(*this, true);
  return out;
}

std::string Value::to_output(std::size_t cap) const {
  if (is_string()) return as_string();
  std::string out;
  Printer{out, cap, {}}.print(*this, false);
  return out;
}

namespace {

template <class Json>
Value value_from_json(const Json& j, int level, bool* too_deep) {
  if (level > Value::kMaxJsonDepth) {
    if (too_deep != nullptr) *too_deep = true;
    return Value::none();
  }
  switch (j.type()) {
    case nlohmann::json::value_t::null: return Value::none();
    case nlohmann::json::value_t::boolean: return Value(j.template get<bool>());
    case nlohmann::json::value_t::number_integer: return Value(j.template get<std::int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      auto u = j.template get<std::uint64_t>();
      if (u <= static_cast<std::uint64_t>(INT64_MAX)) return Value(static_cast<std::int64_t>(u));
      return Value(static_cast<double>(u));
    }
    case nlohmann::json::value_t::number_float: return Value(j.template get<double>());
    case nlohmann::json::value_t::string: return Value(j.template get<std::string>());
    case nlohmann::json::value_t::array: {
      Array a;
      a.reserve(j.size());
      for (const auto& e : j) a.push_back(value_from_json(e, level + 1, too_deep));
      return Value(std::move(a));
    }
    case nlohmann::json::value_t::object: {
      Object o;
      o.items.reserve(j.size());
      for (auto it = j.begin(); it != j.end(); ++it) o.items.emplace_back(it.key(), value_from_json(it.value(), level + 1, too_deep));
      return Value(std::move(o));
    }
    default: return Value();
  }
}

}  // namespace

Value Value::from_json(const nlohmann::json& j, bool* too_deep) { return value_from_json(j, 0, too_deep); }
Value Value::from_json(const nlohmann::ordered_json& j, bool* too_deep) {
  return value_from_json(j, 0, too_deep);
}

bool values_equal(const Value& a, const Value& b) {
  using K = Value::Kind;
  if (a.is_number() && b.is_number()) {
    if (!a.is_float() && !b.is_float()) {
      auto ia = a.is_int() ? a.as_int() : static_cast<std::int64_t>(a.as_bool());
      auto ib = b.is_int() ? b.as_int() : static_cast<std::int64_t>(b.as_bool());
      return ia == ib;
    }
    return a.as_double() == b.as_double();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case K::kUndefined:
    case K::kNone: return true;
    case K::kString: return a.as_string() == b.as_string();
    case K::kArray: {
      const Array& x = a.as_array();
      const Array& y = b.as_array();
      if (x.size() != y.size()) return false;
      for (std::size_t i = 0; i < x.size(); ++i) {
        if (!values_equal(x[i], y[i])) return false;
      }
      return true;
    }
    case K::kObject: {
      const Object& x = a.as_object();
      const Object& y = b.as_object();
      if (x.items.size() != y.items.size()) return false;
      for (const auto& [k, v] : x.items) {
        const Value* w = y.find(k);
        if (w == nullptr || !values_equal(v, *w)) return false;
      }
      return true;
    }
    case K::kNamespace: return a.as_namespace().attrs == b.as_namespace().attrs;
    case K::kCallable: return &a.as_callable() == &b.as_callable();
    default: return false;
  }
}

Result<int> values_compare(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_int() && b.is_int()) return a.as_int() < b.as_int() ? -1 : (a.as_int() > b.as_int() ? 1 : 0);
    double x = a.as_double(), y = b.as_double();
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  if (a.is_string() && b.is_string()) {
    int c = a.as_string().compare(b.as_string());  // UTF-8 byte order == code point order
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (a.is_array() && b.is_array()) {
    const Array& x = a.as_array();
    const Array& y = b.as_array();
    for (std::size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (values_equal(x[i], y[i])) continue;
      return values_compare(x[i], y[i]);
    }
    return x.size() < y.size() ? -1 : (x.size() > y.size() ? 1 : 0);
  }
  return make_error(ErrorCode::kInvalidArgument, std::string("'<' not supported between instances of '") +
                                                     a.type_name() + "' and '" + b.type_name() + "'");
}

namespace {

void json_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out.push_back('"');
  auto esc_u = [&](unsigned v) {
    char buf[16];
    std::snprintf(buf, sizeof(buf), "\\u%04x", v);
    out += buf;
  };
  auto plain = [&](char32_t c) {
    switch (c) {
      case '"': out += "\\\""; return;
      case '\\': out += "\\\\"; return;
      case '\n': out += "\\n"; return;
      case '\r': out += "\\r"; return;
      case '\t': out += "\\t"; return;
      case '\b': out += "\\b"; return;
      case '\f': out += "\\f"; return;
      default: break;
    }
    if (c < 0x20) {
      esc_u(static_cast<unsigned>(c));
    } else if (ensure_ascii && c >= 0x7F) {
      if (c >= 0x10000) {
        char32_t v = c - 0x10000;
        esc_u(0xD800 + static_cast<unsigned>(v >> 10));
        esc_u(0xDC00 + static_cast<unsigned>(v & 0x3FF));
      } else {
        esc_u(static_cast<unsigned>(c));
      }
    } else {
      utf8_append(out, c);
    }
  };
  if (is_ascii(s)) {
    for (char ch : s) plain(static_cast<char32_t>(static_cast<unsigned char>(ch)));
  } else {
    for (char32_t c : utf8_decode(s)) plain(c);
  }
  out.push_back('"');
}

Status dump(std::string& out, const Value& v, const JsonDumpOptions& o, const std::string& item_sep,
            const std::string& key_sep, int level) {
  if (out.size() > o.max_bytes) return make_error(ErrorCode::kResourceExhausted, "tojson: text exceeds the output limit");
  using K = Value::Kind;
  auto newline = [&](int lvl) {
    if (o.indent < 0) return;
    out.push_back('\n');
    out.append(static_cast<std::size_t>(o.indent) * static_cast<std::size_t>(lvl), ' ');
  };
  if (level > 512) return make_error(ErrorCode::kInvalidArgument, "tojson: value nested too deeply");
  switch (v.kind()) {
    case K::kNone: out += "null"; return ok_status();
    case K::kBool: out += v.as_bool() ? "true" : "false"; return ok_status();
    case K::kInt: out += std::to_string(v.as_int()); return ok_status();
    case K::kFloat: {
      double d = v.as_float();
      if (std::isnan(d)) out += "NaN";
      else if (std::isinf(d)) out += d > 0 ? "Infinity" : "-Infinity";
      else out += python_float_repr(d);
      return ok_status();
    }
    case K::kString: json_string(out, v.as_string(), o.ensure_ascii); return ok_status();
    case K::kArray: {
      const Array& a = v.as_array();
      if (a.empty()) {
        out += "[]";
        return ok_status();
      }
      out.push_back('[');
      for (std::size_t i = 0; i < a.size(); ++i) {
        if (i > 0) out += item_sep;
        newline(level + 1);
        MYRIAD_TRY(dump(out, a[i], o, item_sep, key_sep, level + 1));
      }
      newline(level);
      out.push_back(']');
      return ok_status();
    }
    case K::kObject: {
      const Object& obj = v.as_object();
      if (obj.items.empty()) {
        out += "{}";
        return ok_status();
      }
      std::vector<const std::pair<std::string, Value>*> items;
      for (const auto& kv : obj.items) items.push_back(&kv);
      if (o.sort_keys) {
        std::stable_sort(items.begin(), items.end(), [](auto* x, auto* y) { return x->first < y->first; });
      }
      out.push_back('{');
      for (std::size_t i = 0; i < items.size(); ++i) {
        if (i > 0) out += item_sep;
        newline(level + 1);
        json_string(out, items[i]->first, o.ensure_ascii);
        out += key_sep;
        MYRIAD_TRY(dump(out, items[i]->second, o, item_sep, key_sep, level + 1));
      }
      newline(level);
      out.push_back('}');
      return ok_status();
    }
    default:
      return make_error(ErrorCode::kInvalidArgument,
                        std::string("tojson: Object of type ") + v.type_name() + " is not JSON serializable");
  }
}

}  // namespace

Result<std::string> dump_json(const Value& v, const JsonDumpOptions& options) {
  std::string item_sep = options.item_separator.empty() ? (options.indent < 0 ? ", " : ",") : options.item_separator;
  std::string key_sep = options.key_separator.empty() ? ": " : options.key_separator;
  std::string out;
  MYRIAD_TRY(dump(out, v, options, item_sep, key_sep, 0));
  return out;
}

}  // namespace myriad::jinja
