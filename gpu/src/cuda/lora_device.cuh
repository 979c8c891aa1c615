// Device helpers of LoRA's expand, shared by lora.cu's kernels and the
// kernels that apply a LoRA epilogue (lora.h's LoraEpilogue: RoPE + KV write,
// SiLU-mul, RMSNorm), so both compute each output's addend with the same
// operations in the same order and agree bit for bit. .cu files only.
#pragma once

#include "gpu/cuda/lora.h"
#include "kernel_common.cuh"

namespace myriad::gpu::cuda {

// Where a slot's A and B start (elements), dense or pooled (slot_stride).
__device__ __forceinline__ int64_t a_slot_stride(const LoraModuleSlots& w) {
  return w.slot_stride ? w.slot_stride : int64_t(w.max_rank) * w.in;
}
__device__ __forceinline__ int64_t b_slot_stride(const LoraModuleSlots& w) {
  return w.slot_stride ? w.slot_stride : w.out * int64_t(w.max_rank);
}

// Member mi of the group (mi < g.count), picked with selects rather than a
// dynamic index into the kernel's parameters.
__device__ __forceinline__ const LoraModuleSlots& member(const LoraGroupSlots& g, int mi) {
  return mi == 0 ? g.member[0] : mi == 1 ? g.member[1] : g.member[2];
}

// B_slot[o, 0:rank] . vm[0:rank], ascending r (16-byte chunks of B when vec).
template <class T>
__device__ __forceinline__ float b_row_dot(const T* b, const float* vm, int rank, bool vec) {
  float d = 0.0f;
  if (vec) {
    constexpr int V = kVec<T>;
#pragma unroll 4
    for (int c = 0; c < rank; c += V) {
      float bf[V];
      load16(b + c, bf);
#pragma unroll
      for (int i = 0; i < V; ++i)
        if (c + i < rank) d += bf[i] * vm[c + i];
    }
  } else {
    for (int r = 0; r < rank; ++r) d += to_f32(b[r]) * vm[r];
  }
  return d;
}

// y + weight * scale * d, the product rounded before the add (no FMA
// contraction), as every expand form adds it.
__device__ __forceinline__ float lora_add(float y, float weight, float scale, float d) {
  return __fadd_rn(y, __fmul_rn(__fmul_rn(weight, scale), d));
}

// Output column col of `token` (of the group's columns) after the epilogue's
// LoRA: what bgmv_expand would leave there, given y (T: the weights' dtype).
template <class T>
__device__ __forceinline__ float lora_epilogue_apply(const LoraEpilogue& ep, int token, int64_t col, float y) {
  const LoraGroupSlots& g = ep.g;
  int mi = 0;
  while (mi + 1 < g.count && col >= member(g, mi).out) col -= member(g, mi++).out;
  const LoraModuleSlots& w = member(g, mi);
  const int slot = ep.token_slot[token];
  if (col >= w.out || slot < 0 || slot >= w.num_slots) return y;
  const int rank = w.ranks[int64_t(slot) * w.meta_stride];
  if (rank <= 0) return y;
  const int max_rank = w.max_rank;
  const T* b = static_cast<const T*>(w.b) + int64_t(slot) * b_slot_stride(w) + col * max_rank;
  const float* vm = ep.v + int64_t(token) * g.count * max_rank + mi * max_rank;
  const float weight = ep.token_weight ? ep.token_weight[token] : 1.0f;
  return lora_add(y, weight, w.scales[int64_t(slot) * w.meta_stride], b_row_dot(b, vm, rank, ep.vec));
}

// x after the epilogue, rounded to T as an expand stores it; x itself when
// the kernel was given none (ep.v null).
template <class T>
__device__ __forceinline__ T lora_epilogue_value(const LoraEpilogue& ep, int token, int64_t col, T x) {
  return ep.v ? from_f32<T>(lora_epilogue_apply<T>(ep, token, col, to_f32(x))) : x;
}

}  // namespace myriad::gpu::cuda
