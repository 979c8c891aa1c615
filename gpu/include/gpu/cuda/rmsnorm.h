// Fused RMSNorm with residual add on the device (vLLM's fused_add_rms_norm).
//
//   residual == nullptr: out = x / sqrt(mean(x^2) + eps) * weight
//   residual != nullptr: residual = dtype(residual + x); out = rmsnorm(residual)
// Arithmetic in float32; the residual sum is rounded to the dtype before it is
// normalised (so the stored residual is exactly what was normalised). `out`
// may alias `x` (in-place) when there is no residual. Stateless; thread-safe.
#pragma once

#include <cstdint>

#include "gpu/cuda/device_memory.h"
#include "runtime/dtype.h"
#include "runtime/result.h"

namespace myriad::gpu::cuda {

// dtype: F32 or BF16 for out, residual, x and weight alike.
Status rmsnorm(DType dtype,
               void* out,             // [rows, hidden]
               void* residual,        // [rows, hidden] or nullptr; updated in place
               const void* x,         // [rows, hidden]
               const void* weight,    // [hidden]
               int64_t rows, int64_t hidden, float eps, StreamHandle stream);

// rmsnorm() with a float32 x: residual = dtype(residual + delta); out =
// rmsnorm(residual). The executor's LoRA of o_proj and down, computed beside
// their GEMMs into a float32 delta, lands in the residual stream here, with
// the one rounding an expand into the residual would have made.
Status rmsnorm_add_f32(DType dtype, void* out, void* residual, const float* delta, const void* weight,
                       int64_t rows, int64_t hidden, float eps, StreamHandle stream);

}  // namespace myriad::gpu::cuda
