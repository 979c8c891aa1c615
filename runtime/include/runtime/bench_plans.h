// Step plans for the micro-benchmarks that time a bare Executor::step
// (bench/decode, bench/multilora, bench/cuda_decode): the one place outside
// the scheduler that builds StepPlans, so those programs share it instead of
// each writing its own. Everything that serves requests goes through the
// Engine instead. Pure functions over value types; not thread-safe per plan.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "runtime/kv_block_allocator.h"
#include "runtime/result.h"
#include "runtime/step_plan.h"

namespace myriad {

// A sequence decoded greedily, one step at a time.
struct GreedySeq {
  std::vector<int32_t> ids;     // prompt + sampled so far
  int32_t cached = 0;           // positions already in the KV cache
  std::vector<int32_t> blocks;  // its KV block table
  AdapterMix mix;               // none by default
};

// One row per sequence feeding its uncached tokens and sampling greedily
// (row i's seq id is i + 1). kResourceExhausted when the pool is full.
Status plan_greedy_step(std::vector<GreedySeq>& seqs, KvBlockAllocator& alloc, int32_t block_size, StepPlan& plan);
// Appends each row's sampled token to its sequence (after the step ran).
void absorb_greedy_step(std::vector<GreedySeq>& seqs, const StepResult& result);

// `batch` decode rows at position `ctx`, row r using blocks [r·k, (r+1)·k)
// for k = ceil((ctx + steps) / block_size) (timing only: the KV content is
// whatever the pool holds); row r runs adapter slots[r] when given.
void plan_decode_batch(int batch, int ctx, int steps, int32_t block_size, std::span<const int32_t> slots,
                       StepPlan& plan);
// Moves every row one position on, as after a decode step.
void advance_decode_batch(StepPlan& plan);

// One sequence's whole prompt of `tokens` tokens from position 0, in blocks
// [0, ceil(tokens / block_size)), sampling greedily after its last token
// (timing only: the token ids are arbitrary).
void plan_prefill(int tokens, int32_t block_size, StepPlan& plan);

}  // namespace myriad
