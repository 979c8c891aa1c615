// "Loading, swapping or preempting never changes the output of a running
// request", with the real engine and scheduler over the real CpuExecutor
// on the tiny-llama fixture and its three PEFT adapters: greedy tokens of
// every request in a contended run (one or two slots, quantum 0 so adapters
// swap as often as the policy allows, tight KV so requests are preempted
// and recomputed, pauses on swap-out) equal the same request run alone.
// Solo runs are also checked against the Hugging Face goldens.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>
#include <chrono>

#include "gpu/cpu/cpu_executor.h"
#include "runtime/engine.h"
#include "runtime/peft_adapter.h"
#include "test_fixtures.h"

using myriad::testing::fixtures_dir;

namespace myriad {
namespace {


class TokenSink final : public EventSink {
 public:
  void on_event(const RequestEvent& e) override {
    if (e.kind == EventKind::kToken) tokens[e.id].push_back(e.token);
    if (e.kind == EventKind::kFailed) failures.push_back(e.error.to_string());
    if (e.is_final()) ++finals[e.id];
  }
  std::map<RequestId, std::vector<int32_t>> tokens;
  std::map<RequestId, int> finals;
  std::vector<std::string> failures;
};

struct Fixture {
  std::shared_ptr<const Checkpoint> ckpt;
  StaticAdapterResolver resolver;
  std::vector<std::string> variants = {"", "r4-qv", "r8-all", "r16-rslora-o-down"};
  std::map<std::string, std::vector<int32_t>> prompts;
  nlohmann::json golden;
};

Fixture& fixture() {
  static Fixture* f = [] {
    auto* fx = new Fixture;
    const std::string dir = fixtures_dir() + "/tiny-llama";
    auto ck = Checkpoint::load(dir);
    EXPECT_TRUE(ck.ok()) << ck.error().to_string();
    if (!ck.ok()) return fx;
    fx->ckpt = ck.value();
    for (size_t i = 1; i < fx->variants.size(); ++i) {
      PeftLoadOptions o;
      o.name = fx->variants[i];
      auto w = load_peft_adapter(dir + "/adapters/" + fx->variants[i], fx->ckpt->config(), o);
      EXPECT_TRUE(w.ok()) << w.error().to_string();
      if (w.ok()) fx->resolver.put(fx->variants[i], 1, w.value());
    }
    std::ifstream in(dir + "/golden.json");
    fx->golden = nlohmann::json::parse(in);
    for (auto& [name, ids] : fx->golden["prompts"].items()) fx->prompts[name] = ids.get<std::vector<int32_t>>();
    return fx;
  }();
  return *f;
}

struct Totals {
  uint64_t swaps = 0, preemptions = 0, loads = 0, paused = 0;
};
Totals g_totals;  // over every run(): shows the contended runs did contend

struct Job {
  std::string variant, prompt;
};

// Runs `jobs` through one engine; returns each job's greedy tokens.
std::vector<std::vector<int32_t>> run(const std::vector<Job>& jobs, const SchedulerConfig& cfg, uint64_t seed,
                                      double arrive_per_step) {
  Fixture& fx = fixture();
  gpu::cpu::CpuExecutorOptions eo;
  eo.kv_num_blocks = cfg.num_kv_blocks;
  eo.kv_block_size = cfg.kv_block_size;
  eo.threads = 1;
  eo.num_adapter_slots = cfg.num_slots;
  eo.max_adapter_rank = 16;
  auto ex = gpu::cpu::CpuExecutor::create(fx.ckpt, eo);
  EXPECT_TRUE(ex.ok()) << ex.error().to_string();
  ManualClock clock;
  TokenSink sink;
  auto en = Engine::create(cfg, *ex.value(), fx.resolver, clock, sink);
  EXPECT_TRUE(en.ok()) << en.error().to_string();
  Engine& engine = *en.value();
  std::mt19937_64 rng(seed);
  std::vector<RequestId> ids(jobs.size(), 0);
  size_t next = 0;
  double credit = 0.0;
  for (int step = 0; step < 200000 && (next < jobs.size() || engine.has_work()); ++step) {
    credit += arrive_per_step;
    while (next < jobs.size() && (credit >= 1.0 || arrive_per_step <= 0.0)) {
      credit -= 1.0;
      Request r;
      r.adapter = jobs[next].variant;
      r.prompt = fx.prompts.at(jobs[next].prompt);
      r.max_tokens = 24;
      r.sampling.temperature = 0.0f;  // greedy; eos is not special (goldens ignore it)
      auto id = engine.submit(std::move(r));
      EXPECT_TRUE(id.ok()) << id.error().to_string();
      ids[next++] = id.ok() ? id.value() : 0;
    }
    EXPECT_TRUE(engine.step().ok());
    g_totals.paused += engine.last_schedule().num_paused;
    clock.advance(std::uniform_real_distribution<double>(0.5, 1.5)(rng));
    // Slot loads copy on a background thread: wait for it when nothing can run.
    if (engine.last_schedule().plan.rows.empty() && !engine.scheduler().loading_slots().empty())
      std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  EXPECT_FALSE(engine.has_work());
  g_totals.swaps += engine.metrics().swaps;
  g_totals.preemptions += engine.metrics().preemptions;
  g_totals.loads += engine.metrics().slot_loads;
  EXPECT_TRUE(sink.failures.empty()) << sink.failures.front();
  std::vector<std::vector<int32_t>> out;
  for (RequestId id : ids) {
    EXPECT_EQ(sink.finals[id], 1) << "request " << id;
    out.push_back(sink.tokens[id]);
  }
  return out;
}

SchedulerConfig base_config() {
  SchedulerConfig c;
  c.num_slots = 1;
  c.quantum_ms = 0.0;
  c.max_tokens_per_step = 64;
  c.max_running_seqs = 8;
  c.kv_block_size = 16;
  c.num_kv_blocks = 64;
  return c;
}

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
  // Solo reference per (variant, prompt).
  std::map<std::pair<std::string, std::string>, std::vector<int32_t>> solo;
  const std::vector<std::string> prompt_names = {"p1", "p7", "p33", "p100"};
  for (const auto& v : fx.variants)
    for (const auto& p : prompt_names) solo[{v, p}] = run({{v, p}}, base_config(), 1, 0.0)[0];

  g_totals = Totals{};
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
    const auto got = run(jobs, c, seed, 0.5);
    for (size_t i = 0; i < jobs.size(); ++i)
      EXPECT_EQ(got[i], (solo[{jobs[i].variant, jobs[i].prompt}]))
          << "seed " << seed << " job " << i << " variant '" << jobs[i].variant << "' prompt " << jobs[i].prompt;
  }
  EXPECT_GT(g_totals.swaps, 5u);
  EXPECT_GT(g_totals.preemptions, 5u);
  EXPECT_GT(g_totals.paused, 0u);
  std::printf("contended runs: %llu swaps, %llu slot loads, %llu preemptions, %llu pauses\n",
              (unsigned long long)g_totals.swaps, (unsigned long long)g_totals.loads,
              (unsigned long long)g_totals.preemptions, (unsigned long long)g_totals.paused);
}

}  // namespace
}  // namespace myriad
