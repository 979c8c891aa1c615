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
#include <thread>
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

// Tokens and their output indices of one request run alone on a fresh engine.
struct Alone {
  std::vector<int32_t> tokens;
  std::vector<uint32_t> indices;
  int finals = 0;
};
Alone run_alone(Request r) {
  Fixture& fx = fixture();
  const SchedulerConfig cfg = base_config();
  auto ex = make_executor(cfg);
  struct Sink final : EventSink {
    void on_event(const RequestEvent& e) override {
      if (e.kind == EventKind::kToken) {
        out.tokens.push_back(e.token);
        out.indices.push_back(e.index);
      }
      out.finals += e.is_final();
    }
    Alone out;
  } sink;
  SteadyClock clock;
  auto en = Engine::create(cfg, *ex, fx.source, clock, sink);
  EXPECT_TRUE(en.ok()) << en.error().to_string();
  Engine& engine = *en.value();
  EXPECT_TRUE(engine.submit(std::move(r)).ok());
  for (int step = 0; step < 100000 && engine.has_work(); ++step) {
    EXPECT_TRUE(engine.step().ok());
    // The slot load copies on a background thread (slow on a busy machine): give it the CPU.
    if (engine.last_schedule().plan.rows.empty()) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  EXPECT_FALSE(engine.has_work());
  return sink.out;
}

// A request resumed on another worker after its client got k tokens (the
// prompt and those k prefilled together) sends the tokens the undisturbed
// run sent after them, at the same output indices: greedy, and seeded
// sampling with a frequency penalty (the sampler's counter and the penalty's
// counts go on from k).
TEST(EngineCpuSwap, AResumedRequestContinuesAsItWouldHave) {
  Fixture& fx = fixture();
  ASSERT_NE(fx.ckpt, nullptr);
  for (const std::string& v : {std::string(), std::string("r8-all")}) {
    for (bool seeded : {false, true}) {
      Request r;
      r.id = 1;
      r.adapters = testing::adapter_use(v);
      r.prompt = fx.prompts.at("p33");
      r.max_tokens = 24;
      r.sampling.temperature = seeded ? 0.9f : 0.0f;
      r.sampling.seed = 1234;
      r.sampling.frequency_penalty = seeded ? 0.5f : 0.0f;
      const Alone full = run_alone(r);
      ASSERT_EQ(full.tokens.size(), 24u);
      for (size_t k : {size_t(1), size_t(7), size_t(23)}) {
        SCOPED_TRACE("variant '" + v + "', " + (seeded ? "seeded" : "greedy") + ", resumed after " +
                     std::to_string(k));
        Request again = r;
        again.resume_output.assign(full.tokens.begin(), full.tokens.begin() + ptrdiff_t(k));
        const Alone rest = run_alone(again);
        EXPECT_EQ(rest.finals, 1);
        EXPECT_EQ(rest.tokens, std::vector<int32_t>(full.tokens.begin() + ptrdiff_t(k), full.tokens.end()));
        ASSERT_FALSE(rest.indices.empty());
        EXPECT_EQ(rest.indices.front(), k);
      }
    }
  }
}

}  // namespace
}  // namespace myriad
