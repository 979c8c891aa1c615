// The simulator (sim/): its workload's draws, its cost model and executor,
// and fleet runs over the real engine and placement: deterministic, every
// request answered once (also when workers fail), and the policies it exists
// to compare behaving as they should.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>

#include "sim/fleet.h"
#include "test_seed.h"

namespace myriad::sim {
namespace {

std::vector<SimRequest> draw_all(const WorkloadOptions& o) {
  Workload w(o);
  std::vector<SimRequest> out;
  while (auto r = w.next()) out.push_back(*r);
  return out;
}

TEST(SimWorkload, TheSameSeedDrawsTheSameRequests) {
  WorkloadOptions o;
  o.duration_s = 30;
  o.seed = 7;
  const auto a = draw_all(o), b = draw_all(o);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].arrival_ms, b[i].arrival_ms);
    EXPECT_EQ(a[i].adapter, b[i].adapter);
    EXPECT_EQ(a[i].prompt_tokens, b[i].prompt_tokens);
  }
  o.seed = 8;
  EXPECT_NE(draw_all(o).front().arrival_ms, a.front().arrival_ms);
}

// Rate, Zipf shares, length means and gamma burstiness, each within what
// ~20,000 draws allow (a few standard errors).
TEST(SimWorkload, DrawsFollowTheirDistributions) {
  const uint64_t seed = testing::test_seed();
  WorkloadOptions o;
  o.seed = seed;
  o.rate = 100;
  o.duration_s = 200;
  o.adapters = 10;
  o.zipf = 1.0;
  const auto reqs = draw_all(o);
  SCOPED_TRACE(testing::seed_note(seed));
  EXPECT_NEAR(double(reqs.size()), 20000.0, 20000.0 * 0.03);
  std::map<int32_t, int> by_adapter;
  double prompt = 0, output = 0;
  for (const auto& r : reqs) {
    ++by_adapter[r.adapter];
    prompt += r.prompt_tokens;
    output += r.max_tokens;
  }
  double h = 0;
  for (int k = 1; k <= 10; ++k) h += 1.0 / k;
  EXPECT_NEAR(by_adapter[0] / double(reqs.size()), 1.0 / h, 0.02);
  EXPECT_NEAR(by_adapter[9] / double(reqs.size()), 0.1 / h, 0.01);
  // Exponential lengths rounded up: the mean is about mean + 0.5.
  EXPECT_NEAR(prompt / double(reqs.size()), 256.5, 256 * 0.04);
  EXPECT_NEAR(output / double(reqs.size()), 128.5, 128 * 0.04);

  o.arrival = "gamma";
  o.burstiness = 3.0;
  const auto bursty = draw_all(o);
  double sum = 0, sq = 0;
  for (size_t i = 1; i < bursty.size(); ++i) {
    const double g = bursty[i].arrival_ms - bursty[i - 1].arrival_ms;
    sum += g;
    sq += g * g;
  }
  const double n = double(bursty.size() - 1), mean = sum / n;
  EXPECT_NEAR(mean, 10.0, 10.0 * 0.1);
  EXPECT_NEAR(std::sqrt(sq / n - mean * mean) / mean, 3.0, 3.0 * 0.15);
}

