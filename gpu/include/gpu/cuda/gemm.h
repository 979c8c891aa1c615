// cuBLAS GEMMs in the layout every linear layer uses (row-major activations,
// weights stored [out, in] like PyTorch):
//
//   y[M, N] = alpha * x[M, K] . W[N, K]^T + beta * y
//
// Accumulation is float32. BF16 inputs may use tensor cores; F32 inputs use
// CUBLAS_COMPUTE_32F_PEDANTIC, i.e. true float32 with TF32 off (the fixtures'
// goldens need it). The output is the input dtype or F32 (bf16 logits in fp32).
//
// Decode shapes (M <= kSmallGemmMaxRows) may go to small_gemm (a
// weight-streaming GEMV, small_gemm.h) instead: per shape where
// tune_small_gemm measured it faster, or always / never (set_small_gemm).
//
// Owner: one executor (or test) per Blas. Not thread-safe: a cuBLAS handle is
// bound to one stream at a time. The workspace is allocated once in create(),
// so gemm() never allocates and may be captured in a CUDA graph.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <set>
#include <span>

#include "gpu/cuda/device_memory.h"
#include "runtime/dtype.h"
#include "runtime/result.h"

struct cublasContext;  // cublasHandle_t is cublasContext*

namespace myriad::gpu::cuda {

class Blas {
 public:
  Blas() = default;
  static Result<Blas> create(StreamHandle stream);
  ~Blas();
  Blas(Blas&& o) noexcept;
  Blas& operator=(Blas&& o) noexcept;
  Blas(const Blas&) = delete;
  Blas& operator=(const Blas&) = delete;

  Status set_stream(StreamHandle stream);

  // in: dtype of x and W (F32 or BF16); out: dtype of y (== in, or F32).
  // Row strides ldx >= K and ldy >= N let x and y be column slices of wider
  // buffers (e.g. q, k, v inside one qkv buffer).
  Status gemm(DType in, DType out,
              const void* x, int64_t ldx,   // [M, K]
              const void* w,                // [N, K], contiguous
              void* y, int64_t ldy,         // [M, N]
              int64_t M, int64_t N, int64_t K, float alpha = 1.0f, float beta = 0.0f) const;

  enum class SmallGemm : uint8_t {
    kTuned,   // small_gemm for the shapes tune_small_gemm chose, cuBLAS otherwise
    kNever,   // cuBLAS only
    kAlways,  // small_gemm for every M <= kSmallGemmMaxRows
  };
  void set_small_gemm(SmallGemm mode) { small_mode_ = mode; }
  // Whether gemm() sends this shape to small_gemm (callers that fuse work
  // into small_gemm's input, e.g. small_gemm_rmsnorm, follow the same choice).
  bool uses_small_gemm(DType in, DType out, int64_t M, int64_t N, int64_t K) const;
  // Times cuBLAS and small_gemm on y = x . W^T for each M in [1, max_rows]
  // (at most kSmallGemmMaxRows; interleaved, best of 3 rounds of 5) on this
  // Blas's stream and keeps small_gemm for the M where it was faster. Each
  // call takes the next of `weights` (all of one shape: e.g. every layer's,
  // so they stream from memory as in a step rather than sit in L2). x and y
  // are scratch of those shapes (y is overwritten). Not during graph
  // capture. Returns how many M chose small_gemm.
  //
  // `paths` times each side as a step runs it where the two differ in more
  // than the GEMM: small_gemm's path may be a fused kernel (small_gemm_rmsnorm,
  // small_gemm_silu_mul) whose separate launches the cuBLAS path runs around
  // its GEMM (the norm before, SiLU-mul after), so the fusion's saved launches
  // count in the choice.
  struct TunedPaths {
    std::function<Status(int64_t M)> cublas_before, cublas_after;  // null: nothing
    std::function<Status(int64_t M, const void* w)> small;          // null: small_gemm
  };
  Result<int> tune_small_gemm(DType in, DType out, const void* x, int64_t ldx, std::span<const void* const> weights,
                              void* y, int64_t ldy, int64_t max_rows, int64_t N, int64_t K,
                              const TunedPaths& paths = {});

 private:
  using ShapeKey = std::array<int64_t, 5>;  // in, out, M, N, K
  Status cublas_gemm(DType in, DType out, const void* x, int64_t ldx, const void* w, void* y, int64_t ldy, int64_t M,
                     int64_t N, int64_t K, float alpha, float beta) const;

  cublasContext* handle_ = nullptr;
  DeviceBuffer workspace_;
  StreamHandle stream_ = nullptr;
  SmallGemm small_mode_ = SmallGemm::kTuned;
  std::set<ShapeKey> small_wins_;  // shapes tuned to small_gemm
};

}  // namespace myriad::gpu::cuda
