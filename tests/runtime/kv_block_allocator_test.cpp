#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "runtime/kv_block_allocator.h"

namespace myriad {
namespace {

TEST(KvBlockAllocator, HandsOutEveryBlockOnceThenRefuses) {
  KvBlockAllocator alloc(10);
  std::set<int32_t> seen;
  for (int i = 0; i < 10; ++i) {
    auto b = alloc.allocate();
    ASSERT_TRUE(b.has_value());
    EXPECT_TRUE(seen.insert(*b).second);
  }
  EXPECT_FALSE(alloc.allocate().has_value());
  EXPECT_EQ(alloc.num_free(), 0);
}

TEST(KvBlockAllocator, AllOrNothing) {
  KvBlockAllocator alloc(4);
  std::vector<int32_t> table;
  EXPECT_TRUE(alloc.allocate(3, table));
  EXPECT_FALSE(alloc.allocate(2, table));  // only 1 left: nothing taken
  EXPECT_EQ(table.size(), 3u);
  EXPECT_EQ(alloc.num_free(), 1);
  alloc.release(table);
  EXPECT_TRUE(table.empty());
  EXPECT_EQ(alloc.num_free(), 4);
}

TEST(KvBlockAllocator, ShuffledOrderIsNotContiguous) {
  KvBlockAllocator alloc(64, /*shuffle_seed=*/12345);
  std::vector<int32_t> table;
  ASSERT_TRUE(alloc.allocate(16, table));
  int adjacent = 0;
  for (size_t i = 1; i < table.size(); ++i) adjacent += table[i] == table[i - 1] + 1;
  EXPECT_LT(adjacent, 8) << "a shuffled pool should rarely hand out consecutive ids";
  EXPECT_EQ(KvBlockAllocator::blocks_for(33, 16), 3);
  EXPECT_EQ(KvBlockAllocator::blocks_for(32, 16), 2);
}

TEST(KvBlockAllocatorDeathTest, DoubleReleaseIsABug) {
#if defined(__SANITIZE_ADDRESS__)
  // Under ASan the parent deadlocks in glibc regexec (via ASan's interceptor)
  // while matching the child's output. The normal build runs this test.
  GTEST_SKIP() << "death test skipped under AddressSanitizer (regexec deadlock); runs in the normal build";
#endif
  KvBlockAllocator alloc(2);
  const int32_t b = *alloc.allocate();
  alloc.release(b);
  EXPECT_DEATH(alloc.release(b), "not allocated");
}

}  // namespace
}  // namespace myriad
