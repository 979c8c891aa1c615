// Python methods of str and dict that chat templates call
// (`content.strip()`, `message.get('x')`, `tools.items()`). Mutating methods
// (list.append, dict.update...) are refused, as Jinja's
// ImmutableSandboxedEnvironment refuses them.
#include <algorithm>

#include "runtime/jinja/evaluator.h"
#include "runtime/jinja/text.h"

namespace myriad::jinja {

namespace {

constexpr std::string_view kStrMethods[] = {
    "startswith", "endswith", "split", "rsplit", "strip", "lstrip", "rstrip", "upper", "lower", "title",
    "capitalize", "replace", "find", "rfind", "count", "join", "splitlines", "isdigit", "isalpha", "isalnum",
    "isspace", "isupper", "islower", "removeprefix", "removesuffix"};
constexpr std::string_view kDictMethods[] = {"items", "keys", "values", "get"};

bool in_list(std::string_view name, const std::string_view* begin, const std::string_view* end) {
  return std::find(begin, end, name) != end;
}

Result<const std::string*> opt_str(const Value& v, std::string_view what) {
  if (v.is_undefined() || v.is_none()) return static_cast<const std::string*>(nullptr);
  if (!v.is_string()) return type_error(std::string(what) + " arg must be None or str, not " + v.type_name());
  return &v.as_string();
}

Result<std::int64_t> opt_int(const Value& v, std::int64_t dflt, const char* what) {
  if (v.is_undefined() || v.is_none()) return dflt;
  if (v.is_int()) return v.as_int();
  if (v.is_bool()) return static_cast<std::int64_t>(v.as_bool());
  return type_error(std::string(what) + " must be an integer, not '" + v.type_name() + "'");
}

// startswith/endswith accept a str or a tuple (list) of strs.
Result<bool> affix_match(const std::string& s, const Value& affix, bool prefix) {
  auto one = [&](const Value& a) -> Result<bool> {
    if (!a.is_string()) {
      return type_error(std::string(prefix ? "startswith" : "endswith") +
                        " first arg must be str or a tuple of str, not " + a.type_name());
    }
    const std::string& x = a.as_string();
    if (x.size() > s.size()) return false;
    return prefix ? s.compare(0, x.size(), x) == 0 : s.compare(s.size() - x.size(), x.size(), x) == 0;
  };
  if (affix.is_array()) {
    for (const Value& a : affix.as_array()) {
      bool m;
      JINJA_ASSIGN_OR_RETURN(m, one(a));
      if (m) return true;
    }
    return false;
  }
  return one(affix);
}

template <class Pred>
bool all_chars(const std::string& s, Pred pred) {
  if (s.empty()) return false;
  for (char32_t c : utf8_decode(s)) {
    if (!pred(c)) return false;
  }
  return true;
}

Array strings(std::vector<std::string> parts) {
  Array out;
  out.reserve(parts.size());
  for (auto& p : parts) out.emplace_back(std::move(p));
  return out;
}

Result<Value> str_method(Renderer& r, const std::string& s, std::string_view name, CallArgs& a) {
  if (name == "startswith" || name == "endswith") {
    MYRIAD_TRY(a.bind(name, {"prefix"}));
    bool m;
    JINJA_ASSIGN_OR_RETURN(m, affix_match(s, a.arg(0), name == "startswith"));
    return Value(m);
  }
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    MYRIAD_TRY(a.bind(name, {"chars"}));
    const std::string* chars;
    JINJA_ASSIGN_OR_RETURN(chars, opt_str(a.arg(0), name));
    StripSide side = name == "strip" ? StripSide::kBoth : name == "lstrip" ? StripSide::kLeft : StripSide::kRight;
    return Value(str_strip(s, chars, side));
  }
  if (name == "split" || name == "rsplit") {
    MYRIAD_TRY(a.bind(name, {"sep", "maxsplit"}));
    const std::string* sep;
    JINJA_ASSIGN_OR_RETURN(sep, opt_str(a.arg(0), "split"));
    std::int64_t maxsplit;
    JINJA_ASSIGN_OR_RETURN(maxsplit, opt_int(a.arg(1), -1, "maxsplit"));
    if (sep != nullptr && sep->empty()) return type_error("empty separator");
    if (name == "rsplit" && maxsplit >= 0) {
      // rsplit with a limit: split the reversed string from the left.
      if (sep == nullptr) return make_error(ErrorCode::kUnsupported, "rsplit(None, maxsplit) is not supported");
      std::vector<std::string> parts;
      std::size_t end = s.size();
      while (static_cast<std::int64_t>(parts.size()) < maxsplit) {
        if (end < sep->size()) break;
        std::size_t hit = s.rfind(*sep, end - sep->size());
        if (hit == std::string::npos) break;
        parts.push_back(s.substr(hit + sep->size(), end - hit - sep->size()));
        end = hit;
      }
      parts.push_back(s.substr(0, end));
      std::reverse(parts.begin(), parts.end());
      return Value(strings(std::move(parts)));
    }
    auto parts = str_split(s, sep, maxsplit);
    MYRIAD_TRY(r.count_iterations(parts.size()));
    return Value(strings(std::move(parts)));
  }
  if (name == "splitlines") {
    MYRIAD_TRY(a.bind(name, {}));
    std::vector<std::string> parts;
    std::size_t start = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
      if (s[i] != '\n' && s[i] != '\r') continue;
      parts.push_back(s.substr(start, i - start));
      if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
      start = i + 1;
    }
    if (start < s.size()) parts.push_back(s.substr(start));
    return Value(strings(std::move(parts)));
  }
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
    MYRIAD_TRY(a.bind(name, {}));
    if (name == "upper") return Value(str_upper(s));
    if (name == "lower") return Value(str_lower(s));
    if (name == "title") return Value(str_title(s));
    return Value(str_capitalize(s));
  }
  if (name == "replace") {
    MYRIAD_TRY(a.bind(name, {"old", "new", "count"}));
    if (!a.arg(0).is_string() || !a.arg(1).is_string()) return type_error("replace() arguments must be str");
    std::int64_t count;
    JINJA_ASSIGN_OR_RETURN(count, opt_int(a.arg(2), -1, "count"));
    std::string out = str_replace(s, a.arg(0).as_string(), a.arg(1).as_string(), count);
    MYRIAD_TRY(r.count_bytes(out.size()));
    return Value(std::move(out));
  }
  if (name == "removeprefix" || name == "removesuffix") {
    MYRIAD_TRY(a.bind(name, {"affix"}));
    if (!a.arg(0).is_string()) return type_error(std::string(name) + "() argument must be str");
    const std::string& x = a.arg(0).as_string();
    bool m;
    JINJA_ASSIGN_OR_RETURN(m, affix_match(s, a.arg(0), name == "removeprefix"));
    if (!m) return Value(s);
    return Value(name == "removeprefix" ? s.substr(x.size()) : s.substr(0, s.size() - x.size()));
  }
  if (name == "find" || name == "rfind" || name == "count") {
    MYRIAD_TRY(a.bind(name, {"sub"}));
    if (!a.arg(0).is_string()) return type_error(std::string(name) + "() argument must be str");
    const std::string& sub = a.arg(0).as_string();
    if (name == "count") {
      if (sub.empty()) return Value(static_cast<std::int64_t>(utf8_length(s) + 1));
      std::int64_t n = 0;
      for (std::size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
      return Value(n);
    }
    std::size_t p = name == "find" ? s.find(sub) : s.rfind(sub);
    if (p == std::string::npos) return Value(std::int64_t{-1});
    return Value(static_cast<std::int64_t>(utf8_length(std::string_view(s).substr(0, p))));  // code points
  }
  if (name == "join") {
    MYRIAD_TRY(a.bind(name, {"iterable"}));
    Array items;
    JINJA_ASSIGN_OR_RETURN(items, iterate(a.arg(0)));
    MYRIAD_TRY(r.count_iterations(items.size()));
    std::string out;
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (!items[i].is_string()) {
        return type_error("sequence item " + std::to_string(i) + ": expected str instance, " + items[i].type_name() +
                          " found");
      }
      if (i > 0) out += s;
      out += items[i].as_string();
      if (out.size() > r.limits().max_output_bytes) MYRIAD_TRY(r.count_bytes(out.size()));
    }
    MYRIAD_TRY(r.count_bytes(out.size()));
    return Value(std::move(out));
  }
  MYRIAD_TRY(a.bind(name, {}));
  if (name == "isdigit") return Value(all_chars(s, [](char32_t c) { return c >= '0' && c <= '9'; }));
  if (name == "isalpha") return Value(all_chars(s, [](char32_t c) { return is_cased_letter(c); }));
  if (name == "isalnum") {
    return Value(all_chars(s, [](char32_t c) { return is_cased_letter(c) || (c >= '0' && c <= '9'); }));
  }
  if (name == "isspace") return Value(all_chars(s, is_python_space));
  bool cased = std::any_of(s.begin(), s.end(), [](char c) { return is_cased_letter(static_cast<unsigned char>(c)); }) ||
               !is_ascii(s);
  if (name == "isupper") return Value(cased && str_upper(s) == s && str_lower(s) != s);
  if (name == "islower") return Value(cased && str_lower(s) == s && str_upper(s) != s);
  return type_error("'str' object has no attribute '" + std::string(name) + "'");
}

