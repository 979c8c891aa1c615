// Jinja2's built-in filters (the subset chat templates use), with Python
// semantics; `tojson` is transformers' override (json.dumps with
// ensure_ascii=False, no HTML escaping).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>

#include <utf8proc.h>

#include "runtime/jinja/evaluator.h"
#include "runtime/jinja/text.h"

namespace myriad::jinja {

namespace {

using FilterFn = Result<Value> (*)(Renderer&, const Value&, CallArgs&);

std::string str_of(const Value& v) { return v.is_string() ? v.as_string() : v.to_output(); }

Result<std::size_t> length_of(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return std::size_t{0};
    case Value::Kind::kString: return utf8_length(v.as_string());
    case Value::Kind::kArray: return v.as_array().size();
    case Value::Kind::kObject: return v.as_object().items.size();
    default: return type_error(std::string("object of type '") + v.type_name() + "' has no len()");
  }
}

// Jinja's make_attrgetter: "a.b.0" walks attributes / items.
Value attribute_path(const Value& v, const std::string& path) {
  Value cur = v;
  std::size_t pos = 0;
  while (true) {
    std::size_t dot = path.find('.', pos);
    std::string part = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    if (cur.is_undefined()) return cur;
    bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (numeric && part.size() < 18) {
      cur = get_item(cur, Value(static_cast<std::int64_t>(std::stoll(part))));
    } else {
      cur = get_item(cur, Value(part));
    }
    if (dot == std::string::npos) return cur;
    pos = dot + 1;
  }
}

// Sort key for sort/min/max/unique: lower-cased strings unless case_sensitive.
Value sort_key(const Value& v, const Value& attribute, bool case_sensitive) {
  Value k = attribute.is_undefined() || attribute.is_none() ? v : attribute_path(v, str_of(attribute));
  if (!case_sensitive && k.is_string()) return Value(str_lower(k.as_string()));
  return k;
}

Result<Array> sorted(const Array& items, const Value& attribute, bool case_sensitive, bool reverse) {
  std::vector<std::pair<Value, std::size_t>> keyed;
  keyed.reserve(items.size());
  for (std::size_t i = 0; i < items.size(); ++i) keyed.emplace_back(sort_key(items[i], attribute, case_sensitive), i);
  Error err;
  bool failed = false;
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
    if (failed) return false;
    auto c = reverse ? values_compare(b.first, a.first) : values_compare(a.first, b.first);
    if (!c.ok()) {
      failed = true;
      err = c.error();
      return false;
    }
    return c.value() < 0;
  });
  if (failed) return err;
  Array out;
  out.reserve(items.size());
  for (const auto& kv : keyed) out.push_back(items[kv.second]);
  return out;
}

bool as_bool_arg(const Value& v, bool dflt) { return v.is_undefined() ? dflt : v.truthy(); }

Result<std::int64_t> as_int_arg(const Value& v, std::int64_t dflt, const char* what) {
  if (v.is_undefined() || v.is_none()) return dflt;
  if (v.is_int()) return v.as_int();
  if (v.is_bool()) return static_cast<std::int64_t>(v.as_bool());
  return type_error(std::string(what) + " must be an integer, not '" + v.type_name() + "'");
}

// Python int(str, base) for bases 2..36 (and 0 = from prefix); false if invalid.
bool parse_python_int(std::string s, std::int64_t base, std::int64_t* out) {
  s = str_strip(s, nullptr, StripSide::kBoth);
  std::string clean;
  for (char c : s) {
    if (c != '_') clean.push_back(c);
  }
  if (clean.empty()) return false;
  std::size_t i = 0;
  bool neg = false;
  if (clean[0] == '+' || clean[0] == '-') {
    neg = clean[0] == '-';
    ++i;
  }
  if ((base == 0 || base == 16) && clean.compare(i, 2, "0x") == 0) { i += 2; base = 16; }
  else if ((base == 0 || base == 8) && clean.compare(i, 2, "0o") == 0) { i += 2; base = 8; }
  else if ((base == 0 || base == 2) && clean.compare(i, 2, "0b") == 0) { i += 2; base = 2; }
  if (base == 0) base = 10;
  if (base < 2 || base > 36 || i >= clean.size()) return false;
  std::int64_t v = 0;
  for (; i < clean.size(); ++i) {
    char c = clean[i];
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'z') ? c - 'a' + 10 : (c >= 'A' && c <= 'Z') ? c - 'A' + 10 : 99;
    if (d >= base) return false;
    if (__builtin_mul_overflow(v, base, &v) || __builtin_add_overflow(v, d, &v)) return false;
  }
  *out = neg ? -v : v;
  return true;
}

