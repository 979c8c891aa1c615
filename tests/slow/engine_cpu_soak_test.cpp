// Soak (label slow): random contended runs of the real Engine + Scheduler
// over the real CpuExecutor with LoRA adapters in mixed batches
// (tests/engine_cpu_workload.h): random policy, slots, quantum, pauses,
// token budget, running limit and KV pool (down to one longest request, so
// requests are preempted and recomputed), random jobs and arrival rates.
// Every request's greedy tokens must equal the same request run alone. The
// runs' seeds are base, base + 1, ... from test_seed() (printed); a failure
// names its run's seed s: MYRIAD_TEST_SEED=s MYRIAD_PROPERTY_ITERS=1 reruns it.
// A run takes ~12 ms: 1500 runs are ~18 s in a Release build.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "engine_cpu_workload.h"
#include "test_seed.h"

namespace myriad {
namespace {

using namespace engine_cpu;

uint64_t runs(uint64_t fallback) {  // MYRIAD_PROPERTY_ITERS=n overrides
  const char* v = std::getenv("MYRIAD_PROPERTY_ITERS");
  return v ? std::stoull(v) : fallback;
}

TEST(EngineCpuSoak, RandomContendedRunsEqualSoloRuns) {
  Fixture& fx = fixture();
  ASSERT_NE(fx.ckpt, nullptr);
  const uint64_t base = testing::test_seed();
  SCOPED_TRACE(testing::seed_note(base));
  const std::vector<std::string> prompt_names = {"p1", "p7", "p33", "p100"};
  const SoloOutputs solo = solo_outputs(prompt_names);
  Totals totals;
  const uint64_t n = runs(1500);
  for (uint64_t i = 0; i < n && !HasFailure(); ++i) {
    const uint64_t seed = base + i;
    SCOPED_TRACE("run seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    auto uni = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    std::vector<Job> jobs(static_cast<size_t>(uni(2, 16)));
    for (Job& j : jobs)
      j = {fx.variants[size_t(uni(0, int(fx.variants.size()) - 1))], prompt_names[size_t(uni(0, 3))]};
    SchedulerConfig c = base_config();
    c.policy = std::vector<SchedulerPolicy>{SchedulerPolicy::kTimeslice, SchedulerPolicy::kFcfs,
                                            SchedulerPolicy::kOneAtATime}[size_t(uni(0, 2))];
    c.num_slots = uni(1, 3);
    c.quantum_ms = uni(0, 4);
    c.pause_on_swap_out = uni(0, 1) == 1;
    c.max_tokens_per_step = uni(8, 96);
    c.max_running_seqs = uni(1, std::min(8, c.max_tokens_per_step));
    c.max_prefill_chunk = uni(0, 2) ? 0 : uni(1, 32);
    c.num_kv_blocks = uni(8, 24);  // 8 blocks of 16 hold the longest request (p100 + 24 tokens)
    const double arrive_per_step = uni(0, 3) ? std::uniform_real_distribution<double>(0.1, 2.0)(rng) : 0.0;
    expect_contended_equals_solo(jobs, c, seed, arrive_per_step, solo, &totals);
  }
  if (n >= 100) {  // the runs did contend (not necessarily a rerun of one)
    EXPECT_GT(totals.swaps, 0u);
    EXPECT_GT(totals.preemptions, 0u);
    EXPECT_GT(totals.paused, 0u);
  }
  std::printf("%llu runs: %llu swaps, %llu slot loads, %llu preemptions, %llu pauses\n",
              (unsigned long long)n, (unsigned long long)totals.swaps, (unsigned long long)totals.loads,
              (unsigned long long)totals.preemptions, (unsigned long long)totals.paused);
}

}  // namespace
}  // namespace myriad
