// Element types of checkpoints and device buffers, and exact scalar
// conversions. bf16 -> f32 is a shift; f32 -> bf16 rounds to nearest even.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace myriad {

enum class DType : uint8_t { kF32, kF16, kBF16 };

inline size_t dtype_size(DType t) { return t == DType::kF32 ? 4 : 2; }
const char* dtype_name(DType t);                         // "F32", "F16", "BF16"
std::optional<DType> dtype_from_safetensors(std::string_view s);  // "F32", "F16", "BF16"
// Command-line names: "f32"/"float32", "bf16"/"bfloat16", "f16"/"float16".
std::optional<DType> dtype_from_name(std::string_view s);

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// The value an element of dtype `t` holds for x (rounded to nearest even).
float round_to_dtype(DType t, float x);

}  // namespace myriad