bool parse_python_float(const std::string& s, double* out) {
  std::string t = str_strip(s, nullptr, StripSide::kBoth);
  if (t.empty()) return false;
  std::string clean;
  for (char c : t) {
    if (c != '_') clean.push_back(c);
  }
  char* end = nullptr;
  double d = std::strtod(clean.c_str(), &end);
  if (end != clean.c_str() + clean.size()) return false;
  *out = d;
  return true;
}

std::vector<std::string> splitlines(const std::string& s) {
  std::vector<std::string> lines;
  std::u32string u = utf8_decode(s);
  std::size_t start = 0;
  for (std::size_t i = 0; i < u.size(); ++i) {
    char32_t c = u[i];
    bool brk = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E ||
               c == 0x85 || c == 0x2028 || c == 0x2029;
    if (!brk) continue;
    lines.push_back(utf8_encode(std::u32string_view(u).substr(start, i - start)));
    if (c == '\r' && i + 1 < u.size() && u[i + 1] == '\n') ++i;
    start = i + 1;
  }
  if (start < u.size()) lines.push_back(utf8_encode(std::u32string_view(u).substr(start)));
  return lines;
}

// ---- the filters ----

Result<Value> f_abs(Renderer&, const Value& v, CallArgs& a) {
  if (v.is_undefined()) return undefined_error(v);  // Undefined.__abs__ raises
  MYRIAD_TRY(a.bind("abs", {}));
  if (v.is_float()) return Value(std::fabs(v.as_float()));
  if (v.is_int()) {
    if (v.as_int() == INT64_MIN) return type_error("integer overflow in abs");
    return Value(v.as_int() < 0 ? -v.as_int() : v.as_int());
  }
  if (v.is_bool()) return Value(static_cast<std::int64_t>(v.as_bool()));
  return type_error(std::string("bad operand type for abs(): '") + v.type_name() + "'");
}

Result<Value> f_attr(Renderer&, const Value& v, CallArgs& a) {
  MYRIAD_TRY(a.bind("attr", {"name"}));
  if (v.is_undefined()) return undefined_error(v);
  return get_attr(v, str_of(a.arg(0)));
}

Result<Value> f_capitalize(Renderer&, const Value& v, CallArgs& a) {
  MYRIAD_TRY(a.bind("capitalize", {}));
  return Value(str_capitalize(str_of(v)));
}

Result<Value> f_center(Renderer&, const Value& v, CallArgs& a) {
  MYRIAD_TRY(a.bind("center", {"width"}));
  std::int64_t width;
  JINJA_ASSIGN_OR_RETURN(width, as_int_arg(a.arg(0), 80, "center width"));
  std::string s = str_of(v);
  auto n = static_cast<std::int64_t>(utf8_length(s));
  if (width <= n) return Value(s);
  if (width > 1'000'000) return make_error(ErrorCode::kResourceExhausted, "center width too large");
  std::int64_t pad = width - n;
  std::int64_t left = pad / 2 + (pad & width & 1);  // CPython's rule
  return Value(std::string(static_cast<std::size_t>(left), ' ') + s +
               std::string(static_cast<std::size_t>(pad - left), ' '));
}

Result<Value> f_default(Renderer&, const Value& v, CallArgs& a) {
  MYRIAD_TRY(a.bind("default", {"default_value", "boolean"}));
  bool boolean = as_bool_arg(a.arg(1), false);
  if (v.is_undefined() || (boolean && !v.truthy())) return a.has(0) ? a.arg(0) : Value(std::string());
  return v;
}

