// Engine loop: metrics from an injected clock, config checks against the
// executor, the latency histogram's accuracy.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "scheduler_trace.h"
#include "test_adapters.h"

namespace myriad::testing {
namespace {

// The base model only (no slots), 4 rows of a 32-block pool of 16.
SchedulerConfig base_only_config(int32_t max_tokens_per_step) {
  SchedulerConfig c;
  c.num_slots = 0;
  c.max_tokens_per_step = max_tokens_per_step;
  c.max_running_seqs = 4;
  c.num_kv_blocks = 32;
  c.kv_block_size = 16;
  return c;
}

TEST(LatencyHistogramTest, QuantilesWithinThreePercentOfExact) {
  std::mt19937_64 rng(7);
  std::lognormal_distribution<double> dist(0.0, 2.5);  // spans µs .. seconds
  LatencyHistogram h;
  std::vector<double> v;
  for (int i = 0; i < 20000; ++i) {
    const double x = dist(rng);
    v.push_back(x);
    h.record(x);
  }
  std::sort(v.begin(), v.end());
  for (double q : {0.01, 0.1, 0.5, 0.9, 0.99, 0.999}) {
    const double exact = v[size_t(std::ceil(q * double(v.size()))) - 1];  // nearest rank
    EXPECT_NEAR(h.quantile_ms(q), exact, 0.032 * exact + 1e-3) << "q=" << q;
  }
  EXPECT_EQ(h.count(), 20000u);
  EXPECT_DOUBLE_EQ(h.min_ms(), v.front());
  EXPECT_DOUBLE_EQ(h.max_ms(), v.back());
  EXPECT_DOUBLE_EQ(h.quantile_ms(1.0), v.back());
  LatencyHistogram empty;
  EXPECT_EQ(empty.quantile_ms(0.5), 0.0);
  LatencyHistogram m;
  m.merge(h);
  m.merge(h);
  EXPECT_EQ(m.count(), 40000u);
  EXPECT_DOUBLE_EQ(m.quantile_ms(0.5), h.quantile_ms(0.5));
}

TEST(EngineLoop, MetricsFollowTheInjectedClock) {
  SchedulerConfig c;
  c.num_slots = 1;
  c.max_tokens_per_step = 16;
  c.max_running_seqs = 4;
  c.num_kv_blocks = 32;
  c.kv_block_size = 4;
  ManualClock clock;
  // Each step costs 10 ms; a load costs 5 ms and is ready at the next poll.
  FakeExecutor exec(FakeExecutorOptions{.vocab_size = 1000,
                                        .kv_block_size = 4,
                                        .kv_num_blocks = 32,
                                        .num_adapter_slots = 1,
                                        .clock = &clock,
                                        .step_ms = 10.0,
                                        .load_ms = 5.0});
  StaticAdapterSource source;
  source.put(testing::test_adapter("a"), named_weights("a"));
  RecordingSink sink;
  auto e = Engine::create(c, exec, source, clock, sink);
  ASSERT_TRUE(e.ok()) << e.error().to_string();
  Engine& engine = *e.value();
  Request r;
  r.id = 1;
  r.adapters = testing::adapter_use("a");
  r.prompt = {1, 2, 3};
  r.max_tokens = 3;
  ASSERT_TRUE(engine.submit(r).ok());  // t = 0
  ASSERT_TRUE(engine.run_until_idle(100).ok());
  // t=0 load (clock -> 5); t=5 ready, prefill + first token (-> 15); two decode steps (-> 25, 35).
  const EngineMetrics& m = engine.metrics();
  const RequestMetrics& a = m.per_adapter.at("t/a");  // by tenant/name
  EXPECT_EQ(a.finished, 1u);
  EXPECT_EQ(a.output_tokens, 3u);
  EXPECT_DOUBLE_EQ(a.ttft_ms.min_ms(), 15.0);
  EXPECT_DOUBLE_EQ(a.itl_ms.min_ms(), 10.0);
  EXPECT_DOUBLE_EQ(a.itl_ms.max_ms(), 10.0);
  EXPECT_DOUBLE_EQ(a.queue_ms.min_ms(), 5.0);
  EXPECT_DOUBLE_EQ(a.e2e_ms.max_ms(), 35.0);
  EXPECT_DOUBLE_EQ(m.slot_load_ms.max_ms(), 5.0);
  EXPECT_EQ(m.slot_loads, 1u);
  EXPECT_EQ(m.steps, 3u);
  EXPECT_DOUBLE_EQ(m.batch_occupancy(), 0.25);  // 1 row of 4
  EXPECT_EQ(m.overall.output_tokens, 3u);
  const std::string json = m.to_json();
  EXPECT_NE(json.find("\"ttft_ms\""), std::string::npos);
  EXPECT_NE(json.find("\"swaps\""), std::string::npos);
  // Events carry the clock: the final one at 35 ms.
  ASSERT_FALSE(sink.all.empty());
  EXPECT_TRUE(sink.all.back().is_final());
  EXPECT_DOUBLE_EQ(sink.all.back().time_ms, 35.0);
}

TEST(EngineLoop, TopLogprobsBeyondWhatTheExecutorReportsAreRefusedAtSubmit) {
  SchedulerConfig c = base_only_config(16);
  ManualClock clock;
  FakeExecutor exec(FakeExecutorOptions{.kv_block_size = 16, .kv_num_blocks = 32});
  StaticAdapterSource source;
  RecordingSink sink;
  auto e = Engine::create(c, exec, source, clock, sink);
  ASSERT_TRUE(e.ok()) << e.error().to_string();
  Request r;
  r.id = 1;
  r.prompt = {1, 2, 3};
  r.sampling.top_logprobs = 2;  // the fake executor reports none
  auto refused = e.value()->submit(r);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kUnsupported);
  EXPECT_NE(refused.error().message.find("top_logprobs 2: executor"), std::string::npos) << refused.error().message;
  EXPECT_NE(refused.error().message.find("reports at most 0 alternatives"), std::string::npos);
  r.sampling.top_logprobs = 0;
  EXPECT_TRUE(e.value()->submit(r).ok());
}

// The alternatives of a token view the step's result: a sink that keeps
// them copies them in on_event.
class TopRecordingSink final : public EventSink {
 public:
  void on_event(const RequestEvent& e) override {
    if (e.kind == EventKind::kToken) {
      tokens[e.id].push_back(e.token);
      tops[e.id].emplace_back(e.top.begin(), e.top.end());
    }
    if (e.is_final()) finals[e.id] = e;
  }
  std::map<RequestId, std::vector<int32_t>> tokens;
  std::map<RequestId, std::vector<std::vector<TopLogprobs::Entry>>> tops;
  std::map<RequestId, RequestEvent> finals;
};

TEST(EngineLoop, EachTokenCarriesTheAlternativesItsRequestAskedFor) {
  SchedulerConfig c = base_only_config(64);
  ManualClock clock;
  FakeExecutor exec(FakeExecutorOptions{.vocab_size = 50, .kv_block_size = 16, .kv_num_blocks = 32,
                                        .max_top_logprobs = 5});
  StaticAdapterSource source;
  TopRecordingSink sink;
  auto e = Engine::create(c, exec, source, clock, sink);
  ASSERT_TRUE(e.ok()) << e.error().to_string();
  const uint32_t asked[] = {3, 0, 5, 1};  // in one batch, so their entries share each step's result
  for (RequestId id = 1; id <= 4; ++id) {
    Request r;
    r.id = id;
    r.prompt = {1, 2, int32_t(id)};
    r.max_tokens = 6;
    r.sampling.top_logprobs = asked[id - 1];
    ASSERT_TRUE(e.value()->submit(r).ok());
  }
  ASSERT_TRUE(e.value()->run_until_idle(100).ok());
  for (RequestId id = 1; id <= 4; ++id) {
    const uint32_t k = asked[id - 1];
    ASSERT_EQ(sink.tokens[id].size(), 6u) << "request " << id;
    for (size_t i = 0; i < 6; ++i) {
      const int32_t tok = sink.tokens[id][i];
      const auto& top = sink.tops[id][i];
      ASSERT_EQ(top.size(), k) << "request " << id << " token " << i;
      for (uint32_t j = 0; j < k; ++j) {
        EXPECT_EQ(top[j].token, (tok + int32_t(j)) % 50) << "request " << id << " token " << i << " alt " << j;
        EXPECT_EQ(top[j].logprob, -0.125f * float(tok % 8) - float(j)) << "request " << id << " token " << i;
      }
    }
  }
}

TEST(EngineLoop, AlternativesOutsideTheStepsEntriesFailOnlyTheirRequest) {
  SchedulerConfig c = base_only_config(64);
  ManualClock clock;
  FakeExecutor exec(FakeExecutorOptions{.kv_block_size = 16, .kv_num_blocks = 32, .max_top_logprobs = 2});
  StaticAdapterSource source;
  TopRecordingSink sink;
  auto e = Engine::create(c, exec, source, clock, sink);
  ASSERT_TRUE(e.ok()) << e.error().to_string();
  for (RequestId id = 1; id <= 2; ++id) {
    Request r;
    r.id = id;
    r.prompt = {1, 2, 3};
    r.max_tokens = 4;
    r.sampling.top_logprobs = id == 1 ? 2 : 0;
    ASSERT_TRUE(e.value()->submit(r).ok());
  }
  exec.misplace_next_top();
  ASSERT_TRUE(e.value()->run_until_idle(100).ok());
  ASSERT_EQ(sink.finals[1].kind, EventKind::kFailed);
  EXPECT_EQ(sink.finals[1].error.code, ErrorCode::kInternal);
  EXPECT_NE(sink.finals[1].error.message.find("alternatives [2, +2) outside its 2 entries"), std::string::npos)
      << sink.finals[1].error.message;
  EXPECT_TRUE(sink.tokens[1].empty());
  EXPECT_EQ(sink.finals[2].kind, EventKind::kFinished);
  EXPECT_EQ(sink.tokens[2].size(), 4u);
}

// Each sampling row carries its request's biases in the plan; a prefill
// chunk that does not sample carries none.
TEST(EngineLoop, EachSamplingRowCarriesItsRequestsLogitBias) {
  SchedulerConfig c = base_only_config(8);  // the long prompt takes chunks that do not sample
  ManualClock clock;
  FakeExecutor exec(FakeExecutorOptions{.kv_block_size = 16, .kv_num_blocks = 32, .applies_logit_bias = true});
  StaticAdapterSource source;
  RecordingSink sink;
  auto e = Engine::create(c, exec, source, clock, sink);
  ASSERT_TRUE(e.ok()) << e.error().to_string();
  const std::map<RequestId, std::vector<LogitBias>> biases = {
      {1, {{5, -100.0f}, {9, 2.5f}}}, {2, {}}, {3, {{0, 100.0f}}}};
  for (const auto& [id, bias] : biases) {
    Request r;
    r.id = id;
    r.prompt.assign(id == 3 ? 20 : 3, 1);
    r.max_tokens = 3;
    r.logit_bias = bias;
    ASSERT_TRUE(e.value()->submit(r).ok());
  }
  StepResult result;
  int sampled_with_bias = 0, chunks_without_sample = 0;
  for (int step = 0; step < 50 && e.value()->has_work(); ++step) {
    const StepPlan& plan = e.value()->plan_step(clock.now_ms());
    for (const SeqRow& row : plan.rows) {
      ASSERT_LE(size_t(row.bias_offset) + row.bias_count, plan.logit_bias.size());
      const std::vector<LogitBias> got(plan.logit_bias.begin() + row.bias_offset,
                                       plan.logit_bias.begin() + row.bias_offset + row.bias_count);
      const std::vector<LogitBias>& want = row.sample ? biases.at(row.seq) : std::vector<LogitBias>{};
      ASSERT_EQ(got.size(), want.size()) << "step " << step << " seq " << row.seq;
      for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(got[i].token, want[i].token);
        EXPECT_EQ(got[i].bias, want[i].bias);
      }
      sampled_with_bias += row.sample && !want.empty();
      chunks_without_sample += !row.sample;
    }
    const Status st = plan.rows.empty() ? ok_status() : exec.step(plan, result);
    if (plan.rows.empty()) result.clear();
    ASSERT_TRUE(e.value()->complete_step(st, result, clock.now_ms()).ok());
  }
  EXPECT_EQ(sampled_with_bias, 6);  // 3 tokens each of requests 1 and 3
  EXPECT_GT(chunks_without_sample, 0);
  EXPECT_TRUE(exec.violations().empty());
}

