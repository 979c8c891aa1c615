// The fetch phase: adapter sources answer exactly once, from their own
// thread where they have one, and the engine runs a request only after its
// adapter's fetch was answered.
#include "runtime/adapter_source.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "runtime/engine.h"
#include "runtime/engine_inbox.h"
#include "runtime/fake_executor.h"
#include "runtime/request_validation.h"
#include "scheduler_trace.h"
#include "test_adapters.h"

namespace myriad::testing {
namespace {

using FetchResult = Result<std::shared_ptr<const LoraWeights>>;

TEST(AdapterSource, StaticAnswersInlineAndNamesUnknownIds) {
  StaticAdapterSource s;
  s.put(test_adapter("a"), named_weights("a"));
  int calls = 0;
  s.fetch(test_adapter("a"), [&](FetchResult r) {
    ++calls;
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.value()->name, "a");
  });
  s.fetch(test_adapter("a", 2), [&](FetchResult r) {
    ++calls;
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::kNotFound);
    EXPECT_NE(r.error().message.find("t/a@2"), std::string::npos) << r.error().message;
  });
  EXPECT_EQ(calls, 2);
}

TEST(AdapterSource, CachedFetchesOnItsOwnThroughTheHostCache) {
  AdapterCache cache(1 << 20);
  std::atomic<int> loads{0};
  std::atomic<bool> release{false};
  const std::thread::id caller = std::this_thread::get_id();
  ASSERT_TRUE(cache.add(test_adapter("a"), [&]() -> FetchResult {
                     ++loads;
                     while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));  // a slow disk
                     return std::shared_ptr<const LoraWeights>(named_weights("a"));
                   }).ok());
  CachedAdapterSource source(cache);
  std::mutex mu;
  std::condition_variable cv;
  int answered = 0;
  std::thread::id answered_on;
  auto done = [&](FetchResult r) {
    EXPECT_TRUE(r.ok());
    std::lock_guard lock(mu);
    ++answered;
    answered_on = std::this_thread::get_id();
    cv.notify_all();
  };
  // fetch() returns while the load is still blocked: were it to wait for the
  // load, this test would never get to release it.
  source.fetch(test_adapter("a"), done);
  source.fetch(test_adapter("a"), done);  // the second is a cache hit
  source.fetch(test_adapter("zzz"), [&](FetchResult r) {
    EXPECT_EQ(r.error().code, ErrorCode::kNotFound);
    std::lock_guard lock(mu);
    ++answered;
    cv.notify_all();
  });
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(answered, 0);
  }
  release = true;
  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return answered == 3; }));
  EXPECT_NE(answered_on, caller);
  EXPECT_EQ(loads.load(), 1);
}

TEST(AdapterSource, ShutdownAnswersQueuedFetchesCancelled) {
  AdapterCache cache(1 << 20);
  std::atomic<bool> release{false};
  ASSERT_TRUE(cache.add(test_adapter("slow"), [&]() -> FetchResult {
                     while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
                     return std::shared_ptr<const LoraWeights>(named_weights("slow"));
                   }).ok());
  std::atomic<int> ok{0}, cancelled{0};
  {
    CachedAdapterSource source(cache);
    for (int i = 0; i < 3; ++i)
      source.fetch(test_adapter("slow"), [&](FetchResult r) { ++(r.ok() ? ok : cancelled); });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the first is loading
    release = true;
  }  // destroyed: the one in progress finishes, the rest are answered
  EXPECT_EQ(ok.load() + cancelled.load(), 3);
  EXPECT_GE(ok.load(), 1);
}

TEST(EngineInbox, WakesTheOwnerOnEveryPost) {
  EngineInbox inbox;
  int wakes = 0;
  inbox.set_wakeup([&] { ++wakes; });
  std::thread t([&] {
    Completion c;
    c.kind = Completion::Kind::kLoaded;
    c.slot = 3;
    inbox.post(c);
  });
  t.join();
  std::vector<Completion> out;
  inbox.drain(out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].slot, 3);
  EXPECT_EQ(wakes, 1);
  inbox.drain(out);
  EXPECT_TRUE(out.empty());
}