Result<Value> f_dictsort(Renderer&, const Value& v, CallArgs& a) {
  MYRIAD_TRY(a.bind("dictsort", {"case_sensitive", "by", "reverse"}));
  if (!v.is_object()) return type_error("dictsort expects a dict, got '" + std::string(v.type_name()) + "'");
  bool by_value = a.has(1) && str_of(a.arg(1)) == "value";
  Array pairs;
  for (const auto& [k, val] : v.as_object().items) pairs.push_back(Value::tuple(Array{Value(k), val}));
  Value attr(std::string(by_value ? "1" : "0"));
  Array out;
  JINJA_ASSIGN_OR_RETURN(out, sorted(pairs, attr, as_bool_arg(a.arg(0), false), as_bool_arg(a.arg(2), false)));
  return Value(std::move(out));
}

Result<Value> f_escape(Renderer&, const Value& v, CallArgs& a) {
  MYRIAD_TRY(a.bind("escape", {}));
  std::string out;
  for (char c : str_of(v)) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return Value(std::move(out));
}

Result<Value> f_first(Renderer&, const Value& v, CallArgs& a) {
  MYRIAD_TRY(a.bind("first", {}));
  Array items;
  JINJA_ASSIGN_OR_RETURN(items, iterate(v));
  if (items.empty()) return Value::undefined("'No first item, sequence was empty.'");
  return items.front();
}

Result<Value> f_last(Renderer&, const Value& v, CallArgs& a) {
  MYRIAD_TRY(a.bind("last", {}));
  Array items;
  JINJA_ASSIGN_OR_RETURN(items, iterate(v));
  if (items.empty()) return Value::undefined("'No last item, sequence was empty.'");
  return items.back();
}

Result<Value> f_float(Renderer&, const Value& v, CallArgs& a) {
  if (v.is_undefined()) return undefined_error(v);  // Undefined.__float__ raises
  MYRIAD_TRY(a.bind("float", {"default"}));
  Value dflt = a.has(0) ? a.arg(0) : Value(0.0);
  if (v.is_number()) return Value(v.as_double());
  double d;
  if (v.is_string() && parse_python_float(v.as_string(), &d)) return Value(d);
  return dflt;
}

Result<Value> f_int(Renderer&, const Value& v, CallArgs& a) {
  if (v.is_undefined()) return undefined_error(v);  // Undefined.__int__ raises
  MYRIAD_TRY(a.bind("int", {"default", "base"}));
  Value dflt = a.has(0) ? a.arg(0) : Value(0);
  std::int64_t base;
  JINJA_ASSIGN_OR_RETURN(base, as_int_arg(a.arg(1), 10, "int base"));
  if (v.is_int()) return v;
  if (v.is_bool()) return Value(static_cast<std::int64_t>(v.as_bool()));
  if (v.is_float()) {
    double d = std::trunc(v.as_float());
    if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) return dflt;
    return Value(static_cast<std::int64_t>(d));
  }
  if (v.is_string()) {
    std::int64_t i;
    if (parse_python_int(v.as_string(), base, &i)) return Value(i);
    double d;
    if (parse_python_float(v.as_string(), &d) && std::isfinite(d) && std::fabs(d) < 9.2e18) {
      return Value(static_cast<std::int64_t>(std::trunc(d)));
    }
  }
  return dflt;
}

