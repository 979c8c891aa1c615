#include "runtime/engine_metrics.h"

#include <nlohmann/json.hpp>

namespace myriad {

std::string adapter_metrics_name(const std::vector<AdapterUse>& adapters) {
  std::string name;
  for (const AdapterUse& a : adapters) {
    if (!name.empty()) name += '+';
    name += a.id.qualified_name();
  }
  return name;
}

namespace {
nlohmann::json hist_json(const LatencyHistogram& h) {
  return {{"count", h.count()},          {"mean", h.mean_ms()},         {"min", h.min_ms()},
          {"p50", h.quantile_ms(0.50)},  {"p90", h.quantile_ms(0.90)},  {"p99", h.quantile_ms(0.99)},
          {"max", h.max_ms()}};
}

nlohmann::json request_json(const RequestMetrics& m) {
  return {{"ttft_ms", hist_json(m.ttft_ms)}, {"itl_ms", hist_json(m.itl_ms)},
          {"queue_ms", hist_json(m.queue_ms)}, {"e2e_ms", hist_json(m.e2e_ms)},
          {"submitted", m.submitted},        {"rejected", m.rejected},
          {"finished", m.finished},          {"cancelled", m.cancelled},
          {"deadline", m.deadline},          {"failed", m.failed},
          {"output_tokens", m.output_tokens}};
}
}  // namespace

std::string EngineMetrics::to_json() const {
  nlohmann::json j;
  j["overall"] = request_json(overall);
  nlohmann::json per = nlohmann::json::object();
  for (const auto& [name, m] : per_adapter) per[name.empty() ? "(base)" : name] = request_json(m);
  j["per_adapter"] = per;
  j["steps"] = steps;
  j["step_failures"] = step_failures;
  j["swaps"] = swaps;
  j["slot_loads"] = slot_loads;
  j["load_failures"] = load_failures;
  j["evictions"] = evictions;
  j["preemptions"] = preemptions;
  j["slot_load_ms"] = hist_json(slot_load_ms);
  j["step_device_ms"] = hist_json(step_device_ms);
  j["step_plan_ms"] = hist_json(step_plan_ms);
  j["step_complete_ms"] = hist_json(step_complete_ms);
  j["batch_occupancy"] = batch_occupancy();
  j["token_occupancy"] = token_occupancy();
  return j.dump();
}

}  // namespace myriad
