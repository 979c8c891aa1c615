// One block per token; one thread per (head, pair). Each pair (i, i + d/2) is
// read and written by the same thread, so in-place is race-free.
#include <algorithm>
#include <cmath>

#include "cuda_check.cuh"
#include "gpu/cuda/rope.h"
#include "kernel_common.cuh"
#include "lora_device.cuh"

namespace myriad::gpu::cuda {

std::vector<float> rope_inv_freq(const ModelConfig& c) {
  const int64_t half = c.head_dim / 2;
  std::vector<float> inv(size_t(std::max<int64_t>(half, 0)));
  for (int64_t i = 0; i < half; ++i) {
    const float e = float(2 * i) / float(c.head_dim);
    inv[size_t(i)] = 1.0f / std::pow(c.rope_theta, e);
  }
  if (c.rope_scaling && c.rope_scaling->type == "llama3") {
    const auto& s = *c.rope_scaling;
    const float old_len = float(s.original_max_position_embeddings);
    const float low_wavelen = old_len / s.low_freq_factor;
    const float high_wavelen = old_len / s.high_freq_factor;
    for (auto& f : inv) {
      const float wavelen = 2.0f * float(M_PI) / f;
      float scaled = wavelen > low_wavelen ? f / s.factor : f;
      const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
      if (medium) {
        const float smooth = (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        scaled = (1.0f - smooth) * scaled / s.factor + smooth * scaled;
      }
      f = scaled;
    }
  }
  return inv;
}

namespace {

// Rotates the pair (base[i], base[i + half]) by angle pos * inv_freq: the one
// expression both kernels use, so the fused one is bit-identical.
template <class T>
__device__ __forceinline__ void rotate_pair(T* base, int i, int half, float pos, float inv_freq, T& r1, T& r2) {
  float s, c;
  sincosf(pos * inv_freq, &s, &c);
  const float x1 = to_f32(base[i]), x2 = to_f32(base[i + half]);
  r1 = from_f32<T>(__fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s)));
  r2 = from_f32<T>(__fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s)));
  base[i] = r1;
  base[i + half] = r2;
}

template <class T>
__global__ void rope_kernel(T* q, int64_t q_stride, T* k, int64_t k_stride, const int32_t* __restrict__ positions,
                            const float* __restrict__ inv_freq, int num_heads, int num_kv_heads, int head_dim) {
  const int t = blockIdx.x;
  const int half = head_dim / 2;
  const float pos = float(positions[t]);
  const int pairs = (num_heads + num_kv_heads) * half;
  for (int p = threadIdx.x; p < pairs; p += blockDim.x) {
    const int head = p / half, i = p % half;
    T* base = head < num_heads ? q + size_t(t) * q_stride + size_t(head) * head_dim
                               : k + size_t(t) * k_stride + size_t(head - num_heads) * head_dim;
    T r1, r2;
    rotate_pair(base, i, half, pos, inv_freq[i], r1, r2);
  }
}

// One block per token: threads over the (head, pair)s rotate q and k in
// place, writing the rotated k into the cache too; then over v's width.
template <class T>
__global__ void rope_kv_write_kernel(T* qkv, int64_t stride, const int32_t* __restrict__ positions,
                                     const float* __restrict__ inv_freq, T* __restrict__ k_cache,
                                     T* __restrict__ v_cache, const int32_t* __restrict__ slots, int num_heads,
                                     int num_kv_heads, int head_dim, LoraEpilogue ep) {
  const int t = blockIdx.x;
  const int half = head_dim / 2;
  const float pos = float(positions[t]);
  const int32_t slot = slots[t];
  const int64_t width = int64_t(num_kv_heads) * head_dim;
  T* q = qkv + int64_t(t) * stride;
  T* k = q + int64_t(num_heads) * head_dim;
  const T* v = k + width;
  const int pairs = (num_heads + num_kv_heads) * half;
  for (int p = threadIdx.x; p < pairs; p += blockDim.x) {
    const int head = p / half, i = p % half;
    T* base = q + int64_t(head) * head_dim;  // k's heads follow q's
    if (ep.v) {  // q|k's LoRA (the pair is this thread's alone)
      const int64_t col = int64_t(head) * head_dim + i;
      base[i] = lora_epilogue_value(ep, t, col, base[i]);
      base[i + half] = lora_epilogue_value(ep, t, col + half, base[i + half]);
    }
    T r1, r2;
    rotate_pair(base, i, half, pos, inv_freq[i], r1, r2);
    if (head >= num_heads && slot >= 0) {
      T* kc = k_cache + int64_t(slot) * width + int64_t(head - num_heads) * head_dim;
      kc[i] = r1;
      kc[i + half] = r2;
    }
  }
  if (slot < 0) return;
  const int64_t v_col = int64_t(num_heads + num_kv_heads) * head_dim;
  for (int64_t e = threadIdx.x; e < width; e += blockDim.x)
    v_cache[int64_t(slot) * width + e] = lora_epilogue_value(ep, t, v_col + e, v[e]);
}

}  // namespace

