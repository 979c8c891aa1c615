// What the scheduler decided for one step: the rows to run (a StepPlan), the
// adapter slots to evict and load before running them, and what is waiting
// and why. Reused across steps (clear() keeps capacity) so a steady decode
// step allocates nothing. Owned by the Scheduler; valid until its next
// schedule() call. Not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "runtime/adapter_id.h"
#include "runtime/lora_weights.h"
#include "runtime/step_plan.h"

namespace myriad {

// Execute evictions first (Executor::unload_adapter), then loads
// (Executor::begin_load_adapter), then the plan. No row uses an evicted or
// loading slot.
struct AdapterLoad {
  int32_t slot = -1;
  AdapterId adapter;
  std::shared_ptr<const LoraWeights> weights;  // fetched (may be null for a simulated executor)
};
struct AdapterEviction {
  int32_t slot = -1;
  AdapterId adapter;
};

enum class WaitReason : uint8_t {
  kFetching,     // an adapter's weights are being fetched into host memory
  kNoSlot,       // adapter not active: waiting for a slot (policy order)
  kLoading,      // adapter's slot is loading
  kSwappedOut,   // adapter swapped out; its slot drains its running requests (queued counts paused ones)
  kMaxRunning,   // active, but the batch has max_running_seqs rows
  kTokenBudget,  // active, but this step's max_tokens_per_step is spent
  kKvBlocks,     // active, but not enough free KV blocks for its next chunk
};
const char* wait_reason_name(WaitReason r);

// One adapter set (a plain adapter, or the experts of a mixture) with
// queued requests that got none admitted this step.
struct WaitingAdapter {
  std::span<const AdapterId> adapters;  // empty => base model; views the scheduler's state until its next call
  uint32_t queued = 0;
  WaitReason reason = WaitReason::kNoSlot;
  // kFetching/kNoSlot/kLoading/kSwappedOut: when the set started waiting
  // for slots (the starvation bound is about now - since_ms); else the
  // submission time of its oldest queued request.
  double since_ms = 0.0;
};

struct ScheduleOutput {
  StepPlan plan;                         // rows' seq == RequestId
  std::vector<AdapterEviction> evictions;
  std::vector<AdapterLoad> loads;
  std::vector<WaitingAdapter> waiting;
  uint32_t num_prefill_rows = 0;         // rows feeding prompt (or recompute) tokens
  uint32_t num_decode_rows = 0;          // rows feeding one sampled token
  uint32_t num_admitted = 0;             // requests that entered the running batch
  uint32_t num_preempted = 0;            // running requests whose KV was freed (recompute later)
  uint32_t num_swapped_out = 0;          // adapters swapped out at the quantum
  uint32_t num_paused = 0;               // running requests paused by a swap-out (pause_on_swap_out)

  void clear() {
    plan.clear();
    evictions.clear();
    loads.clear();
    waiting.clear();
    num_prefill_rows = num_decode_rows = num_admitted = num_preempted = num_swapped_out = num_paused = 0;
  }
};

}  // namespace myriad
