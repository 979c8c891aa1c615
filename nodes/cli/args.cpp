#include "args.h"

#include <cerrno>
#include <cstdlib>

namespace myriad::cli {

Result<Args> Args::parse(int argc, char** argv, const std::set<std::string>& valued,
                         const std::set<std::string>& switches) {
  Args a;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0) return make_error(ErrorCode::kInvalidArgument, "unexpected argument '" + arg + "'");
    std::string flag = arg.substr(2);
    std::optional<std::string> inline_value;
    if (auto eq = flag.find('='); eq != std::string::npos) {
      inline_value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    }
    if (valued.count(flag)) {
      if (inline_value) {
        a.values_[flag].push_back(*inline_value);
      } else {
        if (i + 1 >= argc) return make_error(ErrorCode::kInvalidArgument, "--" + flag + " needs a value");
        a.values_[flag].push_back(argv[++i]);
      }
    } else if (switches.count(flag) && !inline_value) {
      a.switches_.insert(flag);
    } else {
      return make_error(ErrorCode::kInvalidArgument, "unknown flag --" + flag);
    }
  }
  return a;
}

std::optional<std::string> Args::get(const std::string& flag) const {
  auto it = values_.find(flag);
  if (it == values_.end() || it->second.empty()) return std::nullopt;
  return it->second.back();
}

std::vector<std::string> Args::get_all(const std::string& flag) const {
  auto it = values_.find(flag);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

Result<std::string> Args::require(const std::string& flag) const {
  if (auto v = get(flag)) return *v;
  return make_error(ErrorCode::kInvalidArgument, "--" + flag + " is required");
}

Result<double> Args::get_double(const std::string& flag, double fallback) const {
  auto v = get(flag);
  if (!v) return fallback;
  errno = 0;
  char* end = nullptr;
  const double d = std::strtod(v->c_str(), &end);
  if (errno != 0 || end == v->c_str() || *end != '\0')
    return make_error(ErrorCode::kInvalidArgument, "--" + flag + ": '" + *v + "' is not a number");
  return d;
}

Result<long long> Args::get_int(const std::string& flag, long long fallback) const {
  auto v = get(flag);
  if (!v) return fallback;
  errno = 0;
  char* end = nullptr;
  const long long n = std::strtoll(v->c_str(), &end, 10);
  if (errno != 0 || end == v->c_str() || *end != '\0')
    return make_error(ErrorCode::kInvalidArgument, "--" + flag + ": '" + *v + "' is not an integer");
  return n;
}

Result<std::vector<int32_t>> parse_id_list(const std::string& s) {
  std::vector<int32_t> ids;
  if (s.empty()) return ids;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t comma = s.find(',', start);
    const std::string item = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    errno = 0;
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || errno != 0 || *end != '\0' || v < 0 || v > INT32_MAX)
      return make_error(ErrorCode::kInvalidArgument, "bad token id '" + item + "' in '" + s + "'");
    ids.push_back(int32_t(v));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return ids;
}

Result<std::optional<DType>> kv_cache_dtype(const Args& args) {
  const auto v = args.get("kv-cache-dtype");
  if (!v || *v == "auto") return std::optional<DType>();
  if (const auto d = dtype_from_name(*v)) return d;
  return make_error(ErrorCode::kInvalidArgument,
                    "--kv-cache-dtype: '" + *v + "' is not one of auto, f32, bf16, f16");
}

}  // namespace myriad::cli
