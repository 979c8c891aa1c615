// Minimal `--flag value` / `--flag` / repeated-flag parser for the CLI.
// Unknown flags are errors that name the flag.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "runtime/dtype.h"
#include "runtime/result.h"

namespace myriad::cli {

class Args {
 public:
  // `valued`: flags that take a value; `switches`: flags that do not.
  static Result<Args> parse(int argc, char** argv, const std::set<std::string>& valued,
                            const std::set<std::string>& switches);

  bool has(const std::string& flag) const { return values_.count(flag) || switches_.count(flag); }
  std::optional<std::string> get(const std::string& flag) const;
  std::vector<std::string> get_all(const std::string& flag) const;
  Result<std::string> require(const std::string& flag) const;
  Result<double> get_double(const std::string& flag, double fallback) const;
  Result<long long> get_int(const std::string& flag, long long fallback) const;

 private:
  std::map<std::string, std::vector<std::string>> values_;
  std::set<std::string> switches_;
};

// "1,2,3" -> {1, 2, 3}; errors name the bad element.
Result<std::vector<int32_t>> parse_id_list(const std::string& s);

// --kv-cache-dtype (vLLM's flag): absent or "auto" -> nullopt (the model's
// weight dtype); "f32"/"float32", "bf16"/"bfloat16", "f16"/"float16".
Result<std::optional<DType>> kv_cache_dtype(const Args& args);

}  // namespace myriad::cli