// Tenants: requests by share, each tenant's among its own adapters (k mod T),
// and a run's results per tenant add up to the whole.
TEST(SimWorkload, TenantsGetTheirSharesOfTheirOwnAdapters) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE(testing::seed_note(seed));
  WorkloadOptions o;
  o.seed = seed;
  o.adapters = 300;
  o.rate = 100;
  o.duration_s = 100;
  o.tenant_shares = {0.7, 0.2, 0.1};
  const auto reqs = draw_all(o);
  std::vector<int> by_tenant(3, 0);
  for (const auto& r : reqs) {
    ASSERT_GE(r.adapter, 0);
    EXPECT_EQ(r.adapter % 3, r.tenant);
    ++by_tenant[size_t(r.tenant)];
  }
  for (size_t t = 0; t < 3; ++t) EXPECT_NEAR(by_tenant[t] / double(reqs.size()), o.tenant_shares[t], 0.02);
  o.rate = 10;
  o.duration_s = 30;
  o.prompt_mean = 64;
  o.output_mean = 32;
  auto run = simulate(FleetOptions{}, o);
  ASSERT_TRUE(run.ok()) << run.error().message;
  ASSERT_EQ(run->tenants.size(), 3u);
  uint64_t requests = 0, tokens = 0;
  for (const TenantResult& t : run->tenants) {
    requests += t.requests;
    tokens += t.output_tokens;
    EXPECT_EQ(t.completed, t.requests);
  }
  EXPECT_EQ(requests, run->requests);
  EXPECT_EQ(tokens, run->output_tokens);
  EXPECT_NE(to_json(*run).find("\"tenants\": [{\"tenant\": 0"), std::string::npos);
  o.tenant_shares = {1.0, 0.0};
  EXPECT_FALSE(validate(o).ok());
}

TEST(SimWorkload, AQuietHourOfTheDayHasNoArrivals) {
  WorkloadOptions o;
  o.duration_s = 2 * 3600;
  o.rate = 5;
  o.diurnal = {1.0, 0.0};  // hour 0 busy, hour 1 quiet
  int in_first = 0, in_second = 0;
  for (const auto& r : draw_all(o)) (r.arrival_ms < 3.6e6 ? in_first : in_second)++;
  EXPECT_GT(in_first, 30000);  // twice the mean rate while busy
  EXPECT_EQ(in_second, 0);
  o.diurnal = {0.0};
  EXPECT_FALSE(validate(o).ok());
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("sim_test." + std::to_string(getpid()) + "." + name)).string();
}

// The same requests from a JSONL trace, its FlatBuffers conversion and a
// FlatBuffers trace written directly; a damaged one is refused by name.
TEST(SimWorkload, TracesReplayTheSameRequestsInBothFormats) {
  WorkloadOptions o;
  o.seed = 21;
  o.duration_s = 60;
  o.adapters = 30;
  const auto drawn = draw_all(o);
  const std::string jsonl = temp_path("t.jsonl"), converted = temp_path("c.fb"), direct = temp_path("d.fb");
  ASSERT_TRUE(write_trace(o, jsonl).ok());
  auto n = convert_trace(jsonl, converted);
  ASSERT_TRUE(n.ok()) << n.error().message;
  EXPECT_EQ(n.value(), drawn.size());
  ASSERT_TRUE(write_trace(o, direct).ok());
  for (const std::string& path : {jsonl, converted, direct}) {
    SCOPED_TRACE(path);
    WorkloadOptions r = o;
    r.trace = path;
    ASSERT_TRUE(validate(r).ok()) << validate(r).error().message;
    const auto replayed = draw_all(r);
    ASSERT_EQ(replayed.size(), drawn.size());
    for (size_t i = 0; i < drawn.size(); ++i) {
      EXPECT_NEAR(replayed[i].arrival_ms, drawn[i].arrival_ms, 1e-3);  // JSONL keeps 3 decimals
      EXPECT_EQ(replayed[i].adapter, drawn[i].adapter);
      EXPECT_EQ(replayed[i].prompt_tokens, drawn[i].prompt_tokens);
      EXPECT_EQ(replayed[i].max_tokens, drawn[i].max_tokens);
    }
  }
  // A FlatBuffers trace cut short: refused, naming the file.
  {
    std::ifstream in(direct, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    std::ofstream(converted, std::ios::binary | std::ios::trunc).write(bytes.data(), std::streamsize(bytes.size() / 2));
  }
  WorkloadOptions bad = o;
  bad.trace = converted;
  auto st = validate(bad);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find(converted), std::string::npos) << st.error().message;
  std::ofstream(jsonl, std::ios::app) << "{\"arrival_ms\": 1, \"prompt_len\": 3}\n";
  bad.trace = jsonl;
  st = validate(bad);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("output_len"), std::string::npos) << st.error().message;
  for (const std::string& path : {jsonl, converted, direct}) std::filesystem::remove(path);
}

