// Row-major y = x . W^T is, read column-major, y^T[N, M] = W[N,K] . x^T: one
// cublasGemmEx with op(A) = T on the weight buffer and op(B) = N on x.
#include <utility>

#include "cuda_check.cuh"
#include "gpu/cuda/gemm.h"

namespace myriad::gpu::cuda {
namespace {
constexpr size_t kWorkspaceBytes = 32ull << 20;  // cuBLAS's recommendation for Hopper

cudaDataType_t cuda_type(DType t) { return t == DType::kF32 ? CUDA_R_32F : CUDA_R_16BF; }
}  // namespace

Result<Blas> Blas::create(StreamHandle stream) {
  Blas b;
  MYRIAD_CUBLAS_TRY(cublasCreate(&b.handle_));
  auto ws = DeviceBuffer::alloc(kWorkspaceBytes);
  if (!ws) return ws.error();
  b.workspace_ = std::move(ws.value());
  MYRIAD_CUBLAS_TRY(cublasSetWorkspace(b.handle_, b.workspace_.data(), b.workspace_.bytes()));
  MYRIAD_CUBLAS_TRY(cublasSetMathMode(b.handle_, CUBLAS_DEFAULT_MATH));  // no TF32 unless asked per call
  MYRIAD_CUBLAS_TRY(cublasSetPointerMode(b.handle_, CUBLAS_POINTER_MODE_HOST));
  MYRIAD_CUBLAS_TRY(cublasSetStream(b.handle_, stream));
  return Result<Blas>(std::move(b));
}

Blas::~Blas() {
  if (handle_) (void)cublasDestroy(handle_);
}
Blas::Blas(Blas&& o) noexcept
    : handle_(std::exchange(o.handle_, nullptr)), workspace_(std::move(o.workspace_)) {}
Blas& Blas::operator=(Blas&& o) noexcept {
  if (this != &o) {
    if (handle_) (void)cublasDestroy(handle_);
    handle_ = std::exchange(o.handle_, nullptr);
    workspace_ = std::move(o.workspace_);
  }
  return *this;
}

Status Blas::set_stream(StreamHandle stream) {
  MYRIAD_CUBLAS_TRY(cublasSetStream(handle_, stream));
  MYRIAD_CUBLAS_TRY(cublasSetWorkspace(handle_, workspace_.data(), workspace_.bytes()));
  return ok_status();
}

Status Blas::gemm(DType in, DType out, const void* x, int64_t ldx, const void* w, void* y, int64_t ldy,
                  int64_t M, int64_t N, int64_t K, float alpha, float beta) const {
  if (!handle_) return make_error(ErrorCode::kInternal, "gemm: Blas not created");
  if (in != DType::kF32 && in != DType::kBF16)
    return make_error(ErrorCode::kUnsupported, std::string("gemm: input dtype ") + dtype_name(in));
  if (out != in && out != DType::kF32)
    return make_error(ErrorCode::kUnsupported,
                      std::string("gemm: output dtype ") + dtype_name(out) + " for input " + dtype_name(in));
  if (M < 0 || N <= 0 || K <= 0 || ldx < K || ldy < N || M > INT32_MAX || N > INT32_MAX || K > INT32_MAX ||
      ldx > INT32_MAX || ldy > INT32_MAX)
    return make_error(ErrorCode::kInvalidArgument,
                      "gemm: bad shape M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" +
                          std::to_string(K) + " ldx=" + std::to_string(ldx) + " ldy=" + std::to_string(ldy));
  if (M == 0) return ok_status();
  const cublasComputeType_t compute = in == DType::kF32 ? CUBLAS_COMPUTE_32F_PEDANTIC : CUBLAS_COMPUTE_32F;
  MYRIAD_CUBLAS_TRY(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, int(N), int(M), int(K), &alpha, w,
                                 cuda_type(in), int(K), x, cuda_type(in), int(ldx), &beta, y, cuda_type(out),
                                 int(ldy), compute, CUBLAS_GEMM_DEFAULT));
  return ok_status();
}

}  // namespace myriad::gpu::cuda