Result<Value> f_indent(Renderer& r, const Value& v, CallArgs& a) {
  if (v.is_undefined()) return undefined_error(v);  // Jinja does `s += "\n"` on it
  MYRIAD_TRY(a.bind("indent", {"width", "first", "blank"}));
  std::string indention;
  if (a.arg(0).is_string()) {
    indention = a.arg(0).as_string();
  } else {
    std::int64_t width;
    JINJA_ASSIGN_OR_RETURN(width, as_int_arg(a.arg(0), 4, "indent width"));
    if (width > 10'000) return make_error(ErrorCode::kResourceExhausted, "indent width too large");
    indention.assign(static_cast<std::size_t>(std::max<std::int64_t>(width, 0)), ' ');
  }
  bool first = as_bool_arg(a.arg(1), false), blank = as_bool_arg(a.arg(2), false);
  std::vector<std::string> lines = splitlines(str_of(v) + "\n");
  MYRIAD_TRY(r.count_iterations(lines.size()));
  std::string out;
  if (blank) {
    for (std::size_t i = 0; i < lines.size(); ++i) {
      if (i > 0) out += "\n" + indention;
      out += lines[i];
    }
  } else if (!lines.empty()) {
    out = lines[0];
    for (std::size_t i = 1; i < lines.size(); ++i) {
      out += "\n";
      if (!lines[i].empty()) out += indention;
      out += lines[i];
    }
  }
  if (first) out = indention + out;
  MYRIAD_TRY(r.count_bytes(out.size()));
  return Value(std::move(out));
}

Result<Value> f_items(Renderer&, const Value& v, CallArgs& a) {
  MYRIAD_TRY(a.bind("items", {}));
  if (v.is_undefined()) return Value::iterator(Array{});
  if (!v.is_object()) return type_error("items filter expects a dict, got '" + std::string(v.type_name()) + "'");
  Array out;
  for (const auto& [k, val] : v.as_object().items) out.push_back(Value::tuple(Array{Value(k), val}));
  return Value::iterator(std::move(out));
}

Result<Value> f_join(Renderer& r, const Value& v, CallArgs& a) {
  MYRIAD_TRY(a.bind("join", {"d", "attribute"}));
  std::string sep = a.has(0) ? str_of(a.arg(0)) : "";
  Array items;
  JINJA_ASSIGN_OR_RETURN(items, iterate(v));
  MYRIAD_TRY(r.count_iterations(items.size()));
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += sep;
    const Value item = a.has(1) && !a.arg(1).is_none() ? attribute_path(items[i], str_of(a.arg(1))) : items[i];
    out += str_of(item);
    if (out.size() > r.limits().max_output_bytes) MYRIAD_TRY(r.count_bytes(out.size()));
  }
  MYRIAD_TRY(r.count_bytes(out.size()));
  return Value(std::move(out));
}

Result<Value> f_length(Renderer&, const Value& v, CallArgs& a) {
  MYRIAD_TRY(a.bind("length", {}));
  std::size_t n;
  JINJA_ASSIGN_OR_RETURN(n, length_of(v));
  return Value(static_cast<std::int64_t>(n));
}

Result<Value> f_list(Renderer& r, const Value& v, CallArgs& a) {
  MYRIAD_TRY(a.bind("list", {}));
  Array items;
  JINJA_ASSIGN_OR_RETURN(items, iterate(v));
  MYRIAD_TRY(r.count_iterations(items.size()));
  return Value(std::move(items));
}

Result<Value> f_lower(Renderer&, const Value& v, CallArgs& a) {
  MYRIAD_TRY(a.bind("lower", {}));
  return Value(str_lower(str_of(v)));
}

Result<Value> f_upper(Renderer&, const Value& v, CallArgs& a) {
  MYRIAD_TRY(a.bind("upper", {}));
  return Value(str_upper(str_of(v)));
}

Result<Value> f_map(Renderer& r, const Value& v, CallArgs& a) {
  Array items;
  JINJA_ASSIGN_OR_RETURN(items, iterate(v));
  MYRIAD_TRY(r.count_iterations(items.size()));
  Array out;
  out.reserve(items.size());
  const Value* attribute = nullptr;
  const Value* dflt = nullptr;
  for (const auto& [k, val] : a.keyword) {
    if (k == "attribute") attribute = &val;
    else if (k == "default") dflt = &val;
  }
  if (attribute != nullptr) {
    if (!a.positional.empty() || a.keyword.size() > (dflt ? 2u : 1u)) {
      return type_error("map(attribute=...) takes only 'attribute' and 'default'");
    }
    for (const Value& item : items) {
      Value x = attribute_path(item, str_of(*attribute));
      out.push_back(x.is_undefined() && dflt != nullptr ? *dflt : x);
    }
    return Value::iterator(std::move(out));
  }
  if (a.positional.empty()) return type_error("map requires a filter name or attribute=");
  std::string filter = str_of(a.positional[0]);
  for (const Value& item : items) {
    CallArgs inner;
    inner.positional.assign(a.positional.begin() + 1, a.positional.end());
    inner.keyword = a.keyword;
    Value x;
    JINJA_ASSIGN_OR_RETURN(x, apply_filter(r, filter, item, inner));
    out.push_back(std::move(x));
  }
  return Value::iterator(std::move(out));
}

