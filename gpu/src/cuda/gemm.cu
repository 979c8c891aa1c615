// Row-major y = x . W^T is, read column-major, y^T[N, M] = W[N,K] . x^T: one
// cublasGemmEx with op(A) = T on the weight buffer and op(B) = N on x; or,
// for decode shapes tuned (or set) to it, small_gemm.
#include <algorithm>
#include <utility>

#include "cuda_check.cuh"
#include "gpu/cuda/gemm.h"
#include "gpu/cuda/small_gemm.h"

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
  b.stream_ = stream;
  return Result<Blas>(std::move(b));
}

Blas::~Blas() {
  if (handle_) (void)cublasDestroy(handle_);
}
Blas::Blas(Blas&& o) noexcept
    : handle_(std::exchange(o.handle_, nullptr)),
      workspace_(std::move(o.workspace_)),
      stream_(o.stream_),
      small_mode_(o.small_mode_),
      small_wins_(std::move(o.small_wins_)) {}
Blas& Blas::operator=(Blas&& o) noexcept {
  if (this != &o) {
    if (handle_) (void)cublasDestroy(handle_);
    handle_ = std::exchange(o.handle_, nullptr);
    workspace_ = std::move(o.workspace_);
    stream_ = o.stream_;
    small_mode_ = o.small_mode_;
    small_wins_ = std::move(o.small_wins_);
  }
  return *this;
}

Status Blas::set_stream(StreamHandle stream) {
  MYRIAD_CUBLAS_TRY(cublasSetStream(handle_, stream));
  MYRIAD_CUBLAS_TRY(cublasSetWorkspace(handle_, workspace_.data(), workspace_.bytes()));
  stream_ = stream;
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
  if (uses_small_gemm(in, out, M, N, K)) return small_gemm(in, out, x, ldx, w, y, ldy, M, N, K, alpha, beta, stream_);
  return cublas_gemm(in, out, x, ldx, w, y, ldy, M, N, K, alpha, beta);
}

bool Blas::uses_small_gemm(DType in, DType out, int64_t M, int64_t N, int64_t K) const {
  return M >= 1 && M <= kSmallGemmMaxRows &&
         (small_mode_ == SmallGemm::kAlways ||
          (small_mode_ == SmallGemm::kTuned && small_wins_.count({int64_t(in), int64_t(out), M, N, K})));
}

Status Blas::cublas_gemm(DType in, DType out, const void* x, int64_t ldx, const void* w, void* y, int64_t ldy,
                         int64_t M, int64_t N, int64_t K, float alpha, float beta) const {
  const cublasComputeType_t compute = in == DType::kF32 ? CUBLAS_COMPUTE_32F_PEDANTIC : CUBLAS_COMPUTE_32F;
  MYRIAD_CUBLAS_TRY(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, int(N), int(M), int(K), &alpha, w,
                                 cuda_type(in), int(K), x, cuda_type(in), int(ldx), &beta, y, cuda_type(out),
                                 int(ldy), compute, CUBLAS_GEMM_DEFAULT));
  return ok_status();
}

Result<int> Blas::tune_small_gemm(DType in, DType out, const void* x, int64_t ldx,
                                  std::span<const void* const> weights, void* y, int64_t ldy, int64_t max_rows,
                                  int64_t N, int64_t K, const TunedPaths& paths) {
  if (weights.empty()) return make_error(ErrorCode::kInvalidArgument, "tune_small_gemm: no weights");
  size_t next = 0;
  auto e0 = Event::create(true), e1 = Event::create(true);
  if (!e0.ok()) return e0.error();
  if (!e1.ok()) return e1.error();
  int chose = 0;
  for (int64_t M = 1; M <= std::min(max_rows, kSmallGemmMaxRows); ++M) {
    double best[2] = {1e30, 1e30};  // cuBLAS, small_gemm
    for (int round = 0; round < 3; ++round)
      for (int k = 0; k < 2; ++k) {
        auto run = [&]() -> Status {
          const void* w = weights[next++ % weights.size()];
          if (k == 1 && paths.small) return paths.small(M, w);
          if (k == 1) return small_gemm(in, out, x, ldx, w, y, ldy, M, N, K, 1.0f, 0.0f, stream_);
          if (paths.cublas_before) MYRIAD_TRY(paths.cublas_before(M));
          MYRIAD_TRY(cublas_gemm(in, out, x, ldx, w, y, ldy, M, N, K, 1.0f, 0.0f));
          return paths.cublas_after ? paths.cublas_after(M) : ok_status();
        };
        MYRIAD_TRY(run());  // warm
        MYRIAD_TRY(e0->record(stream_));
        for (int i = 0; i < 5; ++i) MYRIAD_TRY(run());
        MYRIAD_TRY(e1->record(stream_));
        MYRIAD_TRY(e1->synchronize());
        auto ms = elapsed_ms(*e0, *e1);
        if (!ms.ok()) return ms.error();
        best[k] = std::min(best[k], double(ms.value()));
      }
    const ShapeKey key{int64_t(in), int64_t(out), M, N, K};
    if (best[1] < best[0]) {
      small_wins_.insert(key);
      ++chose;
    } else {
      small_wins_.erase(key);
    }
  }
  return chose;
}

}  // namespace myriad::gpu::cuda
