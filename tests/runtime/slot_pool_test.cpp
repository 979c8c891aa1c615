// Slot pool: keyed by (adapter, version), reference counted, pinning.
#include <gtest/gtest.h>

#include "runtime/slot_pool.h"

namespace myriad {
namespace {

AdapterKey key(const std::string& n, uint32_t v = 0) { return {n, v}; }

TEST(SlotPool, SameVersionSharesSlotNewVersionGetsAnother) {
  SlotPool p(3);
  auto a = p.acquire(key("a", 1));
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a->needs_load);
  EXPECT_EQ(p.state(a->slot), SlotPool::State::kLoading);
  p.mark_ready(a->slot);
  auto a2 = p.acquire(key("a", 1));
  ASSERT_TRUE(a2.ok());
  EXPECT_EQ(a2->slot, a->slot);
  EXPECT_FALSE(a2->needs_load);
  EXPECT_EQ(p.refs(a->slot), 2);
  auto a_v2 = p.acquire(key("a", 2));  // a running request keeps version 1
  ASSERT_TRUE(a_v2.ok());
  EXPECT_NE(a_v2->slot, a->slot);
  EXPECT_TRUE(a_v2->needs_load);
}

TEST(SlotPool, ReferencedSlotIsNeverReused) {
  SlotPool p(2);
  auto a = p.acquire(key("a"));
  auto b = p.acquire(key("b"));
  ASSERT_TRUE(a.ok() && b.ok());
  p.mark_ready(a->slot);
  p.mark_ready(b->slot);
  auto c = p.acquire(key("c"));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, ErrorCode::kResourceExhausted);
  EXPECT_NE(c.error().message.find("c@0"), std::string::npos);
  p.release(b->slot);
  c = p.acquire(key("c"));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->slot, b->slot);
  ASSERT_TRUE(c->evicted.has_value());
  EXPECT_EQ(*c->evicted, key("b"));
  EXPECT_EQ(p.occupant(a->slot), key("a"));  // untouched
  EXPECT_FALSE(p.find(key("b")).has_value());
}

TEST(SlotPool, PinnedAdapterIsNeverEvicted) {
  SlotPool p(2);
  p.pin(key("hot"));
  auto h = p.acquire(key("hot"));
  ASSERT_TRUE(h.ok());
  p.mark_ready(h->slot);
  p.release(h->slot);  // no references, but pinned
  for (int i = 0; i < 10; ++i) {
    auto g = p.acquire(key(std::string("x").append(std::to_string(i))));
    ASSERT_TRUE(g.ok()) << g.error().message;
    EXPECT_NE(g->slot, h->slot);
    p.mark_ready(g->slot);
    p.release(g->slot);
  }
  EXPECT_EQ(p.find(key("hot")), h->slot);
  p.unpin(key("hot"));
  auto g = p.acquire(key("y"));
  auto g2 = p.acquire(key("z"));
  ASSERT_TRUE(g.ok() && g2.ok());
  EXPECT_FALSE(p.find(key("hot")).has_value());
}

TEST(SlotPool, LoadingSlotIsNotReusedAndFailedLoadFreesIt) {
  SlotPool p(1);
  auto a = p.acquire(key("a"));
  ASSERT_TRUE(a.ok());
  p.release(a->slot);  // refs 0 but still loading
  EXPECT_FALSE(p.acquire(key("b")).ok());
  p.mark_failed(a->slot);
  EXPECT_EQ(p.state(a->slot), SlotPool::State::kEmpty);
  auto b = p.acquire(key("b"));
  ASSERT_TRUE(b.ok());
  EXPECT_FALSE(b->evicted.has_value());
}

TEST(SlotPool, EmptySlotsFirstThenLeastRecentlyReleased) {
  SlotPool p(3);
  for (const char* n : {"a", "b"}) {
    auto g = p.acquire(key(n));
    ASSERT_TRUE(g.ok());
    p.mark_ready(g->slot);
  }
  p.release(*p.find(key("b")));
  p.release(*p.find(key("a")));
  auto c = p.acquire(key("c"));  // slot 2 is empty: taken before evicting
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->slot, 2);
  p.mark_ready(c->slot);
  p.release(c->slot);
  auto d = p.acquire(key("d"));  // b was released first
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d->evicted, key("b"));
}

}  // namespace
}  // namespace myriad
