#include "cuda_check.cuh"
#include "gpu/cuda/elementwise.h"
#include "kernel_common.cuh"
#include "lora_device.cuh"

namespace myriad::gpu::cuda {
namespace {

template <class T>
__global__ void silu_mul_kernel(T* __restrict__ out, const T* __restrict__ gate_up, int64_t tokens, int64_t inter,
                                LoraEpilogue ep) {
  const int64_t n = tokens * inter;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / inter, j = i % inter, gi = t * 2 * inter + j, ui = gi + inter;
    const float g = to_f32(lora_epilogue_value(ep, int(t), j, gate_up[gi]));
    const float u = to_f32(lora_epilogue_value(ep, int(t), inter + j, gate_up[ui]));
    out[i] = from_f32<T>(g / (1.0f + expf(-g)) * u);
  }
}

template <class T>
__global__ void embedding_kernel(T* __restrict__ out, const T* __restrict__ table, const int32_t* __restrict__ ids,
                                 int64_t hidden, int64_t vocab) {
  const int64_t t = blockIdx.x;
  const int32_t id = ids[t];
  const bool ok = id >= 0 && id < vocab;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x)
    out[t * hidden + i] = ok ? table[int64_t(id) * hidden + i] : from_f32<T>(0.0f);
}

template <class T>
__global__ void add_bias_kernel(T* y, int64_t ldy, const T* __restrict__ bias, int64_t n) {
  const int64_t t = blockIdx.x;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
    y[t * ldy + j] = from_f32<T>(to_f32(y[t * ldy + j]) + to_f32(bias[j]));
}

template <class T>
__global__ void convert_kernel(T* __restrict__ dst, const float* __restrict__ src, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = from_f32<T>(src[i]);
}

__device__ __forceinline__ uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

template <class T>
__global__ void fill_random_kernel(T* __restrict__ dst, int64_t n, float scale, uint64_t seed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const uint64_t h = mix64(seed * 0x9e3779b97f4a7c15ull + uint64_t(i));
    const float u = float(h >> 40) * (1.0f / 16777216.0f);  // [0, 1)
    dst[i] = from_f32<T>((2.0f * u - 1.0f) * scale);
  }
}

unsigned grid_for(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return unsigned(blocks > 65535 * 8 ? 65535 * 8 : blocks);
}

Error bad(const char* k, int64_t a, int64_t b) {
  return make_error(ErrorCode::kInvalidArgument,
                    std::string(k) + ": bad shape " + std::to_string(a) + " x " + std::to_string(b));
}

}  // namespace

Status silu_mul(DType dtype, void* out, const void* gate_up, int64_t tokens, int64_t inter, StreamHandle stream,
                const LoraEpilogue* lora) {
  if (tokens < 0 || inter <= 0) return bad("silu_mul", tokens, inter);
  if (tokens == 0) return ok_status();
  return MYRIAD_DISPATCH_DTYPE(dtype, "silu_mul", {
    silu_mul_kernel<T><<<grid_for(tokens * inter, 256), 256, 0, stream>>>(
        static_cast<T*>(out), static_cast<const T*>(gate_up), tokens, inter, lora ? *lora : LoraEpilogue{});
    MYRIAD_CUDA_TRY_LAUNCH();
    return ok_status();
  });
}

Status embedding(DType dtype, void* out, const void* table, const int32_t* ids, int64_t tokens, int64_t hidden,
                 int64_t vocab, StreamHandle stream) {
  if (tokens < 0 || tokens > INT32_MAX || hidden <= 0) return bad("embedding", tokens, hidden);
  if (tokens == 0) return ok_status();
  return MYRIAD_DISPATCH_DTYPE(dtype, "embedding", {
    embedding_kernel<T><<<unsigned(tokens), 256, 0, stream>>>(static_cast<T*>(out), static_cast<const T*>(table),
                                                              ids, hidden, vocab);
    MYRIAD_CUDA_TRY_LAUNCH();
    return ok_status();
  });
}

Status add_bias(DType dtype, void* y, int64_t ldy, const void* bias, int64_t tokens, int64_t n, StreamHandle stream) {
  if (tokens < 0 || tokens > INT32_MAX || n <= 0 || ldy < n) return bad("add_bias", tokens, n);
  if (tokens == 0) return ok_status();
  return MYRIAD_DISPATCH_DTYPE(dtype, "add_bias", {
    add_bias_kernel<T><<<unsigned(tokens), 256, 0, stream>>>(static_cast<T*>(y), ldy, static_cast<const T*>(bias), n);
    MYRIAD_CUDA_TRY_LAUNCH();
    return ok_status();
  });
}

Status convert_from_f32(DType dtype, void* dst, const float* src, int64_t n, StreamHandle stream) {
  if (n < 0) return bad("convert_from_f32", n, 1);
  if (n == 0) return ok_status();
  return MYRIAD_DISPATCH_DTYPE(dtype, "convert_from_f32", {
    convert_kernel<T><<<grid_for(n, 256), 256, 0, stream>>>(static_cast<T*>(dst), src, n);
    MYRIAD_CUDA_TRY_LAUNCH();
    return ok_status();
  });
}

Status fill_random(DType dtype, void* dst, int64_t n, float scale, uint64_t seed, StreamHandle stream) {
  if (n < 0) return bad("fill_random", n, 1);
  if (n == 0) return ok_status();
  return MYRIAD_DISPATCH_DTYPE(dtype, "fill_random", {
    fill_random_kernel<T><<<grid_for(n, 256), 256, 0, stream>>>(static_cast<T*>(dst), n, scale, seed);
    MYRIAD_CUDA_TRY_LAUNCH();
    return ok_status();
  });
}

}  // namespace myriad::gpu::cuda