// min_tokens: until that many tokens are out, a sampling row's bias gives
// its stop tokens -inf (after the request's own biases); from then on not.
TEST(EngineLoop, MinTokensMasksTheStopTokensUntilThatManyAreOut) {
  SchedulerConfig c = base_only_config(64);
  ManualClock clock;
  FakeExecutor exec(FakeExecutorOptions{.vocab_size = 1000, .kv_block_size = 16, .kv_num_blocks = 32,
                                        .applies_logit_bias = true});
  StaticAdapterSource source;
  RecordingSink sink;
  auto e = Engine::create(c, exec, source, clock, sink);
  ASSERT_TRUE(e.ok()) << e.error().to_string();
  Request r;
  r.id = 1;
  r.prompt = {1, 2, 3};
  r.max_tokens = 6;
  r.min_tokens = 4;
  r.stop_token_ids = {7, 5000, 2};  // 5000 is outside the vocabulary: never sampled, never masked
  r.logit_bias = {{9, 1.5f}};
  ASSERT_TRUE(e.value()->submit(r).ok());
  StepResult result;
  std::vector<size_t> masked;  // per sample: how many -inf entries
  for (int step = 0; step < 20 && e.value()->has_work(); ++step) {
    const StepPlan& plan = e.value()->plan_step(clock.now_ms());
    for (const SeqRow& row : plan.rows) {
      if (!row.sample) continue;
      ASSERT_GE(row.bias_count, 1u);
      EXPECT_EQ(plan.logit_bias[row.bias_offset].token, 9);  // its own bias first
      size_t n = 0;
      for (uint32_t i = 1; i < row.bias_count; ++i) {
        const LogitBias& b = plan.logit_bias[row.bias_offset + i];
        EXPECT_TRUE(b.token == 7 || b.token == 2) << b.token;
        EXPECT_TRUE(std::isinf(b.bias) && b.bias < 0);
        ++n;
      }
      masked.push_back(n);
    }
    const Status st = plan.rows.empty() ? ok_status() : exec.step(plan, result);
    if (plan.rows.empty()) result.clear();
    ASSERT_TRUE(e.value()->complete_step(st, result, clock.now_ms()).ok());
  }
  EXPECT_EQ(masked, (std::vector<size_t>{2, 2, 2, 2, 0, 0}));
}

