// What every executor checks before it runs a plan, written once: row
// ranges inside the plan's arrays, token ids inside the vocabulary, block
// tables covering the positions and inside the pool, penalty histories,
// sampling parameters, adapter slots in range and loaded, and the step's
// capacity (ExecutorInfo's limits). Also the logits layout every backend
// follows. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "runtime/executor.h"
#include "runtime/result.h"
#include "runtime/sampling_params.h"
#include "runtime/step_plan.h"

namespace myriad {

// kInvalidArgument naming the parameter and its value.
Status check_sampling_params(const SamplingParams& p);

// kInvalidArgument naming the row ("plan row i (seq s): ...") or
// kResourceExhausted naming the exceeded capacity. `slot_ready(s)` says
// whether slot s (in [0, info.num_adapter_slots)) may be used.
Status validate_plan(const StepPlan& plan, const ExecutorInfo& info, const std::function<bool(int32_t)>& slot_ready);

// The token positions (indices into the step's concatenated new tokens)
// whose logits the step computes, in row order: every position of a kAll
// row, else the last position of a row that samples or asks for kLast. A
// row's sampled token comes from its last such position.
void logits_positions(const StepPlan& plan, std::vector<int64_t>& out);

// The logits rows a plan returns to the engine (kAll: the row's tokens,
// kLast: 1), which ExecutorInfo::max_logits_rows bounds.
size_t returned_logits_rows(const StepPlan& plan);

}  // namespace myriad
