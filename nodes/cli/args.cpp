#include "args.h"

#include <cerrno>
#include <climits>
#include <cstdlib>

namespace myriad::cli {

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

Result<std::optional<DType>> kv_cache_dtype(const std::string& name) {
  if (name == "auto") return std::optional<DType>();
  if (const auto d = dtype_from_name(name)) return d;
  return make_error(ErrorCode::kInvalidArgument,
                    "--kv-cache-dtype: '" + name + "' is not one of auto, f32, bf16, f16");
}

}  // namespace myriad::cli
