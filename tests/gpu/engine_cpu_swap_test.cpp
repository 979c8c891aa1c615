// "Loading, swapping or preempting never changes the output of a running
// request", with the real engine and scheduler over the real CpuExecutor
// on the tiny-llama fixture and its three PEFT adapters: greedy tokens of
// every request in a contended run (one or two slots, quantum 0 so adapters
// swap as often as the policy allows, tight KV so requests are preempted
// and recomputed, pauses on swap-out) equal the same request run alone.
// Solo runs are also checked against the Hugging Face goldens. The harness:
// tests/engine_cpu_workload.h (tests/slow/ soaks many more random runs).
#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "engine_cpu_workload.h"

namespace myriad {
namespace {

using namespace engine_cpu;

TEST(EngineCpuSwap, SoloRunsMatchTheGoldens) {
  Fixture& fx = fixture();
  ASSERT_NE(fx.ckpt, nullptr);
  for (const std::string& v : fx.variants) {
    for (const char* p : {"p7", "p33"}) {
      auto got = run({{v, p}}, base_config(), 1, 0.0);
      const auto want =
          fx.golden["results"][v.empty() ? "base" : v][p]["greedy_tokens"].get<std::vector<int32_t>>();
      EXPECT_EQ(got[0], want) << "variant '" << v << "' prompt " << p;
    }
  }
}

TEST(EngineCpuSwap, SwapsPausesAndPreemptionNeverChangeOutputs) {
  Fixture& fx = fixture();
  ASSERT_NE(fx.ckpt, nullptr);
  const std::vector<std::string> prompt_names = {"p1", "p7", "p33", "p100"};
  const SoloOutputs solo = solo_outputs(prompt_names);
  Totals totals;
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    std::mt19937_64 rng(seed);
    std::vector<Job> jobs;
    for (int i = 0; i < 14; ++i)
      jobs.push_back({fx.variants[rng() % fx.variants.size()], prompt_names[rng() % prompt_names.size()]});
    SchedulerConfig c = base_config();
    c.num_slots = 1 + int32_t(seed % 2);
    c.pause_on_swap_out = seed % 2 == 0;
    c.max_tokens_per_step = 16 + int32_t(seed) * 8;  // long prompts are chunked
    c.num_kv_blocks = 10;                            // 160 positions: preemption under load
    c.policy = seed == 5 ? SchedulerPolicy::kFcfs : SchedulerPolicy::kTimeslice;
    expect_contended_equals_solo(jobs, c, seed, 0.5, solo, &totals);
  }
  EXPECT_GT(totals.swaps, 5u);
  EXPECT_GT(totals.preemptions, 5u);
  EXPECT_GT(totals.paused, 0u);
  std::printf("contended runs: %llu swaps, %llu slot loads, %llu preemptions, %llu pauses\n",
              (unsigned long long)totals.swaps, (unsigned long long)totals.loads,
              (unsigned long long)totals.preemptions, (unsigned long long)totals.paused);
}

}  // namespace
}  // namespace myriad
