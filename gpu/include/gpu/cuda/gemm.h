// cuBLAS GEMMs in the layout every linear layer uses (row-major activations,
// weights stored [out, in] like PyTorch):
//
//   y[M, N] = alpha * x[M, K] . W[N, K]^T + beta * y
//
// Accumulation is float32. BF16 inputs may use tensor cores; F32 inputs use
// CUBLAS_COMPUTE_32F_PEDANTIC, i.e. true float32 with TF32 off (the fixtures'
// goldens need it). The output is the input dtype or F32 (bf16 logits in fp32).
//
// Owner: one executor (or test) per Blas. Not thread-safe: a cuBLAS handle is
// bound to one stream at a time. The workspace is allocated once in create(),
// so gemm() never allocates and may be captured in a CUDA graph.
#pragma once

#include <cstdint>

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

 private:
  cublasContext* handle_ = nullptr;
  DeviceBuffer workspace_;
};

}  // namespace myriad::gpu::cuda