Status rope_kv_write(DType dtype, void* qkv, int64_t qkv_stride, const int32_t* positions, const float* inv_freq,
                     void* k_cache, void* v_cache, const int32_t* slot_mapping, int64_t tokens, int64_t num_heads,
                     int64_t num_kv_heads, int64_t head_dim, StreamHandle stream, const LoraEpilogue* lora) {
  if (tokens == 0) return ok_status();
  if (tokens < 0 || tokens > INT32_MAX || head_dim <= 0 || head_dim % 2 != 0 || num_heads <= 0 ||
      num_kv_heads <= 0 || qkv_stride < (num_heads + 2 * num_kv_heads) * head_dim)
    return make_error(ErrorCode::kInvalidArgument,
                      "rope_kv_write: bad shape tokens=" + std::to_string(tokens) + " heads=" +
                          std::to_string(num_heads) + " kv_heads=" + std::to_string(num_kv_heads) +
                          " head_dim=" + std::to_string(head_dim) + " stride=" + std::to_string(qkv_stride));
  const int64_t work = std::max((num_heads + num_kv_heads) * head_dim / 2, num_kv_heads * head_dim);
  const int threads = work >= 256 ? 256 : int((work + 31) / 32 * 32);
  return MYRIAD_DISPATCH_DTYPE(dtype, "rope_kv_write", {
    rope_kv_write_kernel<T><<<unsigned(tokens), threads, 0, stream>>>(
        static_cast<T*>(qkv), qkv_stride, positions, inv_freq, static_cast<T*>(k_cache), static_cast<T*>(v_cache),
        slot_mapping, int(num_heads), int(num_kv_heads), int(head_dim), lora ? *lora : LoraEpilogue{});
    MYRIAD_CUDA_TRY_LAUNCH();
    return ok_status();
  });
}

Status rope(DType dtype, void* q, int64_t q_stride, void* k, int64_t k_stride, const int32_t* positions,
            const float* inv_freq, int64_t tokens, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
            StreamHandle stream) {
  if (tokens == 0) return ok_status();
  if (tokens < 0 || tokens > INT32_MAX || head_dim <= 0 || head_dim % 2 != 0 || num_heads <= 0 ||
      num_kv_heads < 0 || q_stride < num_heads * head_dim || (num_kv_heads > 0 && k_stride < num_kv_heads * head_dim))
    return make_error(ErrorCode::kInvalidArgument,
                      "rope: bad shape tokens=" + std::to_string(tokens) + " heads=" + std::to_string(num_heads) +
                          " kv_heads=" + std::to_string(num_kv_heads) + " head_dim=" + std::to_string(head_dim));
  const int64_t pairs = (num_heads + num_kv_heads) * head_dim / 2;
  const int threads = pairs >= 256 ? 256 : int((pairs + 31) / 32 * 32);
  return MYRIAD_DISPATCH_DTYPE(dtype, "rope", {
    rope_kernel<T><<<unsigned(tokens), threads, 0, stream>>>(static_cast<T*>(q), q_stride, static_cast<T*>(k),
                                                             k_stride, positions, inv_freq, int(num_heads),
                                                             int(num_kv_heads), int(head_dim));
    MYRIAD_CUDA_TRY_LAUNCH();
    return ok_status();
  });
}

}  // namespace myriad::gpu::cuda
