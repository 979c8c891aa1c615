// cuda_emu's <cuda_bf16.h>: bfloat16 storage and the two conversions the
// kernels use: the runtime's (round to nearest even), except that NaN becomes
// the device's canonical 0x7fff rather than a quieted copy of itself.
#pragma once

#include <cmath>
#include <cstdint>

#include "../cuda_emu.h"
#include "runtime/dtype.h"

struct __nv_bfloat16 {
  uint16_t __x;
};

inline float __bfloat162float(__nv_bfloat16 b) { return myriad::bf16_to_f32(b.__x); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  return __nv_bfloat16{std::isnan(f) ? uint16_t(0x7fff) : myriad::f32_to_bf16(f)};
}
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
