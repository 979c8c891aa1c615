// CUDA / cuBLAS error checks with file and line (llm.c's cudaCheck), for .cu
// files only. TRY returns an Error (expected failures: out of memory, no
// device, a launch that cannot run); CHECK aborts (our own bugs, and frees in
// destructors where nothing can be returned). Stateless; thread-safe.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "runtime/result.h"

namespace myriad::gpu::cuda {

inline Error cuda_error(cudaError_t e, const char* call, const char* file, int line) {
  (void)cudaGetLastError();  // clear a non-sticky error so later calls start clean
  const ErrorCode code = e == cudaErrorMemoryAllocation ? ErrorCode::kResourceExhausted : ErrorCode::kInternal;
  return make_error(code, std::string(file) + ":" + std::to_string(line) + ": " + call + " failed: " +
                              cudaGetErrorName(e) + " (" + std::to_string(int(e)) + "): " + cudaGetErrorString(e));
}

inline Error cublas_error(cublasStatus_t s, const char* call, const char* file, int line) {
  const ErrorCode code = s == CUBLAS_STATUS_ALLOC_FAILED ? ErrorCode::kResourceExhausted : ErrorCode::kInternal;
  return make_error(code, std::string(file) + ":" + std::to_string(line) + ": " + call + " failed: " +
                              cublasGetStatusName(s) + " (" + std::to_string(int(s)) + "): " + cublasGetStatusString(s));
}

}  // namespace myriad::gpu::cuda

#define MYRIAD_CUDA_TRY(call)                                                          \
  do {                                                                                 \
    const cudaError_t myriad_e_ = (call);                                              \
    if (myriad_e_ != cudaSuccess)                                                      \
      return ::myriad::gpu::cuda::cuda_error(myriad_e_, #call, __FILE__, __LINE__);    \
  } while (0)

#define MYRIAD_CUBLAS_TRY(call)                                                        \
  do {                                                                                 \
    const cublasStatus_t myriad_s_ = (call);                                           \
    if (myriad_s_ != CUBLAS_STATUS_SUCCESS)                                            \
      return ::myriad::gpu::cuda::cublas_error(myriad_s_, #call, __FILE__, __LINE__);  \
  } while (0)

// Checks the launch that precedes it (bad configuration, no device).
#define MYRIAD_CUDA_TRY_LAUNCH() MYRIAD_CUDA_TRY(cudaGetLastError())

#define MYRIAD_CUDA_CHECK(call)                                                        \
  do {                                                                                 \
    const cudaError_t myriad_e_ = (call);                                              \
    if (myriad_e_ != cudaSuccess)                                                      \
      ::myriad::assertion_failed(__FILE__, __LINE__, #call,                            \
                                 std::string(cudaGetErrorName(myriad_e_)) + ": " +     \
                                     cudaGetErrorString(myriad_e_));                   \
  } while (0)