Result<Value> min_max(Renderer&, const Value& v, CallArgs& a, bool want_max) {
  MYRIAD_TRY(a.bind(want_max ? "max" : "min", {"case_sensitive", "attribute"}));
  Array items;
  JINJA_ASSIGN_OR_RETURN(items, iterate(v));
  if (items.empty()) return Value::undefined(std::string("'No aggregated item, sequence was empty.'"));
  bool cs = as_bool_arg(a.arg(0), false);
  std::size_t best = 0;
  Value best_key = sort_key(items[0], a.arg(1), cs);
  for (std::size_t i = 1; i < items.size(); ++i) {
    Value k = sort_key(items[i], a.arg(1), cs);
    int c;
    JINJA_ASSIGN_OR_RETURN(c, values_compare(k, best_key));
    if (want_max ? c > 0 : c < 0) {
      best = i;
      best_key = std::move(k);
    }
  }
  return items[best];
}
Result<Value> f_max(Renderer& r, const Value& v, CallArgs& a) { return min_max(r, v, a, true); }
Result<Value> f_min(Renderer& r, const Value& v, CallArgs& a) { return min_max(r, v, a, false); }

// select / reject / selectattr / rejectattr
Result<Value> select_impl(Renderer& r, const Value& v, CallArgs& a, bool with_attr, bool keep_if) {
  Array items;
  JINJA_ASSIGN_OR_RETURN(items, iterate(v));
  MYRIAD_TRY(r.count_iterations(items.size()));
  if (!a.keyword.empty()) return type_error("select/reject filters take positional arguments only");
  std::size_t next = 0;
  std::string attr;
  if (with_attr) {
    if (a.positional.empty()) return type_error("selectattr/rejectattr need an attribute name");
    attr = str_of(a.positional[next++]);
  }
  std::string test;
  if (next < a.positional.size()) test = str_of(a.positional[next++]);
  Array out;
  for (const Value& item : items) {
    Value subject = with_attr ? attribute_path(item, attr) : item;
    bool pass;
    if (test.empty()) {
      pass = subject.truthy();
    } else {
      CallArgs inner;
      inner.positional.assign(a.positional.begin() + static_cast<std::ptrdiff_t>(next), a.positional.end());
      JINJA_ASSIGN_OR_RETURN(pass, apply_test(r, test, subject, inner));
    }
    if (pass == keep_if) out.push_back(item);
  }
  return Value::iterator(std::move(out));
}
Result<Value> f_select(Renderer& r, const Value& v, CallArgs& a) { return select_impl(r, v, a, false, true); }
Result<Value> f_reject(Renderer& r, const Value& v, CallArgs& a) { return select_impl(r, v, a, false, false); }
Result<Value> f_selectattr(Renderer& r, const Value& v, CallArgs& a) { return select_impl(r, v, a, true, true); }
Result<Value> f_rejectattr(Renderer& r, const Value& v, CallArgs& a) { return select_impl(r, v, a, true, false); }

Result<Value> f_replace(Renderer& r, const Value& v, CallArgs& a) {
  MYRIAD_TRY(a.bind("replace", {"old", "new", "count"}));
  std::int64_t count;
  JINJA_ASSIGN_OR_RETURN(count, as_int_arg(a.arg(2), -1, "replace count"));
  std::string s = str_of(v), from = str_of(a.arg(0)), to = str_of(a.arg(1));
  if (!to.empty()) {  // bound the result before building it
    std::size_t hits = from.empty() ? utf8_length(s) + 1 : 0;
    for (std::size_t p = from.empty() ? std::string::npos : s.find(from); p != std::string::npos; p = s.find(from, p + from.size())) ++hits;
    MYRIAD_TRY(r.count_bytes(s.size() + hits * to.size()));
  }
  return Value(str_replace(s, from, to, count));
}

