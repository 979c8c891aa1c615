#include "sim/cost_model.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>
#include <vector>

namespace myriad::sim {
namespace {

std::vector<std::pair<const char*, double CostModel::*>> coefficients() {
  return {{"base_ms", &CostModel::base_ms},
          {"prefill_token_ms", &CostModel::prefill_token_ms},
          {"decode_row_ms", &CostModel::decode_row_ms},
          {"context_ktoken_ms", &CostModel::context_ktoken_ms},
          {"prefill_pair_mtoken_ms", &CostModel::prefill_pair_mtoken_ms},
          {"adapter_ms", &CostModel::adapter_ms},
          {"lora_token_ms", &CostModel::lora_token_ms},
          {"slot_load_base_ms", &CostModel::slot_load_base_ms},
          {"slot_load_per_rank_ms", &CostModel::slot_load_per_rank_ms},
          {"fetch_base_ms", &CostModel::fetch_base_ms},
          {"fetch_per_rank_ms", &CostModel::fetch_per_rank_ms}};
}

}  // namespace

std::string to_json(const CostModel& m) {
  nlohmann::ordered_json j;
  j["name"] = m.name;
  for (const auto& [key, field] : coefficients()) j[key] = m.*field;
  return j.dump(2) + "\n";
}

Result<CostModel> cost_model_from_json(const std::string& text) {
  auto bad = [](std::string msg) { return make_error(ErrorCode::kInvalidArgument, "cost model: " + std::move(msg)); };
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return bad("not a JSON object");
  CostModel m;
  for (const auto& [key, value] : j.items()) {
    if (key == "name") {
      if (!value.is_string()) return bad("\"name\" is not a string");
      m.name = value.get<std::string>();
      continue;
    }
    bool known = false;
    for (const auto& [name, field] : coefficients()) {
      if (key != name) continue;
      known = true;
      if (!value.is_number() || value.get<double>() < 0.0) return bad("\"" + key + "\" must be a number >= 0");
      m.*field = value.get<double>();
    }
    if (!known) return bad("unknown field \"" + key + "\"");
  }
  return m;
}

Result<CostModel> load_cost_model(const std::string& path) {
  std::ifstream in(path);
  if (!in) return make_error(ErrorCode::kNotFound, "cannot open cost model " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto m = cost_model_from_json(ss.str());
  if (!m) return make_error(m.error().code, path + ": " + m.error().message);
  return m;
}

}  // namespace myriad::sim
