// Accounting of the paged KV cache's fixed-size blocks: which block ids are
// free. Pure logic (the storage lives in the executor). Not thread-safe;
// owned by the scheduler.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace myriad {

class KvBlockAllocator {
 public:
  // `shuffle_seed` != 0 hands blocks out in a shuffled order, so code that
  // assumes a sequence's blocks are contiguous fails its tests.
  explicit KvBlockAllocator(int32_t num_blocks, uint64_t shuffle_seed = 0);

  int32_t num_blocks() const { return num_blocks_; }
  int32_t num_free() const { return int32_t(free_.size()); }
  std::optional<int32_t> allocate();
  // Appends n blocks to `table`, all or nothing.
  bool allocate(int32_t n, std::vector<int32_t>& table);
  void release(int32_t block);
  void release(std::vector<int32_t>& table);  // and clears it

  static int32_t blocks_for(int32_t tokens, int32_t block_size) { return (tokens + block_size - 1) / block_size; }

 private:
  int32_t num_blocks_;
  std::vector<int32_t> free_;  // a stack
  std::vector<uint8_t> in_use_;
};

}  // namespace myriad