Result<Value> f_reverse(Renderer& r, const Value& v, CallArgs& a) {
  MYRIAD_TRY(a.bind("reverse", {}));
  if (v.is_string()) {
    std::u32string u = utf8_decode(v.as_string());
    std::reverse(u.begin(), u.end());
    return Value(utf8_encode(u));
  }
  Array items;
  JINJA_ASSIGN_OR_RETURN(items, iterate(v));
  MYRIAD_TRY(r.count_iterations(items.size()));
  std::reverse(items.begin(), items.end());
  return Value::iterator(std::move(items));  // Python's reversed()
}

Result<Value> f_round(Renderer&, const Value& v, CallArgs& a) {
  if (v.is_undefined()) return undefined_error(v);  // Undefined.__round__ raises
  MYRIAD_TRY(a.bind("round", {"precision", "method"}));
  std::int64_t precision;
  JINJA_ASSIGN_OR_RETURN(precision, as_int_arg(a.arg(0), 0, "round precision"));
  std::string method = a.has(1) ? str_of(a.arg(1)) : "common";
  if (!v.is_number()) return type_error(std::string("round expects a number, got '") + v.type_name() + "'");
  if (precision < -300 || precision > 300) return type_error("round precision out of range");
  double x = v.as_double(), scale = std::pow(10.0, static_cast<double>(precision));
  double rounded;
  if (method == "common") rounded = std::nearbyint(x * scale) / scale;  // Python round(): half to even
  else if (method == "floor") rounded = std::floor(x * scale) / scale;
  else if (method == "ceil") rounded = std::ceil(x * scale) / scale;
  else return type_error("round method must be 'common', 'ceil' or 'floor'");
  if (method == "common" && !v.is_float()) return Value(static_cast<std::int64_t>(rounded));
  return Value(rounded);
}

Result<Value> f_string(Renderer&, const Value& v, CallArgs& a) {
  MYRIAD_TRY(a.bind("string", {}));
  return Value(str_of(v));
}

Result<Value> f_safe(Renderer&, const Value& v, CallArgs& a) {
  MYRIAD_TRY(a.bind("safe", {}));
  return v;  // autoescape is off in chat templates: nothing to mark
}

Result<Value> f_sort(Renderer& r, const Value& v, CallArgs& a) {
  MYRIAD_TRY(a.bind("sort", {"reverse", "case_sensitive", "attribute"}));
  Array items;
  JINJA_ASSIGN_OR_RETURN(items, iterate(v));
  MYRIAD_TRY(r.count_iterations(items.size()));
  Array out;
  JINJA_ASSIGN_OR_RETURN(out, sorted(items, a.arg(2), as_bool_arg(a.arg(1), false), as_bool_arg(a.arg(0), false)));
  return Value(std::move(out));
}

Result<Value> f_sum(Renderer& r, const Value& v, CallArgs& a) {
  MYRIAD_TRY(a.bind("sum", {"attribute", "start"}));
  Array items;
  JINJA_ASSIGN_OR_RETURN(items, iterate(v));
  MYRIAD_TRY(r.count_iterations(items.size()));
  Value total = a.has(1) ? a.arg(1) : Value(0);
  for (const Value& item : items) {
    Value x = a.has(0) ? attribute_path(item, str_of(a.arg(0))) : item;
    JINJA_ASSIGN_OR_RETURN(total, binary_op(r, "+", total, x));
  }
  return total;
}

Result<Value> f_title(Renderer&, const Value& v, CallArgs& a) {
  MYRIAD_TRY(a.bind("title", {}));
  return Value(jinja_title(str_of(v)));
}

Result<Value> f_tojson(Renderer& r, const Value& v, CallArgs& a) {
  MYRIAD_TRY(a.bind("tojson", {"ensure_ascii", "indent", "separators", "sort_keys"}));
  JsonDumpOptions o;
  o.ensure_ascii = as_bool_arg(a.arg(0), false);
  if (a.has(1) && !a.arg(1).is_none()) {
    std::int64_t indent;
    JINJA_ASSIGN_OR_RETURN(indent, as_int_arg(a.arg(1), -1, "tojson indent"));
    if (indent > 1000) return make_error(ErrorCode::kResourceExhausted, "tojson indent too large");
    o.indent = static_cast<int>(std::max<std::int64_t>(indent, 0));
  }
  if (a.has(2) && !a.arg(2).is_none()) {
    const Value& sep = a.arg(2);
    if (!sep.is_array() || sep.as_array().size() != 2 || !sep.as_array()[0].is_string() ||
        !sep.as_array()[1].is_string()) {
      return type_error("tojson separators must be a pair of strings");
    }
    o.item_separator = sep.as_array()[0].as_string();
    o.key_separator = sep.as_array()[1].as_string();
    if (o.item_separator.empty() || o.key_separator.empty()) {
      return make_error(ErrorCode::kUnsupported, "tojson separators must not be empty");
    }
  }
  o.sort_keys = as_bool_arg(a.arg(3), false);
  o.max_bytes = r.limits().max_output_bytes;
  std::string s;
  JINJA_ASSIGN_OR_RETURN(s, dump_json(v, o));
  MYRIAD_TRY(r.count_bytes(s.size()));
  return Value(std::move(s));
}

