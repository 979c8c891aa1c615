#include "runtime/kv_block_allocator.h"

#include <algorithm>
#include <random>
#include <string>

#include "runtime/result.h"

namespace myriad {

KvBlockAllocator::KvBlockAllocator(int32_t num_blocks, uint64_t shuffle_seed)
    : num_blocks_(num_blocks), in_use_(size_t(num_blocks), 0) {
  free_.reserve(size_t(num_blocks));
  for (int32_t b = num_blocks - 1; b >= 0; --b) free_.push_back(b);  // pop_back gives 0, 1, 2...
  if (shuffle_seed != 0) {
    std::mt19937_64 rng(shuffle_seed);
    std::shuffle(free_.begin(), free_.end(), rng);
  }
}

std::optional<int32_t> KvBlockAllocator::allocate() {
  if (free_.empty()) return std::nullopt;
  const int32_t b = free_.back();
  free_.pop_back();
  in_use_[size_t(b)] = 1;
  return b;
}

bool KvBlockAllocator::allocate(int32_t n, std::vector<int32_t>& table) {
  if (n < 0 || size_t(n) > free_.size()) return false;
  for (int32_t i = 0; i < n; ++i) table.push_back(*allocate());
  return true;
}

void KvBlockAllocator::release(int32_t block) {
  MYRIAD_CHECK(block >= 0 && block < num_blocks_ && in_use_[size_t(block)],
               "releasing block " + std::to_string(block) + " that is not allocated");
  in_use_[size_t(block)] = 0;
  free_.push_back(block);
}

void KvBlockAllocator::release(std::vector<int32_t>& table) {
  for (int32_t b : table) release(b);
  table.clear();
}

}  // namespace myriad
