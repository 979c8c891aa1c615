// Block = kWarps warps = kWarps consecutive output features; lane l of a warp
// takes chunks l, l + 32, ... of its weight row, so each warp-wide load is
// 512 contiguous bytes (bf16) and the unrolled loop keeps several in flight.
#include <string>

#include "cuda_check.cuh"
#include "gpu/cuda/small_gemm.h"
#include "kernel_common.cuh"

namespace myriad::gpu::cuda {
namespace {

constexpr int kWarps = 8;

template <class T, class O, int MR>
__global__ void __launch_bounds__(kWarps * 32)
    small_gemm_kernel(const T* __restrict__ x, int64_t ldx, const T* __restrict__ w, O* __restrict__ y, int64_t ldy,
                      int N, int K, float alpha, float beta, bool vec) {  // vec: 16-byte chunks are aligned
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int n = int(blockIdx.x) * kWarps + warp;
  if (n >= N) return;  // the whole warp
  const T* wr = w + int64_t(n) * K;
  float acc[MR];
#pragma unroll
  for (int m = 0; m < MR; ++m) acc[m] = 0.0f;
  if (vec) {
    constexpr int V = kVec<T>;
#pragma unroll 4
    for (int k = lane * V; k < K; k += 32 * V) {
      float wf[V];
      load16(wr + k, wf);
#pragma unroll
      for (int m = 0; m < MR; ++m) {
        float xf[V];
        load16(x + int64_t(m) * ldx + k, xf);
#pragma unroll
        for (int i = 0; i < V; ++i) acc[m] += wf[i] * xf[i];
      }
    }
  } else {
    for (int k = lane; k < K; k += 32) {
      const float wk = to_f32(wr[k]);
#pragma unroll
      for (int m = 0; m < MR; ++m) acc[m] += wk * to_f32(x[int64_t(m) * ldx + k]);
    }
  }
#pragma unroll
  for (int m = 0; m < MR; ++m) acc[m] = warp_sum(acc[m]);
  if (lane == 0) {
#pragma unroll
    for (int m = 0; m < MR; ++m) {
      O* yp = y + int64_t(m) * ldy + n;
      float v = alpha * acc[m];
      if (beta != 0.0f) v += beta * to_f32(*yp);
      *yp = from_f32<O>(v);
    }
  }
}

template <class T, class O>
void launch(const T* x, int64_t ldx, const T* w, O* y, int64_t ldy, int M, int N, int K, float alpha, float beta,
            cudaStream_t s) {
  const bool vec = K % kVec<T> == 0 && ldx % kVec<T> == 0 && aligned16(x) && aligned16(w);
  const unsigned blocks = ceil_div(N, kWarps);
  switch (M) {
#define MYRIAD_SMALL_GEMM_CASE(R) \
  case R:                         \
    small_gemm_kernel<T, O, R><<<blocks, kWarps * 32, 0, s>>>(x, ldx, w, y, ldy, N, K, alpha, beta, vec); \
    break;
    MYRIAD_SMALL_GEMM_CASE(1)
    MYRIAD_SMALL_GEMM_CASE(2)
    MYRIAD_SMALL_GEMM_CASE(3)
    MYRIAD_SMALL_GEMM_CASE(4)
    MYRIAD_SMALL_GEMM_CASE(5)
    MYRIAD_SMALL_GEMM_CASE(6)
    MYRIAD_SMALL_GEMM_CASE(7)
    MYRIAD_SMALL_GEMM_CASE(8)
#undef MYRIAD_SMALL_GEMM_CASE
    default:
      break;  // refused by the caller
  }
}

}  // namespace

Status small_gemm(DType in, DType out, const void* x, int64_t ldx, const void* w, void* y, int64_t ldy, int64_t M,
                  int64_t N, int64_t K, float alpha, float beta, StreamHandle stream) {
  if (M < 0 || M > kSmallGemmMaxRows || N <= 0 || K <= 0 || ldx < K || ldy < N || N > INT32_MAX || K > INT32_MAX)
    return make_error(ErrorCode::kInvalidArgument,
                      "small_gemm: bad shape M=" + std::to_string(M) + " (at most " +
                          std::to_string(kSmallGemmMaxRows) + ") N=" + std::to_string(N) + " K=" +
                          std::to_string(K) + " ldx=" + std::to_string(ldx) + " ldy=" + std::to_string(ldy));
  if (out != in && out != DType::kF32)
    return make_error(ErrorCode::kUnsupported,
                      std::string("small_gemm: output dtype ") + dtype_name(out) + " for input " + dtype_name(in));
  if (M == 0) return ok_status();
  return MYRIAD_DISPATCH_DTYPE(in, "small_gemm", {
    const T* xt = static_cast<const T*>(x);
    const T* wt = static_cast<const T*>(w);
    if (out == DType::kF32)
      launch<T, float>(xt, ldx, wt, static_cast<float*>(y), ldy, int(M), int(N), int(K), alpha, beta, stream);
    else
      launch<T, T>(xt, ldx, wt, static_cast<T*>(y), ldy, int(M), int(N), int(K), alpha, beta, stream);
    MYRIAD_CUDA_TRY_LAUNCH();
    return ok_status();
  });
}

}  // namespace myriad::gpu::cuda