TEST(SimCostModel, ChargesWhatAStepHoldsAndReadsItsJson) {
  CostModel m;
  StepPlan plan;
  SeqRow prefill;
  prefill.num_tokens = 100;
  prefill.start_pos = 0;
  prefill.sample = true;
  prefill.adapters = AdapterMix::single(2);
  SeqRow decode;
  decode.num_tokens = 1;
  decode.start_pos = 499;
  decode.sample = true;
  decode.adapters = AdapterMix::single(2);
  plan.rows = {prefill, decode};
  const double want = m.base_ms + m.prefill_token_ms * 100 + m.decode_row_ms * 1 + m.context_ktoken_ms * 0.6 +
                      m.prefill_pair_mtoken_ms * (100 * 101 / 2) / 1e6 + m.adapter_ms * 1 +
                      m.lora_token_ms * 101 * 32 / 16.0;
  EXPECT_NEAR(m.step_ms(plan, [](int32_t) { return 32; }), want, 1e-9);
  EXPECT_EQ(m.step_ms(StepPlan{}, [](int32_t) { return 0; }), 0.0);

  m.decode_row_ms = 0.125;
  auto back = cost_model_from_json(to_json(m));
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->decode_row_ms, 0.125);
  EXPECT_EQ(back->name, m.name);
  auto unknown = cost_model_from_json(R"({"decode_ms": 1})");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.error().message.find("decode_ms"), std::string::npos);
  EXPECT_FALSE(cost_model_from_json(R"({"base_ms": -1})").ok());
}

// The built-in model is the CPU profile kept in the repository.
TEST(SimCostModel, TheBuiltInModelIsTheCpuProfile) {
  auto file = load_cost_model(std::string(MYRIAD_SOURCE_DIR) + "/sim/cost_models/cpu-llama-110m.json");
  ASSERT_TRUE(file.ok()) << file.error().message;
  const CostModel builtin;
  for (auto [a, b] : {std::pair{file->base_ms, builtin.base_ms}, {file->prefill_token_ms, builtin.prefill_token_ms},
                      {file->decode_row_ms, builtin.decode_row_ms}, {file->context_ktoken_ms, builtin.context_ktoken_ms},
                      {file->prefill_pair_mtoken_ms, builtin.prefill_pair_mtoken_ms},
                      {file->adapter_ms, builtin.adapter_ms}, {file->lora_token_ms, builtin.lora_token_ms},
                      {file->slot_load_per_rank_ms, builtin.slot_load_per_rank_ms},
                      {file->fetch_per_rank_ms, builtin.fetch_per_rank_ms}})
    EXPECT_NEAR(a, b, 1e-5 * std::max(1.0, a));
}

TEST(SimExecutor, LoadsEndOneAfterAnotherOnTheVirtualClock) {
  CostModel m;
  SimExecutor ex(SimExecutorOptions{}, m);
  auto w = std::make_shared<LoraWeights>();
  w->modules.resize(kNumLinearModules);
  for (auto& mod : w->modules) mod.rank = 16;
  std::vector<int32_t> done;
  ex.set_now(10.0);
  ASSERT_TRUE(ex.begin_load_adapter(0, w, [&](Status) { done.push_back(0); }).ok());
  ASSERT_TRUE(ex.begin_load_adapter(1, w, [&](Status) { done.push_back(1); }).ok());
  EXPECT_FALSE(ex.begin_load_adapter(99, w, [](Status) {}).ok());
  const double one = m.load_ms(16);
  EXPECT_DOUBLE_EQ(ex.next_load_end_ms(), 10.0 + one);
  EXPECT_DOUBLE_EQ(ex.finish_loads(10.0 + one), 10.0 + 2 * one);  // the second waits for the first
  EXPECT_EQ(done, std::vector<int32_t>{0});
  ex.finish_loads(100.0);
  EXPECT_EQ(done, (std::vector<int32_t>{0, 1}));
}

