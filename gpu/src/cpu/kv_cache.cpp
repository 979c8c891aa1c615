#include "gpu/cpu/kv_cache.h"

#include <cstring>
#include <utility>

namespace myriad::gpu::cpu {

KvCache::KvCache(int64_t num_layers, int32_t num_blocks, int32_t block_size, int64_t kv_dim)
    : num_layers_(num_layers),
      num_blocks_(num_blocks),
      block_size_(block_size),
      kv_dim_(kv_dim),
      elems_(num_layers * int64_t(num_blocks) * block_size * kv_dim) {
  k_buf_ = std::move(HugePageBuffer::allocate(size_t(elems_) * sizeof(float)).value());
  v_buf_ = std::move(HugePageBuffer::allocate(size_t(elems_) * sizeof(float)).value());
}

void KvCache::write(int64_t layer, const int32_t* blocks, int64_t pos, const float* k, const float* v) {
  const int32_t block = blocks[pos / block_size_];
  const int64_t slot = pos % block_size_;
  std::memcpy(k_block(layer, block) + slot * kv_dim_, k, size_t(kv_dim_) * sizeof(float));
  std::memcpy(v_block(layer, block) + slot * kv_dim_, v, size_t(kv_dim_) * sizeof(float));
}

}  // namespace myriad::gpu::cpu