TEST(EngineLoop, LogitBiasIsValidatedAndRefusedByAnExecutorThatDoesNotApplyIt) {
  SchedulerConfig c = base_only_config(16);
  ManualClock clock;
  auto check = [&](bool applies, std::vector<LogitBias> bias, ErrorCode code, const std::string& words) {
    FakeExecutor exec(FakeExecutorOptions{.vocab_size = 1000, .kv_block_size = 16, .kv_num_blocks = 32,
                                          .applies_logit_bias = applies});
    StaticAdapterSource source;
    RecordingSink sink;
    auto e = Engine::create(c, exec, source, clock, sink);
    ASSERT_TRUE(e.ok()) << e.error().to_string();
    Request r;
    r.id = 1;
    r.prompt = {1, 2, 3};
    r.logit_bias = std::move(bias);
    auto st = e.value()->submit(r);
    ASSERT_FALSE(st.ok()) << words;
    EXPECT_EQ(st.error().code, code) << st.error().message;
    EXPECT_NE(st.error().message.find(words), std::string::npos) << st.error().message;
  };
  check(false, {{5, 1.0f}}, ErrorCode::kUnsupported, "logit_bias: executor 'fake' does not apply one");
  {  // min_tokens holds stop tokens back with a bias: refused where none applies; bounded by max_tokens
    FakeExecutor exec(FakeExecutorOptions{.vocab_size = 1000, .kv_block_size = 16, .kv_num_blocks = 32});
    StaticAdapterSource source;
    RecordingSink sink;
    auto e = Engine::create(c, exec, source, clock, sink);
    ASSERT_TRUE(e.ok());
    Request r;
    r.id = 1;
    r.prompt = {1, 2, 3};
    r.max_tokens = 8;
    r.min_tokens = 3;
    r.stop_token_ids = {2};
    auto st = e.value()->submit(r);
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().code, ErrorCode::kUnsupported);
    EXPECT_NE(st.error().message.find("min_tokens: executor 'fake' cannot keep the stop tokens"), std::string::npos);
    r.stop_token_ids.clear();  // nothing to hold back: only stop strings wait, which the engine does itself
    EXPECT_TRUE(e.value()->submit(r).ok());
    r.id = 2;
    r.min_tokens = 9;
    st = e.value()->submit(r);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.error().message.find("min_tokens = 9 exceeds max_tokens = 8"), std::string::npos);
  }
  check(true, {{1000, 1.0f}}, ErrorCode::kInvalidArgument,
        "logit_bias of token 1000: outside the vocabulary [0, 1000)");
  check(true, {{-1, 1.0f}}, ErrorCode::kInvalidArgument, "logit_bias of token -1: a token id is >= 0");
  check(true, {{7, 100.5f}}, ErrorCode::kInvalidArgument, "logit_bias of token 7 = 100.5: must be in [-100, 100]");
  check(true, {{7, std::nanf("")}}, ErrorCode::kInvalidArgument, "must be in [-100, 100]");
  check(true, {{7, 1.0f}, {3, 2.0f}, {7, -1.0f}}, ErrorCode::kInvalidArgument, "logit_bias lists token 7 twice");
  {
    FakeExecutor exec(FakeExecutorOptions{.vocab_size = 1000, .kv_block_size = 16, .kv_num_blocks = 32});
    StaticAdapterSource source;
    RecordingSink sink;
    auto e = Engine::create(c, exec, source, clock, sink);
    ASSERT_TRUE(e.ok());
    Request r;
    r.id = 1;
    r.prompt = {1, 2, 3};
    r.stop_token_ids.assign(kMaxStopTokenIds + 1, 2);
    auto st = e.value()->submit(r);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.error().message.find("stop_token_ids has 1025 ids; at most 1024"), std::string::npos);
  }
  std::vector<LogitBias> many(kMaxLogitBias + 1);
  for (size_t i = 0; i < many.size(); ++i) many[i].token = int32_t(i);
  check(true, many, ErrorCode::kInvalidArgument, "logit_bias has 301 tokens; at most 300");
}

