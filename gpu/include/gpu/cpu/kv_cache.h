// Paged KV cache storage of the CPU backend: one preallocated pool per K and
// V, laid out [layers][num_blocks][block_size][kv_heads * head_dim] float32.
// Which block holds which positions of a sequence is decided by the
// scheduler (KvBlockAllocator) and arrives as a block table per row; this
// class never assumes a sequence's blocks are contiguous.
//
// Owned by CpuExecutor. Writes to distinct (block, slot) pairs may run on
// different threads; nothing else is synchronized.
#pragma once

#include <cstdint>
#include <memory>

#include "gpu/cpu/huge_page_buffer.h"

namespace myriad::gpu::cpu {

class KvCache {
 public:
  // Aborts if the pools cannot be mapped (CpuExecutor::create checks the size first).
  KvCache(int64_t num_layers, int32_t num_blocks, int32_t block_size, int64_t kv_dim);

  int32_t num_blocks() const { return num_blocks_; }
  int32_t block_size() const { return block_size_; }
  int64_t kv_dim() const { return kv_dim_; }
  size_t bytes() const { return 2 * size_t(elems_) * sizeof(float); }

  // Start of one block of one layer: [block_size, kv_dim].
  float* k_block(int64_t layer, int32_t block) { return pool(k_buf_) + offset(layer, block); }
  float* v_block(int64_t layer, int32_t block) { return pool(v_buf_) + offset(layer, block); }
  const float* k_block(int64_t layer, int32_t block) const { return pool(k_buf_) + offset(layer, block); }
  const float* v_block(int64_t layer, int32_t block) const { return pool(v_buf_) + offset(layer, block); }

  // Stores one token's k and v [kv_dim] at position `pos` of the sequence
  // whose block table is `blocks` (pos / block_size indexes it).
  void write(int64_t layer, const int32_t* blocks, int64_t pos, const float* k, const float* v);

 private:
  static float* pool(const HugePageBuffer& b) { return static_cast<float*>(b.data()); }
  int64_t offset(int64_t layer, int32_t block) const {
    return (layer * num_blocks_ + block) * int64_t(block_size_) * kv_dim_;
  }
  int64_t num_layers_;
  int32_t num_blocks_, block_size_;
  int64_t kv_dim_;
  int64_t elems_;
  // Huge pages: attention reads a head's slice of each position, kv_dim
  // floats apart, so with 4 KiB pages nearly every read is a TLB miss.
  // Untouched until written (the kernel zero-fills on first write).
  HugePageBuffer k_buf_, v_buf_;
};

}  // namespace myriad::gpu::cpu