Result<Value> f_trim(Renderer&, const Value& v, CallArgs& a) {
  MYRIAD_TRY(a.bind("trim", {"chars"}));
  if (a.has(0) && !a.arg(0).is_none()) {
    std::string chars = str_of(a.arg(0));
    return Value(str_strip(str_of(v), &chars, StripSide::kBoth));
  }
  return Value(str_strip(str_of(v), nullptr, StripSide::kBoth));
}

Result<Value> f_unique(Renderer& r, const Value& v, CallArgs& a) {
  MYRIAD_TRY(a.bind("unique", {"case_sensitive", "attribute"}));
  Array items;
  JINJA_ASSIGN_OR_RETURN(items, iterate(v));
  MYRIAD_TRY(r.count_iterations(items.size() * std::max<std::size_t>(items.size() / 64, 1)));
  bool cs = as_bool_arg(a.arg(0), false);
  Array out, seen;
  for (const Value& item : items) {
    Value k = sort_key(item, a.arg(1), cs);
    bool dup = std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return values_equal(s, k); });
    if (dup) continue;
    seen.push_back(std::move(k));
    out.push_back(item);
  }
  return Value::iterator(std::move(out));
}

Result<Value> f_wordcount(Renderer&, const Value& v, CallArgs& a) {
  MYRIAD_TRY(a.bind("wordcount", {}));
  std::int64_t words = 0;
  bool in_word = false;
  for (char32_t c : utf8_decode(str_of(v))) {  // Python's \w+
    auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
    bool w = c == '_' || (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
             (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO);
    if (w && !in_word) ++words;
    in_word = w;
  }
  return Value(words);
}

struct FilterEntry {
  std::string_view name;
  FilterFn fn;
};

constexpr FilterEntry kFilters[] = {
    {"abs", f_abs},         {"attr", f_attr},           {"capitalize", f_capitalize},
    {"center", f_center},   {"count", f_length},        {"d", f_default},
    {"default", f_default}, {"dictsort", f_dictsort},   {"e", f_escape},
    {"escape", f_escape},   {"first", f_first},         {"float", f_float},
    {"indent", f_indent},   {"int", f_int},             {"items", f_items},
    {"join", f_join},       {"last", f_last},           {"length", f_length},
    {"list", f_list},       {"lower", f_lower},         {"map", f_map},
    {"max", f_max},         {"min", f_min},             {"reject", f_reject},
    {"rejectattr", f_rejectattr}, {"replace", f_replace}, {"reverse", f_reverse},
    {"round", f_round},     {"safe", f_safe},           {"select", f_select},
    {"selectattr", f_selectattr}, {"sort", f_sort},     {"string", f_string},
    {"sum", f_sum},         {"title", f_title},         {"tojson", f_tojson},
    {"trim", f_trim},       {"unique", f_unique},       {"upper", f_upper},
    {"wordcount", f_wordcount},
};

}  // namespace

bool is_filter_name(std::string_view name) {
  for (const auto& f : kFilters) {
    if (f.name == name) return true;
  }
  return false;
}

Result<Value> apply_filter(Renderer& r, std::string_view name, const Value& input, CallArgs& args) {
  for (const auto& f : kFilters) {
    if (f.name == name) return f.fn(r, input, args);
  }
  return make_error(ErrorCode::kUnsupported, "no filter named '" + std::string(name) + "'");
}

}  // namespace myriad::jinja