TEST(EngineLoop, ConfigMustFitTheExecutor) {
  FakeExecutor exec(FakeExecutorOptions{.kv_block_size = 16, .kv_num_blocks = 100, .num_adapter_slots = 2});
  StaticAdapterSource source;
  ManualClock clock;
  RecordingSink sink;
  SchedulerConfig c;
  c.kv_block_size = 16;
  c.num_kv_blocks = 100;
  c.num_slots = 3;
  auto e = Engine::create(c, exec, source, clock, sink);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("num_slots"), std::string::npos) << e.error().message;
  c.num_slots = 2;
  c.kv_block_size = 8;
  EXPECT_FALSE(Engine::create(c, exec, source, clock, sink).ok());
  c.kv_block_size = 16;
  c.num_kv_blocks = 101;
  EXPECT_FALSE(Engine::create(c, exec, source, clock, sink).ok());
  c.num_kv_blocks = 100;
  EXPECT_TRUE(Engine::create(c, exec, source, clock, sink).ok());
}

// A device's step capacity is part of its info: a configuration that could
// plan a step the device refuses is rejected at create, naming the field,
// instead of failing requests at run time.
TEST(EngineLoop, ConfigMustFitTheExecutorsStepCapacity) {
  FakeExecutor exec(FakeExecutorOptions{.kv_num_blocks = 100, .num_adapter_slots = 2, .max_tokens_per_step = 256,
                                        .max_rows = 32});
  StaticAdapterSource source;
  ManualClock clock;
  RecordingSink sink;
  SchedulerConfig c;
  c.num_kv_blocks = 100;
  c.num_slots = 2;
  c.max_tokens_per_step = 512;
  c.max_running_seqs = 16;
  auto e = Engine::create(c, exec, source, clock, sink);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(e.error().message.find("max_tokens_per_step = 512"), std::string::npos) << e.error().message;
  EXPECT_NE(e.error().message.find("256"), std::string::npos) << e.error().message;
  c.max_tokens_per_step = 256;
  c.max_running_seqs = 64;
  e = Engine::create(c, exec, source, clock, sink);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("max_running_seqs = 64"), std::string::npos) << e.error().message;
  c.max_running_seqs = 32;
  e = Engine::create(c, exec, source, clock, sink);
  ASSERT_TRUE(e.ok()) << e.error().to_string();
  // At the limits, a full load runs: every plan fits the device.
  for (int i = 0; i < 40; ++i) {
    Request r;
    r.id = RequestId(i + 1);
    r.prompt.assign(100, 7);
    r.max_tokens = 4;
    ASSERT_TRUE((*e)->submit(r).ok());
  }
  ASSERT_TRUE((*e)->run_until_idle(10000).ok());
  for (const auto& ev : sink.all) EXPECT_NE(ev.kind, EventKind::kFailed) << ev.error.to_string();
  EXPECT_TRUE(exec.violations().empty());
}

