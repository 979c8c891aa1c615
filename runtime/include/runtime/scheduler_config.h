// Every setting of the scheduler with its doc and default, in one place.
// Passed in (never read from a global); validate_scheduler_config() names
// the first bad field. A plain value type.
#pragma once

#include <cstdint>
#include <string_view>

#include "runtime/result.h"

namespace myriad {

enum class SchedulerPolicy : uint8_t {
  // Default. N adapters active; when the quantum has passed, the adapters
  // with queued requests that have waited longest replace the adapters that
  // have been active longest. Starvation-free (bound in scheduler.h).
  kTimeslice,
  // A free slot goes to the adapter of the oldest queued request at once; an
  // active adapter keeps its slot while it has work (no quantum). Can starve
  // an adapter while N others keep receiving requests.
  kFcfs,
  // One adapter at a time: its queue is served until it is empty (and its
  // requests have finished), then the adapter of the oldest queued request
  // is loaded. Base-model requests are always served.
  kOneAtATime,
};
const char* scheduler_policy_name(SchedulerPolicy p);  // "timeslice", "fcfs", "one-at-a-time"
Result<SchedulerPolicy> parse_scheduler_policy(std::string_view s);

struct SchedulerConfig {
  SchedulerPolicy policy = SchedulerPolicy::kTimeslice;
  int32_t num_slots = 4;              // N: adapters whose weights may be in device slots (loading, active or draining); 0 = base model only
  double quantum_ms = 50.0;           // timeslice: an active adapter is swapped out only after this long active
  int32_t max_tokens_per_step = 512;  // T: new tokens (prefill chunks + decode rows) in one step
  int32_t max_running_seqs = 64;      // R: sequences in the running batch; R <= T so every row progresses
  int32_t max_prefill_chunk = 0;      // tokens of one prompt per step; 0 => only T limits it
  int32_t num_kv_blocks = 1024;       // KV pool size in blocks (must match the executor's pool)
  int32_t kv_block_size = 16;         // tokens per KV block (must match the executor)
  int32_t max_seq_len = 0;            // prompt + max_tokens at most; 0 => whatever the KV pool holds
  int32_t vocab_size = 0;             // prompt ids must be < this; 0 => unchecked
  // timeslice: a swapped-out adapter's running requests are paused (their KV
  // freed, recomputed when the adapter is back) so the slot frees at once,
  // instead of finishing first (the default).
  bool pause_on_swap_out = false;
  uint64_t kv_shuffle_seed = 0;       // != 0: hand out KV blocks in shuffled order (tests)
};

Status validate_scheduler_config(const SchedulerConfig& c);

}  // namespace myriad