FleetOptions small_fleet(int32_t workers) {
  FleetOptions f;
  f.workers = workers;
  f.engine.num_slots = 4;
  f.engine.max_running_seqs = 16;
  f.engine.num_kv_blocks = 2048;
  return f;
}

WorkloadOptions small_load(uint64_t seed) {
  WorkloadOptions w;
  w.seed = seed;
  w.adapters = 40;
  w.rate = 20;
  w.duration_s = 30;
  w.prompt_mean = 64;
  w.output_mean = 32;
  return w;
}

std::string without_wall(std::string json) { return json.substr(0, json.find("\"wall_s\"")); }

TEST(SimFleet, TheSameSeedGivesTheSameResultByteForByte) {
  auto a = simulate(small_fleet(3), small_load(5));
  auto b = simulate(small_fleet(3), small_load(5));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(without_wall(to_json(*a)), without_wall(to_json(*b)));
  auto c = simulate(small_fleet(3), small_load(6));
  ASSERT_TRUE(c.ok());
  EXPECT_NE(without_wall(to_json(*a)), without_wall(to_json(*c)));
}

// Every request ends once with its tokens: under load, and when two of three
// workers die mid-run (their requests resume elsewhere).
TEST(SimFleet, EveryRequestIsAnsweredOnceAlsoWhenWorkersFail) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE(testing::seed_note(seed));
  WorkloadOptions w = small_load(seed);
  w.rate = 60;
  w.output_mean = 400;  // long streams: some run on the workers when they die
  auto ok = simulate(small_fleet(3), w);
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->completed, ok->requests);
  EXPECT_EQ(ok->failed + ok->unfinished, 0u);
  FleetOptions f = small_fleet(3);
  f.failures = {{10.0, 0}, {20.0, 2}};
  auto failing = simulate(f, w);
  ASSERT_TRUE(failing.ok());
  EXPECT_GT(failing->replaced, 0u);
  EXPECT_EQ(failing->completed, failing->requests);
  EXPECT_EQ(failing->failed + failing->unfinished, 0u);
  // Each request's tokens once: the same total as without failures.
  EXPECT_EQ(failing->output_tokens, ok->output_tokens);
}

// Many adapters, few slots: the time slice swaps adapters (the quantum runs
// out while others wait); one-at-a-time runs one adapter at a time.
TEST(SimFleet, ThePoliciesDiffer) {
  WorkloadOptions w = small_load(9);
  w.zipf = 0;
  w.rate = 60;  // about what one worker keeps up with: adapters wait for slots
  FleetOptions f = small_fleet(1);
  f.engine.quantum_ms = 5;
  auto timeslice = simulate(f, w);
  f.engine.policy = SchedulerPolicy::kOneAtATime;
  auto one = simulate(f, w);
  ASSERT_TRUE(timeslice.ok() && one.ok());
  EXPECT_GT(timeslice->swaps, 0u);
  EXPECT_EQ(one->completed, one->requests);
  EXPECT_GT(one->ttft_ms.quantile_ms(0.99), timeslice->ttft_ms.quantile_ms(0.99));
}

