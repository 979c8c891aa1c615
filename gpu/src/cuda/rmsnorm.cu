// One block per row: pass 1 forms (and stores) the residual sum and its sum of
// squares, a fixed-order block reduction gives the scale, pass 2 writes out.
// A thread reads back only the residual elements it wrote itself.
#include <string>

#include "cuda_check.cuh"
#include "gpu/cuda/rmsnorm.h"
#include "kernel_common.cuh"
#include "lora_device.cuh"

namespace myriad::gpu::cuda {
namespace {

// ep.v set (rmsnorm_add_lora): the residual gains LoRA's addends (x unused).
template <class T>
__global__ void rmsnorm_kernel(T* __restrict__ out, T* __restrict__ residual, const T* x,
                               const T* __restrict__ w, int hidden, float eps, LoraEpilogue ep) {
  __shared__ float scratch[33];
  const size_t base = size_t(blockIdx.x) * hidden;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
    float v = 0.0f;
    if (ep.v) {
      const T r = lora_epilogue_value(ep, int(blockIdx.x), i, residual[base + i]);
      residual[base + i] = r;
      v = to_f32(r);
    } else {
      v = to_f32(x[base + i]);
      if (residual) {
        const T r = from_f32<T>(v + to_f32(residual[base + i]));
        residual[base + i] = r;
        v = to_f32(r);
      }
    }
    ss += v * v;
  }
  ss = block_sum(ss, scratch);
  const float inv = 1.0f / sqrtf(ss / float(hidden) + eps);
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
    const float v = residual ? to_f32(residual[base + i]) : to_f32(x[base + i]);
    out[base + i] = from_f32<T>(v * inv * to_f32(w[i]));
  }
}

Status check_shape(const char* what, int64_t rows, int64_t hidden) {
  if (rows < 0 || hidden <= 0 || rows > INT32_MAX || hidden > INT32_MAX)
    return make_error(ErrorCode::kInvalidArgument,
                      std::string(what) + ": bad shape [" + std::to_string(rows) + ", " + std::to_string(hidden) + "]");
  return ok_status();
}

int threads_for(int64_t hidden) { return hidden >= 1024 ? 1024 : int((hidden + 31) / 32 * 32); }

}  // namespace

Status rmsnorm(DType dtype, void* out, void* residual, const void* x, const void* weight, int64_t rows,
               int64_t hidden, float eps, StreamHandle stream) {
  if (rows == 0) return ok_status();
  MYRIAD_TRY(check_shape("rmsnorm", rows, hidden));
  return MYRIAD_DISPATCH_DTYPE(dtype, "rmsnorm", {
    rmsnorm_kernel<T><<<unsigned(rows), threads_for(hidden), 0, stream>>>(
        static_cast<T*>(out), static_cast<T*>(residual), static_cast<const T*>(x),
        static_cast<const T*>(weight), int(hidden), eps, LoraEpilogue{});
    MYRIAD_CUDA_TRY_LAUNCH();
    return ok_status();
  });
}

Status rmsnorm_add_lora(DType dtype, void* out, void* residual, const LoraEpilogue& lora, const void* weight,
                        int64_t rows, int64_t hidden, float eps, StreamHandle stream) {
  if (rows == 0) return ok_status();
  MYRIAD_TRY(check_shape("rmsnorm_add_lora", rows, hidden));
  if (residual == nullptr || lora.v == nullptr)
    return make_error(ErrorCode::kInvalidArgument, "rmsnorm_add_lora: residual and lora.v are required");
  return MYRIAD_DISPATCH_DTYPE(dtype, "rmsnorm_add_lora", {
    rmsnorm_kernel<T><<<unsigned(rows), threads_for(hidden), 0, stream>>>(
        static_cast<T*>(out), static_cast<T*>(residual), nullptr, static_cast<const T*>(weight), int(hidden), eps,
        lora);
    MYRIAD_CUDA_TRY_LAUNCH();
    return ok_status();
  });
}

}  // namespace myriad::gpu::cuda
