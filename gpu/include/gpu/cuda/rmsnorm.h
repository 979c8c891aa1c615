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
#include "gpu/cuda/lora.h"
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

// residual = bgmv_expand(residual) as an epilogue (lora.h: the LoRA of
// o_proj or down, whose GEMMs accumulate into the residual stream, applied
// where the next norm reads it); out = rmsnorm(residual). The same bits as
// bgmv_expand into residual, then rmsnorm() without a residual.
Status rmsnorm_add_lora(DType dtype, void* out, void* residual, const LoraEpilogue& lora, const void* weight,
                        int64_t rows, int64_t hidden, float eps, StreamHandle stream);

}  // namespace myriad::gpu::cuda
