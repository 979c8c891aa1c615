#include "harness.h"

#include <cstring>

namespace myriad::backend_ops {

Tol default_tol(DType stored) { return stored == DType::kBF16 ? Tol{1e-2, 1e-2} : Tol{1e-4, 1e-4}; }

std::vector<float> rounded(std::vector<float> v, DType t) {
  if (t != DType::kF32)
    for (float& x : v) x = round_to_dtype(t, x);
  return v;
}

std::vector<float> randn(std::mt19937_64& rng, size_t n, DType t, float sd) {
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return rounded(std::move(v), t);
}

std::vector<float> uniform(std::mt19937_64& rng, size_t n, DType t, float a) {
  std::uniform_real_distribution<float> d(-a, a);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return rounded(std::move(v), t);
}

std::vector<uint8_t> to_bytes(const std::vector<float>& v, DType t) {
  std::vector<uint8_t> b(v.size() * dtype_size(t));
  for (size_t i = 0; i < v.size(); ++i) {
    if (t == DType::kF32) {
      std::memcpy(&b[4 * i], &v[i], 4);
    } else {
      const uint16_t h = t == DType::kBF16 ? f32_to_bf16(v[i]) : f32_to_f16(v[i]);
      std::memcpy(&b[2 * i], &h, 2);
    }
  }
  return b;
}

std::vector<float> from_bytes(const uint8_t* b, size_t n, DType t) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) {
    if (t == DType::kF32) {
      std::memcpy(&v[i], b + 4 * i, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, b + 2 * i, 2);
      v[i] = t == DType::kBF16 ? bf16_to_f32(h) : f16_to_f32(h);
    }
  }
  return v;
}

std::string lower_name(DType t) {
  switch (t) {
    case DType::kF32: return "f32";
    case DType::kBF16: return "bf16";
    case DType::kF16: return "f16";
  }
  return "?";
}

}  // namespace myriad::backend_ops
