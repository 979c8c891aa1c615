// Block = kWarps warps = kWarps consecutive output features; lane l of a warp
// takes chunks l, l + 32, ... of its weight row, so each warp-wide load is
// 512 contiguous bytes (bf16) and the unrolled loop keeps several in flight.
// Gated (small_gemm_silu_mul): a block's first kWarps / 2 warps take gate
// rows j and the others up rows inter + j of the same kWarps / 2 features, so
// the block holds both halves of each of its outputs and applies SiLU-mul
// itself.
#include <string>

#include "cuda_check.cuh"
#include "gpu/cuda/small_gemm.h"
#include "kernel_common.cuh"

namespace myriad::gpu::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kGatedFeatures = kWarps / 2;  // outputs per block when gated

// Norm: the optional RMSNorm of the input rows (small_gemm_rmsnorm).
template <class T>
struct Norm {
  const T* gamma = nullptr;  // nullptr: x is used as it is
  float eps = 0.0f;
  T* normed = nullptr;  // where block b writes its slice of the normalized rows
  int64_t ldn = 0;
};

template <class T, class O, int MR>
__global__ void __launch_bounds__(kWarps * 32)
    small_gemm_kernel(const T* __restrict__ x, int64_t ldx, const T* __restrict__ w, O* __restrict__ y, int64_t ldy,
                      int N, int K, float alpha, float beta, bool vec, Norm<T> norm,
                      int inter) {  // vec: 16-byte chunks aligned; inter > 0: gated, N = 2 * inter
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __shared__ float rstd[MR > 0 ? MR : 1];
  if (norm.gamma) {  // every thread, before any warp leaves
    __shared__ float scratch[33];
    for (int m = 0; m < MR; ++m) {
      float ss = 0.0f;
      for (int k = threadIdx.x; k < K; k += blockDim.x) {
        const float v = to_f32(x[int64_t(m) * ldx + k]);
        ss += v * v;
      }
      ss = block_sum(ss, scratch);
      if (threadIdx.x == 0) rstd[m] = 1.0f / sqrtf(ss / float(K) + norm.eps);
    }
    __syncthreads();
    if (norm.normed) {
      const int slice = int((int64_t(K) + gridDim.x - 1) / gridDim.x), k0 = int(blockIdx.x) * slice;
      const int k1 = min(K, k0 + slice);
      for (int m = 0; m < MR; ++m)
        for (int k = k0 + int(threadIdx.x); k < k1; k += int(blockDim.x))
          norm.normed[int64_t(m) * norm.ldn + k] =
              from_f32<T>(to_f32(x[int64_t(m) * ldx + k]) * rstd[m] * to_f32(norm.gamma[k]));
    }
  }
  const int feature = int(blockIdx.x) * kGatedFeatures + warp % kGatedFeatures;  // gated only
  const int n = inter == 0                ? int(blockIdx.x) * kWarps + warp
                : feature >= inter        ? N  // past the last feature: no row, but at the barrier below
                : warp < kGatedFeatures ? feature
                                          : inter + feature;
  if (n >= N && inter == 0) return;  // the whole warp
  const T* wr = w + int64_t(n < N ? n : 0) * K;
  float acc[MR];
#pragma unroll
  for (int m = 0; m < MR; ++m) acc[m] = 0.0f;
  const int k_end = n < N ? K : 0;  // a gated block's idle warps skip the loops
  // x[m, k] as the GEMV reads it: normalized and rounded as rmsnorm() stores it.
  auto input = [&](int m, int k, float v) {
    return norm.gamma ? to_f32(from_f32<T>(v * rstd[m] * to_f32(norm.gamma[k]))) : v;
  };
  if (vec) {
    constexpr int V = kVec<T>;
#pragma unroll 4
    for (int k = lane * V; k < k_end; k += 32 * V) {
      float wf[V];
      load16(wr + k, wf);
#pragma unroll
      for (int m = 0; m < MR; ++m) {
        float xf[V];
        load16(x + int64_t(m) * ldx + k, xf);
#pragma unroll
        for (int i = 0; i < V; ++i) acc[m] += wf[i] * input(m, k + i, xf[i]);
      }
    }
  } else {
    for (int k = lane; k < k_end; k += 32) {
      const float wk = to_f32(wr[k]);
#pragma unroll
      for (int m = 0; m < MR; ++m) acc[m] += wk * input(m, k, to_f32(x[int64_t(m) * ldx + k]));
    }
  }
#pragma unroll
  for (int m = 0; m < MR; ++m) acc[m] = warp_sum(acc[m]);
  if (inter > 0) {
    // y[m, j] = silu(g) * u, g and u rounded to O as the GEMV would store them
    // and SiLU-mul computed as silu_mul() does, so the result is the same bits.
    __shared__ float gate_up[kWarps][MR > 0 ? MR : 1];
    if (lane == 0) {
#pragma unroll
      for (int m = 0; m < MR; ++m) gate_up[warp][m] = alpha * acc[m];
    }
    __syncthreads();
    const int f = int(threadIdx.x) % kGatedFeatures, m = int(threadIdx.x) / kGatedFeatures;
    const int j = int(blockIdx.x) * kGatedFeatures + f;
    if (m < MR && j < inter) {
      const float g = to_f32(from_f32<O>(gate_up[f][m])), u = to_f32(from_f32<O>(gate_up[kGatedFeatures + f][m]));
      y[int64_t(m) * ldy + j] = from_f32<O>(g / (1.0f + expf(-g)) * u);
    }
    return;
  }
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
            Norm<T> norm, int inter, cudaStream_t s) {
  const bool vec = K % kVec<T> == 0 && ldx % kVec<T> == 0 && aligned16(x) && aligned16(w);
  const unsigned blocks = inter > 0 ? ceil_div(inter, kGatedFeatures) : ceil_div(N, kWarps);
  switch (M) {
#define MYRIAD_SMALL_GEMM_CASE(R) \
  case R:                         \
    small_gemm_kernel<T, O, R><<<blocks, kWarps * 32, 0, s>>>(x, ldx, w, y, ldy, N, K, alpha, beta, vec, norm, inter); \
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

// y_cols: the columns written, N (or N / 2 gated).
Status check_shape(const char* what, DType in, DType out, int64_t ldx, int64_t ldy, int64_t M, int64_t N,
                   int64_t K, int64_t y_cols) {
  if (M < 0 || M > kSmallGemmMaxRows || N <= 0 || K <= 0 || ldx < K || ldy < y_cols || N > INT32_MAX ||
      K > INT32_MAX)
    return make_error(ErrorCode::kInvalidArgument,
                      std::string(what) + ": bad shape M=" + std::to_string(M) + " (at most " +
                          std::to_string(kSmallGemmMaxRows) + ") N=" + std::to_string(N) + " K=" +
                          std::to_string(K) + " ldx=" + std::to_string(ldx) + " ldy=" + std::to_string(ldy));
  if (out != in && out != DType::kF32)
    return make_error(ErrorCode::kUnsupported,
                      std::string(what) + ": output dtype " + dtype_name(out) + " for input " + dtype_name(in));
  return ok_status();
}

Status run(const char* what, DType in, DType out, const void* x, int64_t ldx, const void* gamma, float eps,
           void* normed, int64_t ldn, const void* w, void* y, int64_t ldy, int64_t M, int64_t N, int64_t K,
           float alpha, float beta, int64_t inter, StreamHandle stream) {
  MYRIAD_TRY(check_shape(what, in, out, ldx, ldy, M, N, K, inter > 0 ? inter : N));
  if (normed && ldn < K)
    return make_error(ErrorCode::kInvalidArgument, std::string(what) + ": ldn " + std::to_string(ldn) + " < K");
  if (M == 0) return ok_status();
  return MYRIAD_DISPATCH_DTYPE(in, what, {
    const T* xt = static_cast<const T*>(x);
    const T* wt = static_cast<const T*>(w);
    const Norm<T> norm{static_cast<const T*>(gamma), eps, static_cast<T*>(normed), ldn};
    if (out == DType::kF32)
      launch<T, float>(xt, ldx, wt, static_cast<float*>(y), ldy, int(M), int(N), int(K), alpha, beta, norm,
                       int(inter), stream);
    else
      launch<T, T>(xt, ldx, wt, static_cast<T*>(y), ldy, int(M), int(N), int(K), alpha, beta, norm, int(inter),
                   stream);
    MYRIAD_CUDA_TRY_LAUNCH();
    return ok_status();
  });
}

}  // namespace

Status small_gemm(DType in, DType out, const void* x, int64_t ldx, const void* w, void* y, int64_t ldy, int64_t M,
                  int64_t N, int64_t K, float alpha, float beta, StreamHandle stream) {
  return run("small_gemm", in, out, x, ldx, nullptr, 0.0f, nullptr, 0, w, y, ldy, M, N, K, alpha, beta, 0, stream);
}

Status small_gemm_rmsnorm(DType in, DType out, const void* x, int64_t ldx, const void* gamma, float eps,
                          void* normed, int64_t ldn, const void* w, void* y, int64_t ldy, int64_t M, int64_t N,
                          int64_t K, float alpha, float beta, StreamHandle stream) {
  if (!gamma) return make_error(ErrorCode::kInvalidArgument, "small_gemm_rmsnorm: no norm weights");
  return run("small_gemm_rmsnorm", in, out, x, ldx, gamma, eps, normed, ldn, w, y, ldy, M, N, K, alpha, beta, 0,
             stream);
}

Status small_gemm_silu_mul(DType dtype, const void* x, int64_t ldx, const void* gamma, float eps, const void* w,
                           void* y, int64_t ldy, int64_t M, int64_t inter, int64_t K, StreamHandle stream) {
  if (inter <= 0 || inter > INT32_MAX / 2)
    return make_error(ErrorCode::kInvalidArgument, "small_gemm_silu_mul: bad inter " + std::to_string(inter));
  return run("small_gemm_silu_mul", dtype, dtype, x, ldx, gamma, eps, nullptr, 0, w, y, ldy, M, 2 * inter, K, 1.0f,
             0.0f, inter, stream);
}

}  // namespace myriad::gpu::cuda
