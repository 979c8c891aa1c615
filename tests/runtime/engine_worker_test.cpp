// The engine on its own thread: submits and cancels from other threads,
// every accepted request answered once, idle sleeping, wakeups from fetches,
// draining and cancelling stops.
#include "runtime/engine_worker.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/fake_executor.h"
#include "scheduler_trace.h"
#include "test_adapters.h"

namespace myriad::testing {
namespace {

class LockedSink final : public EventSink {
 public:
  void on_event(const RequestEvent& e) override {
    std::lock_guard lock(mu);
    if (e.kind == EventKind::kToken) tokens[e.id].push_back(e.token);
    if (e.is_final()) {
      ++finals[e.id];
      last[e.id] = e;
    }
  }
  size_t num_final() {
    std::lock_guard lock(mu);
    return finals.size();
  }
  std::mutex mu;
  std::map<RequestId, std::vector<int32_t>> tokens;
  std::map<RequestId, int> finals;
  std::map<RequestId, RequestEvent> last;
};

SchedulerConfig config() {
  SchedulerConfig c;
  c.num_slots = 2;
  c.num_kv_blocks = 512;
  c.kv_block_size = 4;
  c.max_running_seqs = 16;
  c.max_tokens_per_step = 64;
  return c;
}

Request request(RequestId id, const std::string& adapter, uint32_t max_tokens) {
  Request r;
  r.id = id;
  r.adapters = adapter_use(adapter);
  r.prompt = {1, 2, 3};
  r.max_tokens = max_tokens;
  r.sampling.temperature = 0.0f;
  return r;
}

bool wait_for(const std::function<bool()>& done, int ms = 10000) {
  for (int i = 0; i < ms && !done(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return done();
}

TEST(EngineWorker, RequestsFromManyThreadsAreAnsweredOnceEach) {
  FakeExecutor exec(FakeExecutorOptions{.kv_block_size = 4, .kv_num_blocks = 512, .num_adapter_slots = 2,
                                        .load_steps = 1});
  StaticAdapterSource source;
  for (const char* n : {"a", "b", "c"}) source.put(test_adapter(n), named_weights(n));
  LockedSink sink;
  auto w = EngineWorker::start(config(), exec, source, sink);
  ASSERT_TRUE(w.ok()) << w.error().to_string();
  constexpr int kThreads = 4, kEach = 50;
  std::vector<std::thread> threads;
  std::atomic<int> refused{0};
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        const RequestId id = RequestId(t * 1000 + i + 1);
        const char* names[] = {"", "a", "b", "c"};
        if (!(*w)->submit(request(id, names[(t + i) % 4], uint32_t(1 + i % 7))).ok()) ++refused;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(refused.load(), 0);
  ASSERT_TRUE(wait_for([&] { return sink.num_final() == size_t(kThreads * kEach); }));
  (*w)->stop(EngineWorker::StopMode::kDrain);
  std::lock_guard lock(sink.mu);
  for (const auto& [id, n] : sink.finals) {
    EXPECT_EQ(n, 1) << "request " << id;
    const RequestEvent& f = sink.last[id];
    EXPECT_EQ(f.kind, EventKind::kFinished) << f.error.to_string();
    const int t = int((id - 1) / 1000), i = int((id - 1) % 1000);
    const char* names[] = {"", "a", "b", "c"};
    const auto& toks = sink.tokens[id];
    EXPECT_EQ(toks.size(), size_t(1 + i % 7));
    for (size_t k = 0; k < toks.size(); ++k)
      EXPECT_EQ(toks[k], FakeExecutor::token_for(id, uint32_t(k), names[(t + i) % 4], 1000)) << id;
  }
  EXPECT_TRUE(exec.violations().empty());
  EXPECT_EQ((*w)->stats().in_flight, 0u);
}

TEST(EngineWorker, BadRequestsAreRefusedAtOnceAndDuplicatesToo) {
  // Request 2's adapter loads only once the duplicate has been refused, so
  // request 2 is still in flight then however the threads are scheduled.
  std::promise<void> open_gate;
  std::shared_future<void> gate = open_gate.get_future().share();
  AdapterCache cache(1 << 20);
  ASSERT_TRUE(cache.add(test_adapter("gated"), [gate]() -> Result<std::shared_ptr<const LoraWeights>> {
                     gate.wait();
                     return std::shared_ptr<const LoraWeights>(named_weights("gated"));
                   }).ok());
  CachedAdapterSource source(cache);
  FakeExecutor exec(FakeExecutorOptions{.kv_block_size = 4, .kv_num_blocks = 512, .num_adapter_slots = 2});
  LockedSink sink;
  auto w = EngineWorker::start(config(), exec, source, sink);
  ASSERT_TRUE(w.ok());
  Request bad = request(1, "", 4);
  bad.prompt.clear();
  Status st = (*w)->submit(bad);
  EXPECT_FALSE(st.ok());
  if (!st.ok()) {
    EXPECT_NE(st.error().message.find("empty prompt"), std::string::npos);
  }
  EXPECT_TRUE((*w)->submit(request(2, "gated", 200)).ok());
  st = (*w)->submit(request(2, "", 4));
  EXPECT_FALSE(st.ok());
  if (!st.ok()) {
    EXPECT_NE(st.error().message.find("already in flight"), std::string::npos);
  }
  open_gate.set_value();
  (*w)->stop(EngineWorker::StopMode::kDrain);
  EXPECT_EQ(sink.finals.size(), 1u);  // only request 2, which ran to its length
  EXPECT_EQ(sink.last[2].reason, FinishReason::kLength);
}

TEST(EngineWorker, CancelFromAnotherThreadAndCancellingStop) {
  FakeExecutor exec(FakeExecutorOptions{.kv_block_size = 4, .kv_num_blocks = 512, .num_adapter_slots = 2});
  TraceSource source;  // request 2's adapter is never fetched: it cannot finish before the cancel
  source.table.put(test_adapter("a"), named_weights("a"));
  source.hold(true);
  LockedSink sink;
  SchedulerConfig c = config();
  auto w = EngineWorker::start(c, exec, source, sink);
  ASSERT_TRUE(w.ok());
  for (RequestId id = 1; id <= 4; ++id) ASSERT_TRUE((*w)->submit(request(id, id == 2 ? "a" : "", 400)).ok());
  std::thread canceller([&] { (*w)->cancel(2); });
  canceller.join();
  ASSERT_TRUE(wait_for([&] {
    std::lock_guard lock(sink.mu);
    return sink.finals.count(2) > 0;
  }));
  (*w)->stop(EngineWorker::StopMode::kCancel);
  EXPECT_FALSE((*w)->submit(request(9, "", 4)).ok());  // stopped: refused
  std::lock_guard lock(sink.mu);
  ASSERT_EQ(sink.finals.size(), 4u);
  for (const auto& [id, n] : sink.finals) EXPECT_EQ(n, 1) << id;
  EXPECT_EQ(sink.last[2].reason, FinishReason::kCancelled);
  EXPECT_EQ((*w)->stats().in_flight, 0u);
}

TEST(EngineWorker, SleepsWhenIdleAndWakesForAFetchedAdapter) {
  AdapterCache cache(1 << 20);
  ASSERT_TRUE(cache.add(test_adapter("slow"), []() -> Result<std::shared_ptr<const LoraWeights>> {
                     std::this_thread::sleep_for(std::chrono::milliseconds(40));  // the store is slow
                     return std::shared_ptr<const LoraWeights>(named_weights("slow"));
                   }).ok());
  CachedAdapterSource source(cache);
  FakeExecutor exec(FakeExecutorOptions{.kv_block_size = 4, .kv_num_blocks = 512, .num_adapter_slots = 2});
  LockedSink sink;
  auto w = EngineWorker::start(config(), exec, source, sink);
  ASSERT_TRUE(w.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_EQ((*w)->stats().steps, 0u);  // idle: no steps
  ASSERT_TRUE((*w)->submit(request(5, "slow", 3)).ok());
  ASSERT_TRUE(wait_for([&] { return sink.num_final() == 1; }));
  EXPECT_EQ(sink.last[5].kind, EventKind::kFinished);
  EXPECT_EQ(sink.tokens[5].size(), 3u);
  const uint64_t steps = (*w)->stats().steps;
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_EQ((*w)->stats().steps, steps);  // idle again
  const std::string m = (*w)->metrics_json();
  EXPECT_NE(m.find("\"ttft_ms\""), std::string::npos);
  (*w)->stop(EngineWorker::StopMode::kDrain);
  EXPECT_NE((*w)->metrics_json().find("\"steps\""), std::string::npos);  // also once stopped
}

// Steps that take real time (a row of more than one token: a prefill of
// `prefill_ms`; otherwise `decode_ms`), logged ('S') in the order they run
// beside the background's units ('u').
class TimedExecutor final : public Executor {
 public:
  TimedExecutor(FakeExecutor& inner, int prefill_ms, int decode_ms, std::string& log)
      : inner_(inner), prefill_ms_(prefill_ms), decode_ms_(decode_ms), log_(log) {}
  const ExecutorInfo& info() const override { return inner_.info(); }
  Status step(const StepPlan& plan, StepResult& out) override {
    bool prefill = false;
    for (const SeqRow& r : plan.rows) prefill = prefill || r.num_tokens > 1;
    std::this_thread::sleep_for(std::chrono::milliseconds(prefill ? prefill_ms_ : decode_ms_));
    log_ += prefill ? 'P' : 'S';
    return inner_.step(plan, out);
  }
  Status begin_load_adapter(int32_t slot, std::shared_ptr<const LoraWeights> weights, LoadDone done) override {
    return inner_.begin_load_adapter(slot, std::move(weights), std::move(done));
  }
  void unload_adapter(int32_t slot) override { inner_.unload_adapter(slot); }

 private:
  FakeExecutor& inner_;
  int prefill_ms_, decode_ms_;
  std::string& log_;  // the worker's thread only, while it runs
};

class OneMsUnits final : public BackgroundWork {
 public:
  explicit OneMsUnits(std::string& log) : log_(log) {}
  bool has_work() override { return true; }
  void run_once() override {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    log_ += 'u';
  }

 private:
  std::string& log_;
};

// Background work beside requests: a step earns the work at most about one
// decode step of units, whatever it cost: the first step of a worker (a
// prefill of 60 ms here) once bought 60 ms of units before the stream's
// second token; now only the unit its share is due.
TEST(EngineWorker, ALongPrefillBuysTheBackgroundNoMoreThanADecodeStepOfUnits) {
  AdapterCache cache(1 << 20);
  CachedAdapterSource source(cache);
  FakeExecutor fake(FakeExecutorOptions{.kv_block_size = 4, .kv_num_blocks = 512, .num_adapter_slots = 2});
  std::string log;
  TimedExecutor exec(fake, 60, 4, log);
  LockedSink sink;
  auto w = EngineWorker::start(config(), exec, source, sink);
  ASSERT_TRUE(w.ok());
  OneMsUnits units(log);
  (*w)->set_background(&units, 0.25);
  std::this_thread::sleep_for(std::chrono::milliseconds(10));  // the work alone: units only
  Request r = request(1, "", 12);
  r.adapters.clear();  // the base model
  r.prompt.assign(16, 3);
  ASSERT_TRUE((*w)->submit(std::move(r)).ok());
  ASSERT_TRUE(wait_for([&] { return sink.num_final() == 1; }));
  (*w)->stop(EngineWorker::StopMode::kDrain);
  const size_t first = log.find_first_of("PS");
  ASSERT_NE(first, std::string::npos);
  ASSERT_EQ(log[first], 'P') << log;
  const std::string steps = log.substr(first);
  // Right after the prefill, before any decode step set the bound: the
  // unit its share is due and no more (the old credit of the prefill's
  // 60 ms ran ~18), whatever the machine's load does to the sleeps.
  const size_t after_prefill = steps.find_first_not_of('u', 1) - 1;
  EXPECT_LE(after_prefill, 2u) << log;
  // Anywhere: each 1 ms unit owes 3 ms of inference at share 0.25, so a
  // 4 ms decode step earns about one unit; a loaded machine's slower steps a
  // few more, never a prefill's worth.
  size_t longest = 0, run = 0;
  for (char c : steps) {
    run = c == 'u' ? run + 1 : 0;
    longest = std::max(longest, run);
  }
  EXPECT_LE(longest, 8u) << log;
  EXPECT_EQ(sink.tokens[1].size(), 12u);
}

}  // namespace
}  // namespace myriad::testing
