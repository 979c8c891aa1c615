// Paged KV cache writes and causal attention over it, for prefill chunks and
// decode alike, with grouped-query attention (query head h reads kv head
// h / (num_heads / num_kv_heads)).
//
// Cache layout, per layer, K and V separately:
//   [num_blocks, block_size, num_kv_heads, head_dim]
// Position p of a row lives in block block_ids[row_block_offset[row] + p /
// block_size], at offset p % block_size. Attention reads the blocks directly
// through the block table; nothing is gathered into a contiguous copy.
// Stateless; thread-safe.
#pragma once

#include <cstdint>

#include "gpu/cuda/device_memory.h"
#include "runtime/dtype.h"
#include "runtime/result.h"

namespace myriad::gpu::cuda {

// Writes each token's k and v (num_kv_heads x head_dim, at row strides
// k_stride / v_stride, so slices of a fused qkv buffer work) into cache slot
// slot_mapping[t] = block * block_size + offset. A negative slot is skipped.
Status kv_cache_write(DType dtype, void* k_cache, void* v_cache,  // [num_blocks, block_size, kv_heads, head_dim]
                      const void* k, int64_t k_stride,            // [tokens, k_stride]
                      const void* v, int64_t v_stride,            // [tokens, v_stride]
                      const int32_t* slot_mapping,                // [tokens] (device)
                      int64_t tokens, int64_t num_kv_heads, int64_t head_dim, StreamHandle stream);

// Per-token view of the batch (all device arrays).
struct AttentionBatch {
  const int32_t* token_pos = nullptr;         // [tokens] position of each query token; it sees keys [0, pos]
  const int32_t* token_row = nullptr;         // [tokens] row (sequence) index
  const int32_t* row_block_offset = nullptr;  // [rows] start of the row's block table in block_ids
  const int32_t* block_ids = nullptr;         // all rows' block tables
};

// Split-K (flash-decoding) scratch. When a launch's (token, head) blocks are
// too few to fill the device (decode at small batch), each block takes one of
// `splits` equal shares of its key range and writes an unnormalized partial
// softmax here; a second kernel merges them. Without a workspace (floats == 0)
// attention never splits. splits == 0 picks the count for this device from
// the launch shape only (never from positions), so a captured CUDA graph
// stays valid as contexts grow; tests force a count.
struct AttentionWorkspace {
  float* partials = nullptr;  // device, >= paged_attention_workspace_floats(...) floats
  int64_t floats = 0;
  int splits = 0;             // 0: chosen for the device; else 1..kMaxAttentionSplits
};
inline constexpr int kMaxAttentionSplits = 16;

// Floats the workspace needs for this launch shape with `splits` (0: the
// device's choice; needs a device). 0 when the launch does not split.
Result<int64_t> paged_attention_workspace_floats(int64_t tokens, int64_t num_heads, int64_t num_kv_heads,
                                                 int64_t head_dim, int splits = 0);

// out[t, h*D:(h+1)*D] = softmax(scale * q[t,h] . K[0..pos_t]^T) . V[0..pos_t],
// float32 scores and softmax. The keys of position pos_t must already be in
// the cache (kv_cache_write first). head_dim <= 256.
Status paged_attention(DType dtype, void* out, int64_t out_stride,  // [tokens, out_stride]
                       const void* q, int64_t q_stride,              // [tokens, q_stride]
                       const void* k_cache, const void* v_cache, const AttentionBatch& batch, int64_t tokens,
                       int64_t num_heads, int64_t num_kv_heads, int64_t head_dim, int64_t block_size, float scale,
                       StreamHandle stream, const AttentionWorkspace& workspace = {});

}  // namespace myriad::gpu::cuda
