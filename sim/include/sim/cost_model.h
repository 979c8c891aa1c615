// What a step, a slot load and an adapter fetch cost on one device, as a
// linear model of what the step holds. The simulator's executor charges it
// on its virtual clock; bench/sim_calibrate fits its coefficients to the
// real engine on a machine and writes them as JSON (load/save here).
//
//   step_ms  = base_ms
//            + prefill_token_ms  * tokens of prefill rows (prompt chunks)
//            + decode_row_ms     * decode rows (one new token each)
//            + context_ktoken_ms * KV positions the rows attend over / 1000
//            + prefill_pair_mtoken_ms * (query, key) pairs of prefill rows / 10^6 (attention's square)
//            + adapter_ms        * distinct adapter slots the step uses
//            + lora_token_ms     * new tokens of rows that use an adapter, x rank / 16
//   load_ms  = slot_load_base_ms  + slot_load_per_rank_ms * rank    (host memory -> a device slot)
//   fetch_ms = fetch_base_ms      + fetch_per_rank_ms * rank        (store -> host memory, on a host-cache miss)
//
// An empty step (rows waiting for loads) costs nothing.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "runtime/result.h"
#include "runtime/step_plan.h"

namespace myriad::sim {

struct CostModel {
  // The built-in model: sim/cost_models/cpu-llama-110m.json (bench/sim_calibrate
  // on llama-110m bf16, 2 cores; docs/results/2026-12-05-simulator.md).
  std::string name = "builtin: cpu-llama-110m";
  double base_ms = 5.72985;
  double prefill_token_ms = 0.307291;
  double decode_row_ms = 0.394584;
  double context_ktoken_ms = 2.03898;
  double prefill_pair_mtoken_ms = 1045.657598;
  double adapter_ms = 0.733792;
  double lora_token_ms = 0.080157;
  double slot_load_base_ms = 0.0;
  double slot_load_per_rank_ms = 0.309244;
  double fetch_base_ms = 0.0;
  double fetch_per_rank_ms = 0.727614;

  // `adapter_rank(slot)`: the rank of the adapter in a slot (for lora_token_ms).
  template <typename RankOf>
  double step_ms(const StepPlan& plan, RankOf&& adapter_rank) const;
  double load_ms(int rank) const { return slot_load_base_ms + slot_load_per_rank_ms * rank; }
  double fetch_ms(int rank) const { return fetch_base_ms + fetch_per_rank_ms * rank; }
};

// What the model charges for in one step, in the order of its coefficients
// (base, prefill tokens, decode rows, context / 1000, prefill pairs / 10^6,
// distinct adapters, adapter tokens x rank / 16): the simulator prices it,
// bench/sim_calibrate fits to it. `adapter_rank(slot)` gives a slot's rank.
inline constexpr size_t kCostFeatures = 7;
template <typename RankOf>
std::array<double, kCostFeatures> step_features(const StepPlan& plan, RankOf&& adapter_rank);

// The model as JSON (every coefficient by the field's name), and back: a
// missing field keeps its default; an unknown one or a negative value is an
// error naming it.
std::string to_json(const CostModel& m);
Result<CostModel> cost_model_from_json(const std::string& text);
Result<CostModel> load_cost_model(const std::string& path);

template <typename RankOf>
std::array<double, kCostFeatures> step_features(const StepPlan& plan, RankOf&& adapter_rank) {
  double prefill = 0, decode = 0, context = 0, pairs = 0, lora = 0;
  uint64_t slots_seen = 0;  // a bitmask of the first 64 slots, counted below
  int distinct = 0;
  for (const SeqRow& r : plan.rows) {
    if (r.num_tokens == 1 && r.start_pos > 0 && r.sample) {
      decode += 1;
    } else {
      prefill += r.num_tokens;
      pairs += double(r.num_tokens) * r.start_pos + double(r.num_tokens) * (r.num_tokens + 1) / 2.0;
    }
    context += double(r.start_pos) + r.num_tokens;
    for (uint8_t k = 0; k < r.adapters.count; ++k) {
      const int32_t slot = r.adapters.refs[k].slot;
      lora += double(r.num_tokens) * adapter_rank(slot) / 16.0;
      const uint64_t bit = slot >= 0 && slot < 64 ? uint64_t(1) << slot : 0;
      if (bit == 0 || !(slots_seen & bit)) ++distinct;
      slots_seen |= bit;
    }
  }
  return {1.0, prefill, decode, context / 1000.0, pairs / 1e6, double(distinct), lora};
}

template <typename RankOf>
double CostModel::step_ms(const StepPlan& plan, RankOf&& adapter_rank) const {
  if (plan.rows.empty()) return 0.0;
  const auto f = step_features(plan, adapter_rank);
  const double c[kCostFeatures] = {base_ms,          prefill_token_ms, decode_row_ms, context_ktoken_ms,
                                   prefill_pair_mtoken_ms, adapter_ms, lora_token_ms};
  double ms = 0;
  for (size_t i = 0; i < kCostFeatures; ++i) ms += c[i] * f[i];
  return ms;
}

}  // namespace myriad::sim
