// Shared by the decode and training benchmarks (bench/decode.cpp,
// bench/multilora.cpp, bench/train.cpp, bench/cuda_train.cpp): sequences fed
// greedily one step at a time through an executor, and the
// deterministic prompts both use, so their figures are comparable.
#pragma once

#include <chrono>
#include <cstdint>
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "runtime/bench_plans.h"
#include "runtime/executor.h"
#include "runtime/kv_block_allocator.h"
#include "runtime/training/training_data.h"
#include "runtime/training/training_job.h"

namespace myriad::bench {

inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

using DecodeSeq = GreedySeq;  // runtime/bench_plans.h: the plans every executor micro-benchmark shares

// n token ids from a fixed formula (salt varies the sequence).
inline std::vector<int32_t> prompt(int n, int salt, int64_t vocab) {
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) p[size_t(i)] = int32_t((i * 7919 + salt * 104729 + 13) % vocab);
  return p;
}

// One step: every seq feeds its uncached tokens and samples greedily; the
// sampled token is appended. False (with a message naming `who`) when the
// KV pool is full or the step fails.
inline bool greedy_step(Executor& ex, std::vector<DecodeSeq>& seqs, KvBlockAllocator& alloc,
                        StepPlan& plan, StepResult& res, const char* who) {
  Status st = plan_greedy_step(seqs, alloc, ex.info().kv_block_size, plan);
  if (st.ok()) st = ex.step(plan, res);
  if (!st.ok()) {
    std::fprintf(stderr, "%s: %s\n", who, st.error().to_string().c_str());
    return false;
  }
  absorb_greedy_step(seqs, res);
  return true;
}

// n training examples of len tokens whose last quarter is the completion
// (the loss), as a fine-tuning set is; salt varies the tokens.
inline std::vector<TrainingExample> synthetic_examples(int64_t n, int64_t len, int64_t vocab, int salt) {
  std::vector<TrainingExample> out;
  for (int64_t i = 0; i < n; ++i) {
    TrainingExample ex;
    ex.tokens = prompt(int(len), salt * 1000 + int(i), vocab);
    ex.targets.assign(size_t(len), 0);
    for (int64_t t = len - len / 4; t < len; ++t) ex.targets[size_t(t)] = 1;
    out.push_back(std::move(ex));
  }
  return out;
}

// Job j of a training throughput run: rank `rank` on all seven modules
// (alpha 2·rank), lr 1e-3, `steps` optimizer steps of `batch_tokens`, over
// 4 batches' worth of synthetic examples of `seq_len` tokens.
inline Result<std::unique_ptr<TrainingJob>> synthetic_job(const ModelConfig& cfg, int64_t j, int64_t rank,
                                                          int64_t steps, int64_t batch_tokens, int64_t seq_len) {
  TrainingJobConfig c;
  c.targets.rank = int32_t(rank);
  c.targets.alpha = float(2 * rank);
  c.adamw.lr = 1e-3;
  c.steps = steps;
  c.batch_tokens = batch_tokens;
  c.seed = uint64_t(j);
  const int64_t per_job = std::max<int64_t>(1, batch_tokens / seq_len);
  return TrainingJob::create("job" + std::to_string(j), cfg, c,
                             synthetic_examples(per_job * 4, seq_len, cfg.vocab_size, int(j)));
}

}  // namespace myriad::bench