TEST(EngineLoop, RunUntilIdleReportsWorkLeft) {
  SchedulerConfig c;
  c.num_slots = 1;
  c.max_tokens_per_step = 4;
  c.max_running_seqs = 1;
  c.num_kv_blocks = 16;
  c.kv_block_size = 4;
  Trace t(c);
  t.submit("", 2, 10);
  Status s = t.engine().run_until_idle(3);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::kDeadlineExceeded);
  EXPECT_TRUE(t.engine().run_until_idle(100).ok());
  t.expect_tokens_consistent();
}

}  // namespace
}  // namespace myriad::testing

namespace myriad::testing {
namespace {

// plan_step / complete_step, driven by the caller around its own executor
// call, give exactly the events step() gives; a failed device step reported
// through complete_step fails the rows that ran, and the engine goes on.
TEST(EngineLoop, PlanAndCompleteStepEqualStep) {
  auto run = [](bool split, bool fail_third_step) {
    SchedulerConfig c;
    c.num_slots = 2;
    c.num_kv_blocks = 64;
    c.max_tokens_per_step = 8;
    c.max_running_seqs = 4;
    ManualClock clock;
    FakeExecutor exec(FakeExecutorOptions{.kv_num_blocks = 64, .num_adapter_slots = 2, .load_steps = 1,
                                          .clock = &clock, .step_ms = 1.0});
    StaticAdapterSource source;
    source.put(testing::test_adapter("a"), named_weights("a"));
    source.put(testing::test_adapter("b"), named_weights("b"));
    RecordingSink sink;
    auto e = Engine::create(c, exec, source, clock, sink);
    EXPECT_TRUE(e.ok());
    for (RequestId id = 1; id <= 6; ++id) {
      Request r;
      r.id = id * 1000;
      r.adapters = testing::adapter_use(id % 3 == 0 ? "" : id % 3 == 1 ? "a" : "b");
      r.prompt.assign(size_t(3 + id), int32_t(id));
      r.max_tokens = uint32_t(2 + id);
      EXPECT_TRUE((*e)->submit(r).ok());
    }
    StepResult result;
    for (int step = 0; step < 200 && (*e)->has_work(); ++step) {
      if (fail_third_step && step == 2) exec.fail_next_step(make_error(ErrorCode::kInternal, "device lost"));
      if (!split) {
        (void)(*e)->step();
        continue;
      }
      const StepPlan& plan = (*e)->plan_step(clock.now_ms());
      const Status st = plan.rows.empty() ? ok_status() : exec.step(plan, result);
      if (plan.rows.empty()) result.clear();
      (void)(*e)->complete_step(st, result, clock.now_ms());
    }
    EXPECT_FALSE((*e)->has_work());
    std::vector<std::string> out;
    for (const RequestEvent& ev : sink.all)
      out.push_back(std::to_string(ev.id) + ":" + std::to_string(int(ev.kind)) + ":" + std::to_string(ev.token) + "@" +
                    std::to_string(ev.time_ms));
    return out;
  };
  for (bool fail : {false, true}) {
    SCOPED_TRACE(fail ? "with a failed step" : "no failure");
    const auto a = run(false, fail), b = run(true, fail);
    EXPECT_EQ(a, b);
    EXPECT_FALSE(a.empty());
  }
  const auto failed = run(true, true);
  EXPECT_NE(std::find_if(failed.begin(), failed.end(), [](const std::string& s) { return s.find(":3:") != std::string::npos; }),
            failed.end()) << "the failed step's rows get Failed events";
}

}  // namespace
}  // namespace myriad::testing