// With the node's scheduler actor in front (--admission timeslice), each
// engine is given at most its slots' worth of adapters, so its own time
// slice never swaps one out: the rotation happens in the AdmissionQueue.
// Every request is still answered once, also when a worker fails, and the
// same tokens come out as without it.
TEST(SimFleet, TheSchedulerActorsActiveSetLeavesTheEngineNothingToSwap) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE(testing::seed_note(seed));
  WorkloadOptions w = small_load(seed);
  w.zipf = 0;
  w.rate = 60;
  FleetOptions f = small_fleet(2);
  f.engine.quantum_ms = 5;
  auto engine = simulate(f, w);
  f.admission = SimAdmission::kTimeslice;
  auto actor = simulate(f, w);
  ASSERT_TRUE(engine.ok() && actor.ok());
  EXPECT_GT(engine->swaps, 0u) << "the workload makes adapters wait for slots";
  EXPECT_EQ(actor->swaps, 0u) << "the engine never held more adapters than slots";
  EXPECT_GT(actor->slot_loads, 0u);
  EXPECT_EQ(actor->completed, actor->requests);
  EXPECT_EQ(actor->failed + actor->unfinished, 0u);
  EXPECT_EQ(actor->output_tokens, engine->output_tokens);
  f.failures = {{10.0, 1}};
  f.max_waiting = 100000;  // one worker left is overloaded: nothing may be refused here (the node's 429)
  auto failing = simulate(f, w);
  ASSERT_TRUE(failing.ok());
  EXPECT_EQ(failing->completed, failing->requests)
      << "failed " << failing->failed << " unfinished " << failing->unfinished << " replaced " << failing->replaced;
  EXPECT_EQ(failing->output_tokens, engine->output_tokens);
  f.failures.clear();
  f.admission = SimAdmission::kFifo;
  auto fifo = simulate(f, w);
  ASSERT_TRUE(fifo.ok());
  EXPECT_EQ(fifo->completed, fifo->requests);
  EXPECT_EQ(parse_sim_admission("timeslice").value(), SimAdmission::kTimeslice);
  EXPECT_FALSE(parse_sim_admission("lifo").ok());
}

TEST(SimFleet, AffinityPlacementFindsAdaptersResidentMoreOftenThanRandom) {
  WorkloadOptions w = small_load(4);
  w.rate = 40;
  FleetOptions f = small_fleet(4);
  auto affinity = simulate(f, w);
  f.placement.policy = PlacementPolicy::kRandom;
  auto random = simulate(f, w);
  ASSERT_TRUE(affinity.ok() && random.ok());
  EXPECT_GT(affinity->affinity_hit_rate, random->affinity_hit_rate + 0.1)
      << affinity->affinity_hit_rate << " vs " << random->affinity_hit_rate;
}

// A fleet of two device kinds: each group's workers run at their model's speed.
TEST(SimFleet, WorkerGroupsHaveTheirOwnSlotsAndDevices) {
  WorkloadOptions w = small_load(13);
  w.rate = 30;
  CostModel fast;  // the built-in model, ten times faster
  for (double* c : {&fast.base_ms, &fast.prefill_token_ms, &fast.decode_row_ms, &fast.context_ktoken_ms,
                    &fast.prefill_pair_mtoken_ms, &fast.adapter_ms, &fast.lora_token_ms})
    *c /= 10;
  FleetOptions slow = small_fleet(2), mixed = small_fleet(2), quick = small_fleet(2);
  mixed.groups = {WorkerGroup{1, 4, fast}};
  quick.groups = {WorkerGroup{2, 4, fast}};
  auto a = simulate(slow, w), b = simulate(mixed, w), c = simulate(quick, w);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  for (const SimResult* r : {&*a, &*b, &*c}) EXPECT_EQ(r->completed, r->requests);
  EXPECT_LT(c->ttft_ms.quantile_ms(0.5), b->ttft_ms.quantile_ms(0.5));
  EXPECT_LT(b->ttft_ms.quantile_ms(0.5), a->ttft_ms.quantile_ms(0.5));
  mixed.groups = {WorkerGroup{3, 4, fast}};
  auto r = simulate(mixed, w);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("worker groups"), std::string::npos) << r.error().message;
}

TEST(SimFleet, BadSettingsAreRefusedNamingThem) {
  FleetOptions f = small_fleet(0);
  auto r = simulate(f, small_load(1));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("workers"), std::string::npos);
  f = small_fleet(2);
  f.failures = {{1.0, 5}};
  EXPECT_FALSE(simulate(f, small_load(1)).ok());
  WorkloadOptions w = small_load(1);
  w.arrival = "lumpy";
  r = simulate(small_fleet(1), w);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("lumpy"), std::string::npos);
}

}  // namespace
}  // namespace myriad::sim
