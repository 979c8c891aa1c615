// Soak (label slow): KvBlockAllocator under long random sequences of
// allocations and releases by many owners, against a model of who holds
// which block: every id handed out is in range and held by one owner only,
// num_free() is the number of blocks nobody holds, allocate(n) fails exactly
// when fewer than n are free and then takes nothing, and releasing
// everything frees everything. Seeded through test_seed.h.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "runtime/kv_block_allocator.h"
#include "test_seed.h"

namespace myriad {
namespace {

void run_allocator_workload(std::mt19937_64& rng) {
  const int32_t num_blocks = std::uniform_int_distribution<int32_t>(1, 300)(rng);
  const uint64_t shuffle = rng() % 2 ? rng() | 1 : 0;
  const int owners = std::uniform_int_distribution<int>(1, 12)(rng);
  KvBlockAllocator alloc(num_blocks, shuffle);
  std::vector<std::vector<int32_t>> tables(static_cast<size_t>(owners));
  std::vector<int> holder(size_t(num_blocks), -1);  // the model: owner of each block, -1 = free
  int32_t held = 0;
  const std::string what = "blocks " + std::to_string(num_blocks) + " shuffle " + std::to_string(shuffle);
  for (int op = 0; op < 2000; ++op) {
    const int o = std::uniform_int_distribution<int>(0, owners - 1)(rng);
    auto& table = tables[size_t(o)];
    const int kind = int(rng() % 10);
    if (kind < 6) {  // grow by n, sometimes more than is free
      const int32_t n = std::uniform_int_distribution<int32_t>(0, std::max(1, num_blocks / 4))(rng);
      const size_t before = table.size();
      const bool ok = alloc.allocate(n, table);
      ASSERT_EQ(ok, n <= num_blocks - held) << what << " op " << op << " n " << n << " held " << held;
      if (!ok) {
        ASSERT_EQ(table.size(), before) << what << ": a failed allocation took blocks";
        continue;
      }
      ASSERT_EQ(table.size(), before + size_t(n)) << what;
      for (size_t i = before; i < table.size(); ++i) {
        const int32_t b = table[i];
        ASSERT_TRUE(b >= 0 && b < num_blocks) << what << ": block " << b;
        ASSERT_EQ(holder[size_t(b)], -1) << what << ": block " << b << " handed out twice";
        holder[size_t(b)] = o;
      }
      held += n;
    } else if (kind < 8 && !table.empty()) {  // free one block from the middle
      const size_t i = size_t(rng() % table.size());
      const int32_t b = table[i];
      table.erase(table.begin() + long(i));
      alloc.release(b);
      holder[size_t(b)] = -1;
      --held;
    } else {  // free the whole table
      for (int32_t b : table) holder[size_t(b)] = -1;
      held -= int32_t(table.size());
      alloc.release(table);
      ASSERT_TRUE(table.empty());
    }
    ASSERT_EQ(alloc.num_free(), num_blocks - held) << what << " op " << op;
  }
  for (auto& t : tables) alloc.release(t);
  EXPECT_EQ(alloc.num_free(), num_blocks) << what;
}

TEST(KvBlockAllocatorSoak, RandomAllocationsAndReleasesMatchTheModel) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE(testing::seed_note(seed));
  std::mt19937_64 rng(seed);
  for (int run = 0; run < 20000; ++run) {
    run_allocator_workload(rng);
    if (::testing::Test::HasFailure()) return;
  }
}

}  // namespace
}  // namespace myriad
