// Shared by the CPU decode benchmarks (bench/decode.cpp, bench/multilora.cpp):
// sequences fed greedily one step at a time through a CpuExecutor, and the
// deterministic prompts both use, so their figures are comparable.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "gpu/cpu/cpu_executor.h"
#include "runtime/kv_block_allocator.h"

namespace myriad::bench {

inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct DecodeSeq {
  std::vector<int32_t> ids;
  int32_t cached = 0;
  std::vector<int32_t> blocks;
  AdapterMix mix;  // none by default
};

// n token ids from a fixed formula (salt varies the sequence).
inline std::vector<int32_t> prompt(int n, int salt, int64_t vocab) {
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) p[size_t(i)] = int32_t((i * 7919 + salt * 104729 + 13) % vocab);
  return p;
}

// One step: every seq feeds its uncached tokens and samples greedily; the
// sampled token is appended. False (with a message naming `who`) when the
// KV pool is full or the step fails.
inline bool greedy_step(gpu::cpu::CpuExecutor& ex, std::vector<DecodeSeq>& seqs, KvBlockAllocator& alloc,
                        StepPlan& plan, StepResult& res, const char* who) {
  plan.clear();
  const int32_t bs = ex.info().kv_block_size;
  for (auto& s : seqs) {
    SeqRow r;
    r.start_pos = s.cached;
    r.num_tokens = uint32_t(int32_t(s.ids.size()) - s.cached);
    r.token_offset = uint32_t(plan.tokens.size());
    plan.tokens.insert(plan.tokens.end(), s.ids.begin() + s.cached, s.ids.end());
    const int32_t need = KvBlockAllocator::blocks_for(int32_t(s.ids.size()), bs) - int32_t(s.blocks.size());
    if (need > 0 && !alloc.allocate(need, s.blocks)) {
      std::fprintf(stderr, "%s: KV pool exhausted\n", who);
      return false;
    }
    r.block_offset = uint32_t(plan.block_ids.size());
    r.num_blocks = uint32_t(s.blocks.size());
    plan.block_ids.insert(plan.block_ids.end(), s.blocks.begin(), s.blocks.end());
    r.adapters = s.mix;
    r.sample = true;
    r.sampling.temperature = 0.0f;
    plan.rows.push_back(r);
  }
  const Status st = ex.step(plan, res);
  if (!st.ok()) {
    std::fprintf(stderr, "%s: step failed: %s\n", who, st.error().to_string().c_str());
    return false;
  }
  for (size_t i = 0; i < seqs.size(); ++i) {
    seqs[i].cached = int32_t(seqs[i].ids.size());
    seqs[i].ids.push_back(res.sampled[i].token);
  }
  return true;
}

}  // namespace myriad::bench
