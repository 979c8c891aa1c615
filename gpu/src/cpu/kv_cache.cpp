#include "gpu/cpu/kv_cache.h"

#include <cstring>
#include <utility>

#include "gpu/cpu/ops.h"

namespace myriad::gpu::cpu {
namespace {

void store(DType dtype, const float* src, int64_t n, std::byte* dst) {
  switch (dtype) {
    case DType::kF32: std::memcpy(dst, src, size_t(n) * sizeof(float)); return;
    case DType::kBF16: to_bf16(src, n, reinterpret_cast<uint16_t*>(dst)); return;
    case DType::kF16: {
      auto* d = reinterpret_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_f16(src[i]);
      return;
    }
  }
}

}  // namespace

KvCache::KvCache(int64_t num_layers, int32_t num_blocks, int32_t block_size, int64_t kv_dim, DType dtype)
    : num_layers_(num_layers),
      num_blocks_(num_blocks),
      block_size_(block_size),
      kv_dim_(kv_dim),
      dtype_(dtype),
      elems_(num_layers * int64_t(num_blocks) * block_size * kv_dim) {
  k_buf_ = std::move(HugePageBuffer::allocate(size_t(elems_) * dtype_size(dtype_)).value());
  v_buf_ = std::move(HugePageBuffer::allocate(size_t(elems_) * dtype_size(dtype_)).value());
}

void KvCache::write(int64_t layer, const int32_t* blocks, int64_t pos, const float* k, const float* v) {
  const int32_t block = blocks[pos / block_size_];
  const size_t slot_bytes = size_t(pos % block_size_) * size_t(kv_dim_) * dtype_size(dtype_);
  store(dtype_, k, kv_dim_, k_block(layer, block) + slot_bytes);
  store(dtype_, v, kv_dim_, v_block(layer, block) + slot_bytes);
}

}  // namespace myriad::gpu::cpu
