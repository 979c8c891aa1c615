// Global functions of the chat-template environment: Jinja's range,
// namespace and dict, and transformers' raise_exception and strftime_now.
#include <ctime>

#include "runtime/jinja/evaluator.h"

namespace myriad::jinja {

namespace {

constexpr std::string_view kGlobals[] = {"range", "namespace", "dict", "raise_exception", "strftime_now"};

Result<std::int64_t> int_arg(const Value& v, const char* what) {
  if (v.is_int()) return v.as_int();
  if (v.is_bool()) return static_cast<std::int64_t>(v.as_bool());
  return type_error(std::string(what) + ": '" + v.type_name() + "' object cannot be interpreted as an integer");
}

Result<Value> g_range(Renderer& r, CallArgs& a) {
  if (!a.keyword.empty()) return type_error("range() takes no keyword arguments");
  std::int64_t start = 0, stop = 0, step = 1;
  switch (a.positional.size()) {
    case 1: {
      JINJA_ASSIGN_OR_RETURN(stop, int_arg(a.positional[0], "range"));
      break;
    }
    case 2:
    case 3: {
      JINJA_ASSIGN_OR_RETURN(start, int_arg(a.positional[0], "range"));
      JINJA_ASSIGN_OR_RETURN(stop, int_arg(a.positional[1], "range"));
      if (a.positional.size() == 3) {
        JINJA_ASSIGN_OR_RETURN(step, int_arg(a.positional[2], "range"));
      }
      break;
    }
    default:
      return type_error("range expected 1 to 3 arguments, got " + std::to_string(a.positional.size()));
  }
  if (step == 0) return type_error("range() arg 3 must not be zero");
  // Count before building: range(10**12) must fail fast, not allocate.
  __int128 span = step > 0 ? static_cast<__int128>(stop) - start : static_cast<__int128>(start) - stop;
  __int128 n128 = span <= 0 ? 0 : (span + (step > 0 ? step : -step) - 1) / (step > 0 ? step : -step);
  if (n128 > static_cast<__int128>(r.limits().max_loop_iterations)) {
    return make_error(ErrorCode::kResourceExhausted, "range() of more than " +
                                                         std::to_string(r.limits().max_loop_iterations) + " items");
  }
  auto n = static_cast<std::int64_t>(n128);
  MYRIAD_TRY(r.count_iterations(static_cast<std::uint64_t>(n)));
  Array out;
  out.reserve(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) out.emplace_back(start + i * step);
  return Value(std::move(out));
}

Result<Object> kwargs_object(CallArgs& a, const char* what) {
  Object o;
  for (const Value& p : a.positional) {  // namespace({...}) / dict({...}) copy a mapping
    if (!p.is_object()) return type_error(std::string(what) + "() positional argument must be a dict");
    for (const auto& [k, v] : p.as_object().items) o.set(k, v);
  }
  for (const auto& [k, v] : a.keyword) o.set(k, v);
  return o;
}

Result<Value> g_namespace(Renderer& r, CallArgs& a) {
  Object o;
  JINJA_ASSIGN_OR_RETURN(o, kwargs_object(a, "namespace"));
  for (const auto& kv : o.items) MYRIAD_TRY(r.check_depth(kv.second));
  auto attrs = std::make_shared<Object>(std::move(o));
  r.track_namespace(attrs);
  return Value(Namespace{std::move(attrs)});
}

Result<Value> g_dict(Renderer&, CallArgs& a) {
  Object o;
  JINJA_ASSIGN_OR_RETURN(o, kwargs_object(a, "dict"));
  return Value(std::move(o));
}

Result<Value> g_raise_exception(Renderer&, CallArgs& a) {
  MYRIAD_TRY(a.bind("raise_exception", {"message"}));
  return make_error(ErrorCode::kInvalidArgument, "raise_exception: " + a.arg(0).to_output());
}

Result<Value> g_strftime_now(Renderer&, CallArgs& a) {
  MYRIAD_TRY(a.bind("strftime_now", {"format"}));
  if (!a.arg(0).is_string()) return type_error("strftime_now() argument must be str");
  const std::string& fmt = a.arg(0).as_string();
  if (fmt.size() > 256) return type_error("strftime_now() format too long");
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[1024];
  std::size_t n = std::strftime(buf, sizeof(buf), fmt.c_str(), &tm);
  if (n == 0 && !fmt.empty()) return type_error("strftime_now(): result too long or empty");
  return Value(std::string(buf, n));
}

}  // namespace

bool is_global(std::string_view name) {
  for (auto g : kGlobals) {
    if (g == name) return true;
  }
  return false;
}

Result<Value> call_global(Renderer& r, std::string_view name, CallArgs& args) {
  if (name == "range") return g_range(r, args);
  if (name == "namespace") return g_namespace(r, args);
  if (name == "dict") return g_dict(r, args);
  if (name == "raise_exception") return g_raise_exception(r, args);
  if (name == "strftime_now") return g_strftime_now(r, args);
  return type_error("no global function '" + std::string(name) + "'");
}

}  // namespace myriad::jinja
