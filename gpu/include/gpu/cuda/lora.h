// Multi-LoRA shrink/expand on the device, for rows that each use their own
// adapter slot (Punica / S-LoRA): the base GEMM runs once for all rows, then
//
//   shrink: v[e, 0:r] = x[token_e] . A_slot^T               (A_slot [r, in])
//   expand: y[token_e] += weight_e * scale_slot * (B_slot . v[e, 0:r])   (B_slot [out, r])
//
// with r = rank of the slot in this (layer, module): ranks may differ between
// slots in the same launch, and rank 0 (module not targeted, or empty slot)
// contributes nothing. Two forms of the batch:
//   SGMV (segmented): entries grouped by slot into segments (prefill, mixed
//     steps; an entry is one (token, slot, weight), so a mixture-of-adapters
//     token has one entry per adapter: launch expand once per mixture level so
//     no token appears twice in one launch). Rows without adapter have no entry.
//   BGMV (gathered): one entry per token with token_slot[t] (-1 = no adapter,
//     skipped), weight 1 (decode).
// v is float32 [entries, max_rank]; y is the module's output (a column slice
// of a fused buffer is fine: ldy). Stateless; thread-safe.
#pragma once

#include <cstdint>

#include "gpu/cuda/device_memory.h"
#include "runtime/dtype.h"
#include "runtime/result.h"

namespace myriad::gpu::cuda {

// All slots' weights of one (layer, module), device memory, dtype of the call.
struct LoraModuleSlots {
  const void* a = nullptr;          // per slot [max_rank, in]
  const void* b = nullptr;          // per slot [out, max_rank]
  const int32_t* ranks = nullptr;   // ranks[slot * meta_stride]; 0 => no contribution
  const float* scales = nullptr;    // scales[slot * meta_stride]: alpha / r (or alpha / sqrt(r))
  int32_t meta_stride = 1;          // lets ranks/scales be a column of a [slots, modules] table
  int32_t num_slots = 0;
  int32_t max_rank = 0;             // <= kMaxLoraRank
  int64_t in = 0, out = 0;
  // Elements from one slot's A (and B) to the next slot's: 0 for dense
  // [num_slots, max_rank, in] / [num_slots, out, max_rank] arrays; a pool of
  // whole-slot images (gpu/lora_slot_image.h) gives its slot size.
  int64_t slot_stride = 0;
};
inline constexpr int32_t kMaxLoraRank = 128;

struct SgmvBatch {  // device arrays except the two counts
  const int32_t* seg_slot = nullptr;      // [num_segments] slot of each segment (>= 0)
  const int32_t* seg_start = nullptr;     // [num_segments + 1] entry offsets
  const int32_t* entry_token = nullptr;   // [entries] row of x and y
  const float* entry_weight = nullptr;    // [entries] mixing weight
  int32_t num_segments = 0;
  int32_t max_segment_len = 0;            // longest segment (sizes the grid)
};

// Modules that read one input and write adjacent column ranges of one
// output (q|k|v into the fused qkv buffer, gate|up into gate_up): one shrink
// and one expand launch for all of them instead of one each, since a
// launch, not its bytes, is what a small LoRA module costs. Members share
// num_slots, max_rank and in; member i writes y's columns from
// sum_{j<i} out_j on; v is [entries, count * max_rank] with member i's ranks
// at columns [i * max_rank, (i + 1) * max_rank).
inline constexpr int kMaxLoraGroup = 3;
struct LoraGroupSlots {
  LoraModuleSlots member[kMaxLoraGroup];
  int32_t count = 0;
};
// A group of one module.
inline LoraGroupSlots lora_group(const LoraModuleSlots& w) {
  LoraGroupSlots g;
  g.member[0] = w;
  g.count = 1;
  return g;
}

Status sgmv_shrink(DType dtype, float* v, const void* x, int64_t ldx, const LoraGroupSlots& g,
                   const SgmvBatch& batch, StreamHandle stream);
Status sgmv_expand(DType dtype, void* y, int64_t ldy, const float* v, const LoraGroupSlots& g,
                   const SgmvBatch& batch, StreamHandle stream);
// token_weight (optional, [tokens]): each token's weight in a mixture (the
// expand adds weight * scale * B v); nullptr means 1 for every token.
Status bgmv_shrink(DType dtype, float* v, const void* x, int64_t ldx, const LoraGroupSlots& g,
                   const int32_t* token_slot, int64_t tokens, StreamHandle stream);
Status bgmv_expand(DType dtype, void* y, int64_t ldy, const float* v, const LoraGroupSlots& g,
                   const int32_t* token_slot, int64_t tokens, StreamHandle stream,
                   const float* token_weight = nullptr);

// BGMV's expand fused into the kernel that consumes the base GEMM's output
// (the executor's decode steps: RoPE + KV write for q|k|v, SiLU-mul for
// gate|up, the next RMSNorm for o_proj and down into the residual): that
// kernel adds to output column col of token t what bgmv_expand would add
// there, from the shrink's v and the slot's B row, before it uses the value,
// rounding the sum once to the dtype as the expand stores it. So the expand
// costs no launch and no pass over the output of its own, and the results
// are bgmv_expand's bits. A kernel taking one reads ep.v == nullptr as none.
struct LoraEpilogue {
  LoraGroupSlots g;
  const float* v = nullptr;             // [tokens, g.count * max_rank], bgmv_shrink's
  const int32_t* token_slot = nullptr;  // [tokens], -1: no adapter
  const float* token_weight = nullptr;  // [tokens] or nullptr: 1 each
  bool vec = false;                     // 16-byte loads of B rows (lora_epilogue sets it)
};
// Checks g as the expands do. dtype: the weights'.
Result<LoraEpilogue> lora_epilogue(DType dtype, const LoraGroupSlots& g, const float* v, const int32_t* token_slot,
                                   const float* token_weight = nullptr);

// One module: v is [entries, max_rank].
Status sgmv_shrink(DType dtype, float* v, const void* x, int64_t ldx, const LoraModuleSlots& w,
                   const SgmvBatch& batch, StreamHandle stream);
Status sgmv_expand(DType dtype, void* y, int64_t ldy, const float* v, const LoraModuleSlots& w,
                   const SgmvBatch& batch, StreamHandle stream);

// token_slot: [tokens] (device); v: [tokens, max_rank].
Status bgmv_shrink(DType dtype, float* v, const void* x, int64_t ldx, const LoraModuleSlots& w,
                   const int32_t* token_slot, int64_t tokens, StreamHandle stream);
Status bgmv_expand(DType dtype, void* y, int64_t ldy, const float* v, const LoraModuleSlots& w,
                   const int32_t* token_slot, int64_t tokens, StreamHandle stream,
                   const float* token_weight = nullptr);

}  // namespace myriad::gpu::cuda
