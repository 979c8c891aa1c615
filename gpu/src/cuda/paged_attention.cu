// Attention: one block per (query token, kv head); its warps take the query
// heads of that kv head's group (GQA: the group shares K/V reads through L1).
// A warp streams the keys in tiles of 32, one key per lane for the scores,
// with an online softmax (running max and sum), then all lanes accumulate V
// for the tile, each lane owning head_dim/32 output dimensions.
//
// Deliberately simple: no split over the key range (flash-decoding), so a
// long context at batch 1 uses only tokens x kv_heads blocks. See
// docs/cuda-backend.md for what that costs.
#include "cuda_check.cuh"
#include "gpu/cuda/paged_attention.h"
#include "kernel_common.cuh"

namespace myriad::gpu::cuda {
namespace {

template <class T>
__global__ void kv_write_kernel(T* __restrict__ k_cache, T* __restrict__ v_cache, const T* __restrict__ k,
                                int64_t k_stride, const T* __restrict__ v, int64_t v_stride,
                                const int32_t* __restrict__ slots, int width) {
  const int t = blockIdx.x;
  const int32_t slot = slots[t];
  if (slot < 0) return;
  for (int i = threadIdx.x; i < width; i += blockDim.x) {
    k_cache[int64_t(slot) * width + i] = k[int64_t(t) * k_stride + i];
    v_cache[int64_t(slot) * width + i] = v[int64_t(t) * v_stride + i];
  }
}

constexpr int kMaxWarps = 4;
constexpr int kMaxHeadDim = 256;

template <class T, int DPL>  // DPL: output dims per lane = ceil(head_dim / 32)
__global__ void paged_attention_kernel(T* __restrict__ out, int64_t out_stride, const T* __restrict__ q,
                                       int64_t q_stride, const T* __restrict__ k_cache,
                                       const T* __restrict__ v_cache, AttentionBatch b, int num_heads,
                                       int num_kv_heads, int head_dim, int block_size, float scale) {
  __shared__ float qs[kMaxWarps][kMaxHeadDim];
  const int t = blockIdx.x, kvh = blockIdx.y;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  const int group = num_heads / num_kv_heads;
  const int pos = b.token_pos[t];
  const int32_t* table = b.block_ids + b.row_block_offset[b.token_row[t]];
  const int64_t kv_row = int64_t(num_kv_heads) * head_dim;  // elements per cache position

  for (int g = warp; g < group; g += nwarps) {
    const int h = kvh * group + g;
    for (int d = lane; d < head_dim; d += 32) qs[warp][d] = to_f32(q[int64_t(t) * q_stride + int64_t(h) * head_dim + d]) * scale;
    __syncwarp();
    float m = -INFINITY, l = 0.0f;
    float acc[DPL];
#pragma unroll
    for (int j = 0; j < DPL; ++j) acc[j] = 0.0f;

    for (int t0 = 0; t0 <= pos; t0 += 32) {
      const int key = t0 + lane;
      float s = -INFINITY;
      if (key <= pos) {
        const int64_t slot = int64_t(table[key / block_size]) * block_size + key % block_size;
        const T* kp = k_cache + slot * kv_row + int64_t(kvh) * head_dim;
        float dot = 0.0f;
        for (int d = 0; d < head_dim; ++d) dot += qs[warp][d] * to_f32(kp[d]);
        s = dot;
      }
      const float m_new = fmaxf(m, warp_max(s));
      const float corr = expf(m - m_new);  // 0 on the first tile (m = -inf)
      const float p = key <= pos ? expf(s - m_new) : 0.0f;
      l = l * corr + warp_sum(p);
#pragma unroll
      for (int j = 0; j < DPL; ++j) acc[j] *= corr;
      m = m_new;
      const int n = min(32, pos - t0 + 1);
      for (int kk = 0; kk < n; ++kk) {
        const float pk = __shfl_sync(0xffffffffu, p, kk);
        const int kkey = t0 + kk;
        const int64_t slot = int64_t(table[kkey / block_size]) * block_size + kkey % block_size;
        const T* vp = v_cache + slot * kv_row + int64_t(kvh) * head_dim;
#pragma unroll
        for (int j = 0; j < DPL; ++j) {
          const int d = lane + 32 * j;
          if (d < head_dim) acc[j] += pk * to_f32(vp[d]);
        }
      }
    }
    const float inv = 1.0f / l;
#pragma unroll
    for (int j = 0; j < DPL; ++j) {
      const int d = lane + 32 * j;
      if (d < head_dim) out[int64_t(t) * out_stride + int64_t(h) * head_dim + d] = from_f32<T>(acc[j] * inv);
    }
    __syncwarp();  // qs[warp] is rewritten for the next head
  }
}

template <class T, int DPL>
void launch_attention(T* out, int64_t out_stride, const T* q, int64_t q_stride, const T* k, const T* v,
                      const AttentionBatch& b, int tokens, int heads, int kv_heads, int head_dim, int block_size,
                      float scale, cudaStream_t s) {
  const int group = heads / kv_heads;
  const int warps = group < kMaxWarps ? group : kMaxWarps;
  paged_attention_kernel<T, DPL><<<dim3(unsigned(tokens), unsigned(kv_heads)), 32 * warps, 0, s>>>(
      out, out_stride, q, q_stride, k, v, b, heads, kv_heads, head_dim, block_size, scale);
}

}  // namespace

Status kv_cache_write(DType dtype, void* k_cache, void* v_cache, const void* k, int64_t k_stride, const void* v,
                      int64_t v_stride, const int32_t* slot_mapping, int64_t tokens, int64_t num_kv_heads,
                      int64_t head_dim, StreamHandle stream) {
  const int64_t width = num_kv_heads * head_dim;
  if (tokens < 0 || tokens > INT32_MAX || width <= 0 || width > INT32_MAX || k_stride < width || v_stride < width)
    return make_error(ErrorCode::kInvalidArgument, "kv_cache_write: bad shape tokens=" + std::to_string(tokens) +
                                                       " width=" + std::to_string(width));
  if (tokens == 0) return ok_status();
  return MYRIAD_DISPATCH_DTYPE(dtype, "kv_cache_write", {
    kv_write_kernel<T><<<unsigned(tokens), 128, 0, stream>>>(static_cast<T*>(k_cache), static_cast<T*>(v_cache),
                                                             static_cast<const T*>(k), k_stride,
                                                             static_cast<const T*>(v), v_stride, slot_mapping,
                                                             int(width));
    MYRIAD_CUDA_TRY_LAUNCH();
    return ok_status();
  });
}

Status paged_attention(DType dtype, void* out, int64_t out_stride, const void* q, int64_t q_stride,
                       const void* k_cache, const void* v_cache, const AttentionBatch& batch, int64_t tokens,
                       int64_t num_heads, int64_t num_kv_heads, int64_t head_dim, int64_t block_size, float scale,
                       StreamHandle stream) {
  if (tokens < 0 || tokens > INT32_MAX || num_kv_heads <= 0 || num_heads <= 0 || num_heads % num_kv_heads != 0 ||
      head_dim <= 0 || head_dim > kMaxHeadDim || block_size <= 0 || num_kv_heads > 65535 ||
      q_stride < num_heads * head_dim || out_stride < num_heads * head_dim)
    return make_error(ErrorCode::kInvalidArgument,
                      "paged_attention: bad shape tokens=" + std::to_string(tokens) + " heads=" +
                          std::to_string(num_heads) + " kv_heads=" + std::to_string(num_kv_heads) +
                          " head_dim=" + std::to_string(head_dim) + " block_size=" + std::to_string(block_size));
  if (tokens == 0) return ok_status();
  return MYRIAD_DISPATCH_DTYPE(dtype, "paged_attention", {
    auto* o = static_cast<T*>(out);
    auto* qq = static_cast<const T*>(q);
    auto* kc = static_cast<const T*>(k_cache);
    auto* vc = static_cast<const T*>(v_cache);
    const int args[] = {int(tokens), int(num_heads), int(num_kv_heads), int(head_dim), int(block_size)};
    if (head_dim <= 32)
      launch_attention<T, 1>(o, out_stride, qq, q_stride, kc, vc, batch, args[0], args[1], args[2], args[3], args[4], scale, stream);
    else if (head_dim <= 64)
      launch_attention<T, 2>(o, out_stride, qq, q_stride, kc, vc, batch, args[0], args[1], args[2], args[3], args[4], scale, stream);
    else if (head_dim <= 128)
      launch_attention<T, 4>(o, out_stride, qq, q_stride, kc, vc, batch, args[0], args[1], args[2], args[3], args[4], scale, stream);
    else
      launch_attention<T, 8>(o, out_stride, qq, q_stride, kc, vc, batch, args[0], args[1], args[2], args[3], args[4], scale, stream);
    MYRIAD_CUDA_TRY_LAUNCH();
    return ok_status();
  });
}

}  // namespace myriad::gpu::cuda
