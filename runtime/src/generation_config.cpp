// generation_config.json: optional sampling defaults. Absent file -> defaults;
// a malformed one is an error naming the file and field.
#include "runtime/generation_config.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "json_depth.h"

namespace myriad {

namespace {

using json = nlohmann::json;

Error bad(const std::string& source, const std::string& field, const json& v, const std::string& what) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 80) + "...";
  return make_error(ErrorCode::kBadFile, source + ": field '" + field + "' = " + s + " " + what);
}

bool as_id(const json& v, int64_t* out) {
  if (!v.is_number_integer()) return false;  // also true for unsigned
  if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX)) return false;
  *out = v.get<int64_t>();
  return *out >= 0;
}

}  // namespace

Result<GenerationConfig> parse_generation_config(std::string_view text, const std::string& source) {
  if (json_too_deep(text))
    return make_error(ErrorCode::kBadFile, source + ": JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return make_error(ErrorCode::kBadFile, source + ": not valid JSON");
  if (!j.is_object()) return make_error(ErrorCode::kBadFile, source + ": not a JSON object");
  GenerationConfig g;
  auto number = [&](const char* field, double lo, double hi, std::optional<float>* out) -> Status {
    auto it = j.find(field);
    if (it == j.end() || it->is_null()) return ok_status();
    if (!it->is_number()) return bad(source, field, *it, "is not a number");
    const double d = it->get<double>();
    if (!(d >= lo && d <= hi)) return bad(source, field, *it, "is out of range");
    *out = float(d);
    return ok_status();
  };
  MYRIAD_TRY(number("temperature", 0.0, 1e4, &g.temperature));
  MYRIAD_TRY(number("top_p", 0.0, 1.0, &g.top_p));
  MYRIAD_TRY(number("repetition_penalty", 1e-4, 1e4, &g.repetition_penalty));
  if (auto it = j.find("top_k"); it != j.end() && !it->is_null()) {
    int64_t k = 0;
    if (!as_id(*it, &k) || k > (1 << 30)) return bad(source, "top_k", *it, "is not a non-negative integer");
    g.top_k = int(k);
  }
  if (auto it = j.find("bos_token_id"); it != j.end() && !it->is_null()) {
    int64_t id = 0;
    if (!as_id(*it, &id)) return bad(source, "bos_token_id", *it, "is not a token id");
    g.bos_token_id = id;
  }
  if (auto it = j.find("eos_token_id"); it != j.end() && !it->is_null()) {
    if (it->is_array()) {
      for (const json& e : *it) {
        int64_t id = 0;
        if (!as_id(e, &id)) return bad(source, "eos_token_id", *it, "holds a value that is not a token id");
        g.eos_token_ids.push_back(id);
      }
    } else {
      int64_t id = 0;
      if (!as_id(*it, &id)) return bad(source, "eos_token_id", *it, "is not a token id");
      g.eos_token_ids.push_back(id);
    }
  }
  return g;
}

Result<GenerationConfig> load_generation_config(const std::string& model_dir) {
  const std::string path = model_dir + "/generation_config.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) return GenerationConfig{};
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return make_error(ErrorCode::kIo, path + ": read failed");
  return parse_generation_config(ss.str(), path);
}

}  // namespace myriad
