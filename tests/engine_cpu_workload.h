// The real Engine + Scheduler over the real CpuExecutor on the tiny-llama
// fixture and its three PEFT adapters, with greedy requests: shared by
// tests/gpu/engine_cpu_swap_test.cpp (six fixed contended runs) and
// tests/slow/engine_cpu_soak_test.cpp (many random ones). A contended run's
// tokens must equal each request run alone: loading, swapping, pausing or
// preempting never changes a running request's output.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gpu/cpu/cpu_executor.h"
#include "runtime/engine.h"
#include "runtime/peft_adapter.h"
#include "test_fixtures.h"
#include "test_adapters.h"

namespace myriad::engine_cpu {

using myriad::testing::fixtures_dir;

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
  StaticAdapterSource source;
  std::vector<std::string> variants = {"", "r4-qv", "r8-all", "r16-rslora-o-down"};
  std::map<std::string, std::vector<int32_t>> prompts;
  nlohmann::json golden;
};

inline Fixture& fixture() {
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
      if (w.ok()) fx->source.put(testing::test_adapter(fx->variants[i]), w.value());
    }
    std::ifstream in(dir + "/golden.json");
    fx->golden = nlohmann::json::parse(in);
    for (auto& [name, ids] : fx->golden["prompts"].items())
      fx->prompts[name] = ids.get<std::vector<int32_t>>();
    return fx;
  }();
  return *f;
}

// Over runs: shows that contended runs did contend.
struct Totals {
  uint64_t swaps = 0, preemptions = 0, loads = 0, paused = 0;
};

struct Job {
  std::string variant, prompt;
};

// A CpuExecutor on the fixture sized for `cfg` (one thread, rank <= 16).
inline std::unique_ptr<gpu::cpu::CpuExecutor> make_executor(const SchedulerConfig& cfg) {
  gpu::cpu::CpuExecutorOptions eo;
  eo.kv_num_blocks = cfg.num_kv_blocks;
  eo.kv_block_size = cfg.kv_block_size;
  eo.threads = 1;
  eo.num_adapter_slots = cfg.num_slots;
  eo.max_adapter_rank = 16;
  auto ex = gpu::cpu::CpuExecutor::create(fixture().ckpt, eo);
  EXPECT_TRUE(ex.ok()) << ex.error().to_string();
  return ex.ok() ? std::move(ex).value() : nullptr;
}

// Runs `jobs` through one engine (arriving `arrive_per_step` a step; 0: all
// at once; steps of 0.5-1.5 ms drawn from `seed`); returns each job's greedy
// tokens and adds to `totals`, if given.
inline std::vector<std::vector<int32_t>> run(const std::vector<Job>& jobs, const SchedulerConfig& cfg,
                                             uint64_t seed, double arrive_per_step,
                                             Totals* totals = nullptr) {
  Fixture& fx = fixture();
  auto ex = make_executor(cfg);
  ManualClock clock;
  TokenSink sink;
  auto en = Engine::create(cfg, *ex, fx.source, clock, sink);
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
      r.id = RequestId(next + 1);
      r.adapters = testing::adapter_use(jobs[next].variant);
      r.prompt = fx.prompts.at(jobs[next].prompt);
      r.max_tokens = 24;
      r.sampling.temperature = 0.0f;  // greedy; eos is not special (goldens ignore it)
      auto id = engine.submit(std::move(r));
      EXPECT_TRUE(id.ok()) << id.error().to_string();
      ids[next++] = id.ok() ? id.value() : 0;
    }
    EXPECT_TRUE(engine.step().ok());
    if (totals) totals->paused += engine.last_schedule().num_paused;
    clock.advance(std::uniform_real_distribution<double>(0.5, 1.5)(rng));
    // Slot loads copy on a background thread: wait for it when nothing can run.
    if (engine.last_schedule().plan.rows.empty() && !engine.scheduler().loading_slots().empty())
      std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  EXPECT_FALSE(engine.has_work());
  if (totals) {
    totals->swaps += engine.metrics().swaps;
    totals->preemptions += engine.metrics().preemptions;
    totals->loads += engine.metrics().slot_loads;
  }
  EXPECT_TRUE(sink.failures.empty()) << sink.failures.front();
  std::vector<std::vector<int32_t>> out;
  for (RequestId id : ids) {
    EXPECT_EQ(sink.finals[id], 1) << "request " << id;
    out.push_back(sink.tokens[id]);
  }
  return out;
}

inline SchedulerConfig base_config() {
  SchedulerConfig c;
  c.num_slots = 1;
  c.quantum_ms = 0.0;
  c.max_tokens_per_step = 64;
  c.max_running_seqs = 8;
  c.kv_block_size = 16;
  c.num_kv_blocks = 64;
  return c;
}

// Every (variant, prompt) of `prompts` run alone: the outputs contended runs must equal.
using SoloOutputs = std::map<std::pair<std::string, std::string>, std::vector<int32_t>>;
inline SoloOutputs solo_outputs(const std::vector<std::string>& prompts) {
  SoloOutputs solo;
  for (const auto& v : fixture().variants)
    for (const auto& p : prompts) solo[{v, p}] = run({{v, p}}, base_config(), 1, 0.0)[0];
  return solo;
}

// One contended run: `jobs` under `c`, each job's tokens equal to its solo run.
inline void expect_contended_equals_solo(const std::vector<Job>& jobs, const SchedulerConfig& c,
                                         uint64_t seed, double arrive_per_step, const SoloOutputs& solo,
                                         Totals* totals) {
  const auto got = run(jobs, c, seed, arrive_per_step, totals);
  for (size_t i = 0; i < jobs.size(); ++i)
    EXPECT_EQ(got[i], (solo.at({jobs[i].variant, jobs[i].prompt})))
        << "seed " << seed << " job " << i << " variant '" << jobs[i].variant << "' prompt "
        << jobs[i].prompt;
}

}  // namespace myriad::engine_cpu
