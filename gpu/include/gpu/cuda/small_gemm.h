// Decode's linear layers as weight-streaming GEMV: for a few rows (M <=
// kSmallGemmMaxRows) a step reads every weight once and computes little, so
// the kernel's job is to keep the device's memory bandwidth busy, which
// cuBLAS's GEMM tiles do not at M = 1..8 (issue 18: the fused qkv GEMM of
// tinyllama-1.1b read 10.5 MB at 0.72 TB/s on an H200).
//
//   y[M, N] = alpha * x[M, K] . W[N, K]^T + beta * y     (same layout as Blas::gemm)
//
// One warp per output feature: its lanes stream W[n, :] in 16-byte chunks
// (scalar when K or the pointers are not aligned) against the M rows of x
// (read through L1, shared by the block's warps), float32 accumulation, a
// warp reduction in a fixed order (deterministic). In: F32 or BF16; out: the
// input dtype or F32. Blas::gemm routes a shape here when its tuning measured
// it faster (gemm.h). Stateless; thread-safe.
#pragma once

#include <cstdint>

#include "gpu/cuda/device_memory.h"
#include "runtime/dtype.h"
#include "runtime/result.h"

namespace myriad::gpu::cuda {

inline constexpr int64_t kSmallGemmMaxRows = 8;

Status small_gemm(DType in, DType out, const void* x, int64_t ldx, const void* w, void* y, int64_t ldy, int64_t M,
                  int64_t N, int64_t K, float alpha, float beta, StreamHandle stream);

// The same GEMV on RMSNorm(x) (decode's norm fused into the GEMV after it, one
// launch fewer per norm): y = alpha * n . W^T + beta * y with
// n[m, k] = in(x[m, k] * rstd_m * gamma[k]), rstd_m = 1 / sqrt(mean_k x[m, k]^2 + eps),
// rounded to the input dtype as rmsnorm() stores it. Every block forms rstd
// itself; block b writes its slice of n to `normed` ([M, ldn], when not
// null) for later readers (LoRA), so the result equals rmsnorm() then
// small_gemm() up to the order of the sum of squares.
Status small_gemm_rmsnorm(DType in, DType out, const void* x, int64_t ldx, const void* gamma, float eps,
                          void* normed, int64_t ldn, const void* w, void* y, int64_t ldy, int64_t M, int64_t N,
                          int64_t K, float alpha, float beta, StreamHandle stream);

// Decode's gate|up GEMV with SiLU-mul as its epilogue (the activation's launch
// and the gate|up buffer's round trip fused away): W is [2 * inter, K], gate
// rows then up rows, and
//   y[m, j] = in(silu(g) * u), g = in(n_m . W[j]), u = in(n_m . W[inter + j])
// with n = x, or RMSNorm(x) * gamma as small_gemm_rmsnorm forms it when gamma
// is not null; each value rounded where small_gemm then silu_mul() store
// them, so the result is theirs. y is [M, ldy >= inter] of the input dtype.
Status small_gemm_silu_mul(DType dtype, const void* x, int64_t ldx, const void* gamma, float eps, const void* w,
                           void* y, int64_t ldy, int64_t M, int64_t inter, int64_t K, StreamHandle stream);

}  // namespace myriad::gpu::cuda
