// Paged KV cache storage of the CPU backend: one preallocated pool per K and
// V, laid out [layers][num_blocks][block_size][kv_heads * head_dim] in one
// element type (f32, bf16 or f16; CpuExecutor picks the model's weight dtype
// unless told otherwise, as vLLM's kv_cache_dtype "auto" does). Which block
// holds which positions of a sequence is decided by the scheduler
// (KvBlockAllocator) and arrives as a block table per row; this class never
// assumes a sequence's blocks are contiguous.
//
// Owned by CpuExecutor. Writes to distinct (block, slot) pairs may run on
// different threads; nothing else is synchronized.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "gpu/cpu/huge_page_buffer.h"
#include "runtime/dtype.h"

namespace myriad::gpu::cpu {

class KvCache {
 public:
  // Aborts if the pools cannot be mapped (CpuExecutor::create checks the size first).
  KvCache(int64_t num_layers, int32_t num_blocks, int32_t block_size, int64_t kv_dim, DType dtype = DType::kF32);

  int32_t num_blocks() const { return num_blocks_; }
  int32_t block_size() const { return block_size_; }
  int64_t kv_dim() const { return kv_dim_; }
  DType dtype() const { return dtype_; }
  size_t bytes() const { return 2 * size_t(elems_) * dtype_size(dtype_); }
  // K+V bytes of one position in all layers.
  static size_t bytes_per_token(int64_t num_layers, int64_t kv_dim, DType dtype) {
    return 2 * size_t(num_layers) * size_t(kv_dim) * dtype_size(dtype);
  }

  // Start of one block of one layer: [block_size, kv_dim] elements of dtype().
  std::byte* k_block(int64_t layer, int32_t block) { return pool(k_buf_) + offset(layer, block); }
  std::byte* v_block(int64_t layer, int32_t block) { return pool(v_buf_) + offset(layer, block); }
  const std::byte* k_block(int64_t layer, int32_t block) const { return pool(k_buf_) + offset(layer, block); }
  const std::byte* v_block(int64_t layer, int32_t block) const { return pool(v_buf_) + offset(layer, block); }

  // Stores one token's k and v [kv_dim] (rounded to nearest even when the
  // cache is bf16 or f16) at position `pos` of the sequence whose block
  // table is `blocks` (pos / block_size indexes it).
  void write(int64_t layer, const int32_t* blocks, int64_t pos, const float* k, const float* v);

 private:
  static std::byte* pool(const HugePageBuffer& b) { return static_cast<std::byte*>(b.data()); }
  size_t offset(int64_t layer, int32_t block) const {
    return size_t((layer * num_blocks_ + block) * int64_t(block_size_) * kv_dim_) * dtype_size(dtype_);
  }
  int64_t num_layers_;
  int32_t num_blocks_, block_size_;
  int64_t kv_dim_;
  DType dtype_;
  int64_t elems_;
  // Huge pages: attention reads a head's slice of each position, kv_dim
  // elements apart, so with 4 KiB pages nearly every read is a TLB miss.
  // Untouched until written (the kernel zero-fills on first write).
  HugePageBuffer k_buf_, v_buf_;
};

}  // namespace myriad::gpu::cpu
