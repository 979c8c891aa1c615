// cuda_emu's cuBLAS: a reference GEMM (float32 sums, in k order) behind the
// handle API. Operands are checked against their device allocations at the
// call, as a device would fault on them; beta = 0 does not read C (it may be
// NaN-poisoned), as cuBLAS documents.
#include <algorithm>
#include <cstring>
#include <vector>

#include "cuda_emu_internal.h"
#include "include/cublas_v2.h"
#include "include/cuda_bf16.h"

struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasPointerMode_t pointer_mode = CUBLAS_POINTER_MODE_HOST;
};

namespace {

size_t element_bytes(cudaDataType_t t) { return t == CUDA_R_32F ? 4 : 2; }

float load(const void* base, cudaDataType_t t, size_t i) {
  if (t == CUDA_R_32F) return static_cast<const float*>(base)[i];
  return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[i]);
}
void store(void* base, cudaDataType_t t, size_t i, float v) {
  if (t == CUDA_R_32F)
    static_cast<float*>(base)[i] = v;
  else
    static_cast<__nv_bfloat16*>(base)[i] = __float2bfloat16_rn(v);
}

// op(X) as rows x cols in row-major float32, from a column-major X with leading dimension ld.
std::vector<float> unpack(const void* x, cudaDataType_t t, int ld, cublasOperation_t op, int rows, int cols) {
  std::vector<float> out(size_t(rows) * size_t(cols));
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c)
      out[size_t(r) * size_t(cols) + size_t(c)] =
          load(x, t, op == CUBLAS_OP_N ? size_t(r) + size_t(c) * size_t(ld) : size_t(c) + size_t(r) * size_t(ld));
  return out;
}

// Bytes a column-major operand spans: (cols - 1) * ld + rows elements.
size_t span_bytes(int rows, int cols, int ld, cudaDataType_t t) {
  return (size_t(cols - 1) * size_t(ld) + size_t(rows)) * element_bytes(t);
}

}  // namespace

const char* cublasGetStatusName(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}
const char* cublasGetStatusString(cublasStatus_t s) { return cublasGetStatusName(s); }

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
  *handle = new cublasContext{};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace(cublasHandle_t handle, void* workspace, size_t bytes) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (bytes && !cuda_emu::is_device_range(workspace, bytes)) return CUBLAS_STATUS_INVALID_VALUE;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t) {
  return handle ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}
cublasStatus_t cublasSetPointerMode(cublasHandle_t handle, cublasPointerMode_t mode) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->pointer_mode = mode;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void* alpha, const void* A, cudaDataType_t a_type, int lda, const void* B,
                            cudaDataType_t b_type, int ldb, const void* beta, void* C, cudaDataType_t c_type,
                            int ldc, cublasComputeType_t, cublasGemmAlgo_t) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (handle->pointer_mode != CUBLAS_POINTER_MODE_HOST || a_type != b_type) return CUBLAS_STATUS_NOT_SUPPORTED;
  const int a_rows = transa == CUBLAS_OP_N ? m : k, a_cols = transa == CUBLAS_OP_N ? k : m;
  const int b_rows = transb == CUBLAS_OP_N ? k : n, b_cols = transb == CUBLAS_OP_N ? n : k;
  if (m < 0 || n < 0 || k < 0 || lda < std::max(1, a_rows) || ldb < std::max(1, b_rows) || ldc < std::max(1, m))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  if ((k > 0 && (!cuda_emu::is_device_range(A, span_bytes(a_rows, a_cols, lda, a_type)) ||
                 !cuda_emu::is_device_range(B, span_bytes(b_rows, b_cols, ldb, b_type)))) ||
      !cuda_emu::is_device_range(C, span_bytes(m, n, ldc, c_type)))
    return CUBLAS_STATUS_INVALID_VALUE;  // a device would fault
  const float a = *static_cast<const float*>(alpha), b = *static_cast<const float*>(beta);  // read at the call
  cuda_emu::enqueue(handle->stream, [=] {
    const std::vector<float> opa = unpack(A, a_type, lda, transa, m, k);  // m x k
    const std::vector<float> opb_t = unpack(B, b_type, ldb, transb == CUBLAS_OP_N ? CUBLAS_OP_T : CUBLAS_OP_N, n,
                                            k);  // op(B)^T: n x k
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        float s = 0.0f;
        const float* ar = opa.data() + size_t(i) * size_t(k);
        const float* br = opb_t.data() + size_t(j) * size_t(k);
        for (int l = 0; l < k; ++l) s += ar[l] * br[l];
        const size_t ci = size_t(i) + size_t(j) * size_t(ldc);
        store(C, c_type, ci, b != 0.0f ? a * s + b * load(C, c_type, ci) : a * s);
      }
  });
  return CUBLAS_STATUS_SUCCESS;
}
