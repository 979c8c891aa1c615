// Requests that score their prompt (prompt_logits): the logits of the last
// prompt position (kLast) or of every prompt position (kAll) come back as
// kLogits events, each position exactly once and in order, also when the
// prompt is prefilled in chunks and when the request is preempted and
// recomputed; with max_tokens = 0 the request then finishes with no tokens.
// FakeExecutor's logits are a function of (input token, position, v), so
// each reported position can be checked against the prompt.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <vector>

#include "scheduler_trace.h"
#include "test_adapters.h"

namespace myriad::testing {
namespace {

constexpr int32_t kVocab = 50;

// Collects each request's logits rows by position, and its other events.
class LogitsSink final : public EventSink {
 public:
  void on_event(const RequestEvent& e) override {
    auto& r = by_id[e.id];
    if (e.kind == EventKind::kLogits) {
      ASSERT_EQ(e.logits.size(), size_t(e.logits_count) * kVocab);
      for (uint32_t i = 0; i < e.logits_count; ++i) {
        ASSERT_EQ(e.logits_start + i, r.next_position) << "request " << e.id << ": positions out of order or repeated";
        r.rows.emplace_back(e.logits.begin() + long(i) * kVocab, e.logits.begin() + long(i + 1) * kVocab);
        ++r.next_position;
      }
    } else if (e.kind == EventKind::kToken) {
      ++r.tokens;
    } else {
      ++r.finals;
      r.final_event = e;
    }
  }
  struct Out {
    uint32_t next_position = 0;  // the first position a kAll request reports is 0
    std::vector<std::vector<float>> rows;
    int tokens = 0, finals = 0;
    RequestEvent final_event;
  };
  std::map<RequestId, Out> by_id;
};

std::vector<float> expected_row(const std::vector<int32_t>& prompt, int32_t pos) {
  std::vector<float> v(kVocab);
  for (int32_t i = 0; i < kVocab; ++i) v[size_t(i)] = FakeExecutor::logit_for(prompt[size_t(pos)], pos, i);
  return v;
}

struct Rig {
  SchedulerConfig config;
  FakeExecutorOptions options;
};

Rig small_setup(int32_t kv_blocks, int32_t tokens_per_step) {
  Rig s;
  s.config.num_slots = 1;
  s.config.num_kv_blocks = kv_blocks;
  s.config.kv_block_size = 4;
  s.config.max_tokens_per_step = tokens_per_step;
  s.config.max_running_seqs = 4;
  s.options = FakeExecutorOptions{.vocab_size = kVocab, .kv_block_size = 4, .kv_num_blocks = kv_blocks,
                                  .num_adapter_slots = 1};
  return s;
}

TEST(EngineLogits, AllPromptPositionsOnceEachAcrossChunks) {
  Rig st = small_setup(64, 16);
  ManualClock clock;
  FakeExecutor exec(st.options);
  StaticAdapterSource source;
  source.put(testing::test_adapter("a"), named_weights("a"));
  LogitsSink sink;
  auto engine = Engine::create(st.config, exec, source, clock, sink);
  ASSERT_TRUE(engine.ok()) << engine.error().to_string();
  std::vector<int32_t> prompt(40);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = int32_t(3 + 7 * i) % kVocab;
  Request score;  // every position (3 chunks of <= 16), nothing generated
  score.id = 1;
  score.prompt = prompt;
  score.max_tokens = 0;
  score.prompt_logits = LogitsRequest::kAll;
  Request all = score;  // every position, then 3 tokens, on an adapter
  all.id = 2;
  all.prompt_logits = LogitsRequest::kAll;
  all.max_tokens = 3;
  all.adapters = testing::adapter_use("a");
  Request plain;  // no logits: rejected with max_tokens = 0, fine with tokens
  plain.id = 3;
  plain.prompt = {1, 2, 3};
  plain.max_tokens = 0;
  EXPECT_FALSE((*engine)->submit(plain).ok());
  plain.max_tokens = 2;
  const RequestId id_score = *(*engine)->submit(score);
  const RequestId id_all = *(*engine)->submit(all);
  const RequestId id_plain = *(*engine)->submit(plain);
  ASSERT_TRUE((*engine)->run_until_idle(1000).ok());
  EXPECT_TRUE(exec.violations().empty());

  auto& sc = sink.by_id[id_score];
  EXPECT_EQ(sc.finals, 1);
  EXPECT_EQ(sc.final_event.reason, FinishReason::kLength);
  EXPECT_EQ(sc.final_event.num_output_tokens, 0u);
  EXPECT_EQ(sc.tokens, 0);
  ASSERT_EQ(sc.rows.size(), prompt.size());
  for (int32_t p = 0; p < int32_t(prompt.size()); ++p) EXPECT_EQ(sc.rows[size_t(p)], expected_row(prompt, p)) << "position " << p;
  auto& a = sink.by_id[id_all];
  EXPECT_EQ(a.finals, 1);
  EXPECT_EQ(a.tokens, 3);
  ASSERT_EQ(a.rows.size(), prompt.size());
  for (int32_t p = 0; p < int32_t(prompt.size()); ++p) EXPECT_EQ(a.rows[size_t(p)], expected_row(prompt, p)) << "position " << p;
  EXPECT_TRUE(sink.by_id[id_plain].rows.empty());
  EXPECT_EQ(sink.by_id[id_plain].tokens, 2);
}

// kLast reports position P-1 only: a sink that expects it from P-1.
class LastSink final : public EventSink {
 public:
  void on_event(const RequestEvent& e) override {
    if (e.kind != EventKind::kLogits) return;
    ++events[e.id];
    start[e.id] = e.logits_start;
    row[e.id].assign(e.logits.begin(), e.logits.end());
  }
  std::map<RequestId, int> events;
  std::map<RequestId, uint32_t> start;
  std::map<RequestId, std::vector<float>> row;
};

TEST(EngineLogits, LastPositionComesOnceWithItsValues) {
  Rig st = small_setup(64, 16);
  ManualClock clock;
  FakeExecutor exec(st.options);
  StaticAdapterSource source;
  LastSink sink;
  auto engine = Engine::create(st.config, exec, source, clock, sink);
  ASSERT_TRUE(engine.ok());
  for (size_t n : {1u, 15u, 16u, 17u, 40u}) {
    Request r;
    r.id = n;
    for (size_t i = 0; i < n; ++i) r.prompt.push_back(int32_t(i * 11 + n) % kVocab);
    r.max_tokens = n % 2 ? 0 : 2;
    r.prompt_logits = LogitsRequest::kLast;
    const RequestId id = *(*engine)->submit(r);
    ASSERT_TRUE((*engine)->run_until_idle(1000).ok());
    EXPECT_EQ(sink.events[id], 1) << n;
    EXPECT_EQ(sink.start[id], n - 1) << n;
    EXPECT_EQ(sink.row[id], expected_row(r.prompt, int32_t(n - 1))) << n;
  }
}

// Random mixes of scoring and generating requests in a KV pool small enough
// to preempt: every scoring request reports each wanted position once, with
// the right values, and every request ends once.
TEST(EngineLogits, PreemptionNeverRepeatsOrLosesAPosition) {
  uint64_t preemptions = 0;
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    Rig st = small_setup(16, 12);  // 64 positions, four requests running
    ManualClock clock;
    FakeExecutor exec(st.options);
    StaticAdapterSource source;
    LogitsSink sink;
    auto engine = Engine::create(st.config, exec, source, clock, sink);
    ASSERT_TRUE(engine.ok());
    std::map<RequestId, Request> sent;
    for (int i = 0; i < 10; ++i) {
      Request r;
      r.id = RequestId(100 + i);
      const size_t n = 1 + rng() % 30;
      for (size_t k = 0; k < n; ++k) r.prompt.push_back(int32_t(rng() % kVocab));
      r.prompt_logits = rng() % 3 == 0 ? LogitsRequest::kNone : LogitsRequest::kAll;
      r.max_tokens = uint32_t(rng() % 30) + (r.prompt_logits == LogitsRequest::kNone ? 1 : 0);
      auto id = (*engine)->submit(r);
      ASSERT_TRUE(id.ok()) << id.error().to_string();
      sent[*id] = r;
    }
    ASSERT_TRUE((*engine)->run_until_idle(5000).ok());
    EXPECT_TRUE(exec.violations().empty()) << exec.violations().front();
    for (const auto& [id, r] : sent) {
      const auto& o = sink.by_id[id];
      EXPECT_EQ(o.finals, 1) << id;
      EXPECT_EQ(o.final_event.kind, EventKind::kFinished) << o.final_event.error.to_string();
      if (r.prompt_logits == LogitsRequest::kNone) {
        EXPECT_TRUE(o.rows.empty());
        continue;
      }
      ASSERT_EQ(o.rows.size(), r.prompt.size()) << "request " << id;
      for (int32_t p = 0; p < int32_t(r.prompt.size()); ++p) ASSERT_EQ(o.rows[size_t(p)], expected_row(r.prompt, p)) << id;
    }
    preemptions += (*engine)->metrics().preemptions;
  }
  EXPECT_GT(preemptions, 20u) << "the pool is meant to be small enough to preempt";
}

}  // namespace
}  // namespace myriad::testing
