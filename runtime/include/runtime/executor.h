// The seam between the engine (runtime/) and a device (gpu/cpu, gpu/cuda, or
// the simulator's cost model): "run this step plan, return the sampled
// tokens; load this adapter into slot s".
//
// Not thread-safe: one engine thread drives one executor. An adapter load
// may complete in the background; a slot's rows may run only once
// adapter_ready(slot) is true.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "runtime/lora_weights.h"
#include "runtime/result.h"
#include "runtime/step_plan.h"

namespace myriad {

struct ExecutorInfo {
  std::string device;        // e.g. "cpu (2 threads, avx2)" or "NVIDIA H100 (sm_90)"
  int32_t vocab_size = 0;
  int32_t kv_block_size = 16;    // tokens per KV block
  int32_t kv_num_blocks = 0;     // blocks in the preallocated pool
  int32_t num_adapter_slots = 0;
  int32_t max_adapter_rank = 0;
  // Capacity of one step (0 = no limit): a plan beyond them is refused by
  // step(), so Engine::create refuses a configuration that could plan one.
  int32_t max_tokens_per_step = 0;  // sum of the rows' new tokens
  int32_t max_rows = 0;             // rows (sequences) in one plan
  int32_t max_logits_rows = 0;      // logits positions returned (kLast: 1 a row, kAll: its tokens)
};

class Executor {
 public:
  virtual ~Executor() = default;

  virtual const ExecutorInfo& info() const = 0;

  // Runs one forward step over all rows and samples where rows ask.
  // `out` is cleared and refilled (its capacity is reused across steps).
  virtual Status step(const StepPlan& plan, StepResult& out) = 0;

  // Starts copying `weights` into `slot`; returns at once. Fails (changing
  // nothing) if the slot is out of range, busy, or the adapter does not fit.
  virtual Status begin_load_adapter(int32_t slot, std::shared_ptr<const LoraWeights> weights) = 0;
  // True once the load into `slot` has finished (successfully).
  virtual bool adapter_ready(int32_t slot) = 0;
  // Frees the slot's contents. The caller guarantees no row uses it.
  virtual void unload_adapter(int32_t slot) = 0;
};

}  // namespace myriad
