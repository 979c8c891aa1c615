// Host adapter cache: byte budget, LRU eviction, pinning, unload, sharing
// one load between concurrent callers, failures keep nothing; a staging
// loader keeps the executor's staged form and counts its bytes.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "runtime/adapter_cache.h"
#include "runtime/fake_executor.h"

namespace myriad {
namespace {

// A loader making an adapter of exactly `floats` floats, counting its calls.
AdapterLoader fake_loader(size_t floats, std::atomic<int>* calls, int delay_ms = 0) {
  return [=]() -> Result<std::shared_ptr<const LoraWeights>> {
    if (calls) ++*calls;
    if (delay_ms) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    auto w = std::make_shared<LoraWeights>();
    w->num_layers = 1;
    w->modules.resize(kNumLinearModules);
    w->modules[0].rank = 1;
    w->modules[0].a.assign(floats, 1.0f);
    return std::shared_ptr<const LoraWeights>(std::move(w));
  };
}

constexpr size_t kKiB = 1024;

// (Built with append: GCC 12 warns falsely on "literal" + std::string at -O3.)
AdapterId nth(int i) {
  std::string n = "a";
  n.append(std::to_string(i));
  return {"t", n, 0};
}

TEST(AdapterCache, RegistrationIsNotCappedByBudget) {
  AdapterCache c(4 * kKiB);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(c.add(nth(i), fake_loader(1024, nullptr)).ok());
  EXPECT_EQ(c.num_registered(), 1000u);
  EXPECT_EQ(c.bytes_used(), 0u);
  EXPECT_FALSE(c.add({"t", "a1", 0}, fake_loader(1, nullptr)).ok());
  auto missing = c.get({"t", "zzz", 3});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
}

TEST(AdapterCache, LruEvictionUnderBudget) {
  AdapterCache c(3 * kKiB * 4 + 16);  // three 1024-float adapters fit
  std::atomic<int> calls{0};
  for (const char* n : {"a", "b", "c", "d"}) ASSERT_TRUE(c.add({"t", n, 0}, fake_loader(1024, &calls)).ok());
  for (const char* n : {"a", "b", "c"}) ASSERT_TRUE(c.get({"t", n, 0}).ok());
  EXPECT_EQ(calls.load(), 3);
  ASSERT_TRUE(c.get({"t", "a", 0}).ok());  // hit; b is now least recent
  EXPECT_EQ(calls.load(), 3);
  ASSERT_TRUE(c.get({"t", "d", 0}).ok());
  EXPECT_FALSE(c.cached({"t", "b", 0}));
  EXPECT_TRUE(c.cached({"t", "a", 0}) && c.cached({"t", "c", 0}) && c.cached({"t", "d", 0}));
  EXPECT_LE(c.bytes_used(), c.budget_bytes());
  EXPECT_EQ(c.stats().evictions, 1u);
  EXPECT_EQ(c.stats().hits, 1u);
}

TEST(AdapterCache, PinnedIsNeverEvicted) {
  AdapterCache c(2 * kKiB * 4);
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(c.add(nth(i), fake_loader(1024, nullptr)).ok());
  ASSERT_TRUE(c.pin({"t", "a0", 0}).ok());
  for (int round = 0; round < 3; ++round) {
    for (int i = 1; i < 6; ++i) ASSERT_TRUE(c.get(nth(i)).ok());
  }
  EXPECT_TRUE(c.cached({"t", "a0", 0}));
  EXPECT_FALSE(c.unload({"t", "a0", 0}).ok());
  c.unpin({"t", "a0", 0});
  EXPECT_TRUE(c.unload({"t", "a0", 0}).ok());
  EXPECT_FALSE(c.cached({"t", "a0", 0}));
}

TEST(AdapterCache, UnloadFreesMemory) {
  AdapterCache c(1 << 20);
  ASSERT_TRUE(c.add({"t", "a", 0}, fake_loader(1024, nullptr)).ok());
  std::weak_ptr<const LoraWeights> weak;
  {
    auto w = c.get({"t", "a", 0});
    ASSERT_TRUE(w.ok());
    weak = w.value();
  }
  EXPECT_EQ(c.bytes_used(), 4096u);
  EXPECT_FALSE(weak.expired());
  ASSERT_TRUE(c.unload({"t", "a", 0}).ok());
  EXPECT_EQ(c.bytes_used(), 0u);
  EXPECT_TRUE(weak.expired());  // nobody else held it: memory is gone
  EXPECT_TRUE(c.registered({"t", "a", 0}));
  ASSERT_TRUE(c.remove({"t", "a", 0}).ok());
  EXPECT_FALSE(c.registered({"t", "a", 0}));
}

TEST(AdapterCache, TooLargeAdapterIsServedButNotKept) {
  AdapterCache c(1000);
  ASSERT_TRUE(c.add({"t", "big", 0}, fake_loader(1024, nullptr)).ok());
  auto w = c.get({"t", "big", 0});
  ASSERT_TRUE(w.ok());
  EXPECT_FALSE(c.cached({"t", "big", 0}));
  EXPECT_EQ(c.bytes_used(), 0u);
  EXPECT_EQ(c.stats().uncached, 1u);
}

TEST(AdapterCache, FailedLoadKeepsNothing) {
  AdapterCache c(1 << 20);
  ASSERT_TRUE(c.add({"t", "bad", 0}, [] { return Result<std::shared_ptr<const LoraWeights>>(make_error(ErrorCode::kBadFile, "bad.safetensors: truncated")); }).ok());
  auto w = c.get({"t", "bad", 0});
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.error().message.find("truncated"), std::string::npos);
  EXPECT_FALSE(c.cached({"t", "bad", 0}));
  EXPECT_EQ(c.bytes_used(), 0u);
  EXPECT_FALSE(c.pin({"t", "bad", 0}).ok());
}

TEST(AdapterCache, ConcurrentGetsShareOneLoad) {
  AdapterCache c(1 << 20);
  std::atomic<int> calls{0};
  ASSERT_TRUE(c.add({"t", "a", 0}, fake_loader(256, &calls, 50)).ok());
  std::vector<std::thread> ts;
  std::atomic<int> ok{0};
  for (int i = 0; i < 4; ++i) ts.emplace_back([&] { ok += c.get({"t", "a", 0}).ok(); });
  for (auto& t : ts) t.join();
  EXPECT_EQ(ok.load(), 4);
  EXPECT_EQ(calls.load(), 1);
}

TEST(AdapterCache, AStagingLoaderKeepsTheStagedFormAndCountsItsBytes) {
  FakeExecutorOptions o;
  o.stages_adapters = true;
  FakeExecutor ex(o);
  AdapterCache c(1 << 20);
  std::atomic<int> calls{0};
  ASSERT_TRUE(c.add({"t", "a", 0}, staging_loader(fake_loader(4096, &calls), ex)).ok());
  auto w = c.get({"t", "a", 0});
  ASSERT_TRUE(w.ok()) << w.error().to_string();
  ASSERT_TRUE((*w)->staged);
  EXPECT_TRUE((*w)->modules[0].a.empty());  // the float32 copy is gone
  EXPECT_EQ((*w)->modules[0].rank, 1);      // ranks stay: the engine sizes loads by them
  EXPECT_EQ(c.bytes_used(), 4096 * sizeof(float) / 2);
  // A second get is a hit on the staged form; nothing is read or staged again.
  auto again = c.get({"t", "a", 0});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->get(), w->get());
  EXPECT_EQ(calls.load(), 1);
  // The executor loads what the cache holds as staged.
  ASSERT_TRUE(ex.begin_load_adapter(0, *w, nullptr).ok());
  EXPECT_EQ(ex.staged_loads(), 1u);
}

TEST(AdapterCache, AStagingLoaderPassesLoadFailuresThrough) {
  FakeExecutorOptions o;
  o.stages_adapters = true;
  FakeExecutor ex(o);
  AdapterCache c(1 << 20);
  AdapterLoader failing = []() -> Result<std::shared_ptr<const LoraWeights>> {
    return make_error(ErrorCode::kBadFile, "adapter_model.safetensors truncated");
  };
  ASSERT_TRUE(c.add({"t", "bad", 0}, staging_loader(failing, ex)).ok());
  auto w = c.get({"t", "bad", 0});
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().code, ErrorCode::kBadFile);
  EXPECT_EQ(c.bytes_used(), 0u);
}

}  // namespace
}  // namespace myriad
