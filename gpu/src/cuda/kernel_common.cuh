// Shared device helpers for gpu/cuda kernels: element load/store for the two
// compute dtypes (float32, bfloat16; arithmetic is always float32), block
// reductions in a fixed order (deterministic for a fixed block size), and the
// dtype dispatch used by every public entry point. .cu files only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "runtime/dtype.h"
#include "runtime/result.h"

namespace myriad::gpu::cuda {

using bf16 = __nv_bfloat16;

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(bf16 v) { return __bfloat162float(v); }
template <class T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <>
__device__ __forceinline__ bf16 from_f32<bf16>(float v) { return __float2bfloat16_rn(v); }

// 16-byte vector loads: kVec elements of T as float. p must be 16-byte
// aligned (callers check the base pointers and strides on the host).
template <class T>
inline constexpr int kVec = 16 / int(sizeof(T));
__device__ __forceinline__ void load16(const float* p, float (&f)[4]) {
  const float4 r = *reinterpret_cast<const float4*>(p);
  f[0] = r.x, f[1] = r.y, f[2] = r.z, f[3] = r.w;
}
__device__ __forceinline__ void load16(const bf16* p, float (&f)[8]) {
  const uint4 r = *reinterpret_cast<const uint4*>(p);
  const uint32_t w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);              // low half: element 2i
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);  // high half: element 2i + 1
  }
}
inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block; every thread gets the result. blockDim.x must be a
// multiple of 32 and at most 1024. `scratch` holds >= 33 floats.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous reduction
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float t = lane < nwarps ? scratch[lane] : 0.0f;
    t = warp_sum(t);
    if (lane == 0) scratch[32] = t;
  }
  __syncthreads();
  return scratch[32];
}
__device__ __forceinline__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float t = lane < nwarps ? scratch[lane] : -INFINITY;
    t = warp_max(t);
    if (lane == 0) scratch[32] = t;
  }
  __syncthreads();
  return scratch[32];
}

inline Error unsupported_dtype(const char* kernel, DType t) {
  return make_error(ErrorCode::kUnsupported,
                    std::string(kernel) + ": dtype " + dtype_name(t) + " not supported (F32 or BF16)");
}

inline unsigned ceil_div(long long a, long long b) { return unsigned((a + b - 1) / b); }

}  // namespace myriad::gpu::cuda

// Calls `body` with `T` bound to float or bf16 according to `dtype`.
#define MYRIAD_DISPATCH_DTYPE(dtype, kernel_name, ...)               \
  [&]() -> ::myriad::Status {                                        \
    switch (dtype) {                                                 \
      case ::myriad::DType::kF32: {                                  \
        using T = float;                                             \
        __VA_ARGS__                                                  \
      }                                                              \
      case ::myriad::DType::kBF16: {                                 \
        using T = ::myriad::gpu::cuda::bf16;                         \
        __VA_ARGS__                                                  \
      }                                                              \
      default:                                                       \
        return ::myriad::gpu::cuda::unsupported_dtype(kernel_name, dtype); \
    }                                                                \
  }()