// An engine over a source that answers on its own thread: the request
// waits (fetching), the base model's requests run meanwhile, and it runs
// once the answer is in the inbox.
TEST(AdapterSource, EngineRunsARequestOnceItsFetchIsAnswered) {
  AdapterCache cache(1 << 20);
  ASSERT_TRUE(cache.add(test_adapter("a"), [&]() -> FetchResult {
                     std::this_thread::sleep_for(std::chrono::milliseconds(30));
                     return std::shared_ptr<const LoraWeights>(named_weights("a"));
                   }).ok());
  CachedAdapterSource source(cache);
  SchedulerConfig c;
  c.num_slots = 2;
  c.num_kv_blocks = 64;
  c.kv_block_size = 4;
  FakeExecutor exec(FakeExecutorOptions{.kv_block_size = 4, .kv_num_blocks = 64, .num_adapter_slots = 2});
  SteadyClock clock;
  RecordingSink sink;
  auto e = Engine::create(c, exec, source, clock, sink);
  ASSERT_TRUE(e.ok()) << e.error().to_string();
  Engine& engine = **e;
  std::atomic<int> wakes{0};
  engine.set_wakeup([&] { ++wakes; });
  Request r;
  r.id = 7;
  r.adapters = adapter_use("a");
  r.prompt = {1, 2, 3};
  r.max_tokens = 2;
  ASSERT_TRUE(engine.submit(r).ok());
  Request base = r;
  base.id = 8;
  base.adapters.clear();
  ASSERT_TRUE(engine.submit(base).ok());
  ASSERT_TRUE(engine.step().ok());
  EXPECT_EQ(engine.last_schedule().plan.rows.size(), 1u);  // the base request only
  ASSERT_EQ(engine.last_schedule().waiting.size(), 1u);
  EXPECT_EQ(engine.last_schedule().waiting[0].reason, WaitReason::kFetching);
  for (int i = 0; i < 10000 && engine.has_work(); ++i) {
    ASSERT_TRUE(engine.step().ok());
    if (engine.last_schedule().plan.rows.empty()) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  EXPECT_FALSE(engine.has_work());
  EXPECT_GE(wakes.load(), 2);  // the fetch and the load were reported
  size_t tokens_of_7 = 0;
  for (const auto& ev : sink.all) tokens_of_7 += ev.id == 7 && ev.kind == EventKind::kToken;
  EXPECT_EQ(tokens_of_7, 2u);
  EXPECT_TRUE(exec.violations().empty());
}

TEST(RequestValidation, IsAFreeFunctionWithTheEnginesMessages) {
  SchedulerConfig c;
  c.num_slots = 2;
  c.num_kv_blocks = 8;
  c.kv_block_size = 4;
  c.vocab_size = 100;
  c.max_seq_len = 20;
  const RequestLimits lim = request_limits(c);
  Request r;
  r.id = 1;
  r.prompt = {1, 2};
  EXPECT_TRUE(validate_request(r, lim).ok());
  r.prompt = {1, 200};
  EXPECT_NE(validate_request(r, lim).error().message.find("outside the vocabulary [0, 100)"), std::string::npos);
  r.prompt = {1, 2};
  r.max_tokens = 30;
  EXPECT_NE(validate_request(r, lim).error().message.find("exceeds max_seq_len 20"), std::string::npos);
  r.max_tokens = 4;
  r.adapters = {AdapterUse{AdapterId{"t", "a", 0}}};
  EXPECT_NE(validate_request(r, lim).error().message.find("resolve it before submitting"), std::string::npos);
  r.adapters = {AdapterUse{test_adapter("a"), std::numeric_limits<float>::quiet_NaN()}};
  EXPECT_NE(validate_request(r, lim).error().message.find("not finite"), std::string::npos);
  r.adapters = {AdapterUse{test_adapter("a")}, AdapterUse{test_adapter("b")}, AdapterUse{test_adapter("c")}};
  EXPECT_NE(validate_request(r, lim).error().message.find("needs as many slots"), std::string::npos);
  r.adapters = {AdapterUse{test_adapter("a"), 0.5f}, AdapterUse{test_adapter("b"), 0.5f}};
  EXPECT_TRUE(validate_request(r, lim).ok());
  RequestLimits no_slots = lim;
  no_slots.num_slots = 0;
  EXPECT_EQ(validate_request(r, no_slots).error().code, ErrorCode::kUnsupported);
}

}  // namespace
}  // namespace myriad::testing