Result<Value> dict_method(Renderer& r, const Object& o, std::string_view name, CallArgs& a) {
  if (name == "get") {
    MYRIAD_TRY(a.bind("get", {"key", "default"}));
    const Value& key = a.arg(0);
    if (key.is_string()) {
      if (const Value* v = o.find(key.as_string())) return *v;
    }
    return a.has(1) ? a.arg(1) : Value::none();
  }
  MYRIAD_TRY(a.bind(name, {}));
  MYRIAD_TRY(r.count_iterations(o.items.size()));
  Array out;
  out.reserve(o.items.size());
  for (const auto& [k, v] : o.items) {
    if (name == "items") out.push_back(Value::tuple(Array{Value(k), v}));
    else if (name == "keys") out.emplace_back(k);
    else out.push_back(v);
  }
  return Value(std::move(out));
}

}  // namespace

bool has_method(const Value& self, std::string_view name) {
  if (self.is_string()) return in_list(name, std::begin(kStrMethods), std::end(kStrMethods));
  if (self.is_object()) return in_list(name, std::begin(kDictMethods), std::end(kDictMethods));
  return false;
}

Result<Value> call_method(Renderer& r, const Value& self, std::string_view name, CallArgs& args) {
  if (self.is_string()) return str_method(r, self.as_string(), name, args);
  if (self.is_object() && has_method(self, name)) return dict_method(r, self.as_object(), name, args);
  return type_error(std::string("'") + self.type_name() + "' object has no method '" + std::string(name) + "'");
}

}  // namespace myriad::jinja
