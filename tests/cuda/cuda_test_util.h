// Helpers shared by the CUDA kernel tests: skip without a device, random
// inputs (rounded to the dtype under test so the CPU reference sees exactly
// what the device sees), upload/download, NaN-poisoned outputs (0xFF bytes are
// NaN in f32 and bf16, so an element a kernel forgets to write fails), and an
// element-wise |got - ref| <= atol + rtol * |ref| comparison.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gpu/cuda/device_memory.h"
#include "runtime/dtype.h"
#include "test_seed.h"

#define MYRIAD_REQUIRE_CUDA()                                                       \
  do {                                                                              \
    if (auto myriad_reason_ = ::myriad::gpu::cuda::device_unavailable_reason()) {   \
      GTEST_SKIP() << "no CUDA device: " << *myriad_reason_;                        \
    }                                                                               \
  } while (0)

#define MYRIAD_ASSERT_OK(expr)                                                      \
  do {                                                                              \
    auto&& myriad_st_ = (expr);                                                     \
    ASSERT_TRUE(myriad_st_.ok()) << #expr << ": " << myriad_st_.error().to_string(); \
  } while (0)

namespace myriad::cuda_test {

using gpu::cuda::DeviceBuffer;

// The random source of the CUDA tests: fresh inputs every run, reproducible.
// A test that draws from it starts with MYRIAD_CUDA_TEST_SEED(), which
// reseeds it (MYRIAD_TEST_SEED or a fresh seed, printed; see test_seed.h) and
// names the seed in every failure of the test. A draw before any reseed
// seeds it the same way, so no input is ever drawn from an unprinted seed.
struct SeededRng {
  std::mt19937_64 gen;
  bool seeded = false;
};
inline SeededRng& rng_state() {
  static SeededRng s;
  return s;
}
inline std::string reseed_rng() {
  const uint64_t seed = ::myriad::testing::test_seed();
  rng_state().gen.seed(seed);
  rng_state().seeded = true;
  return ::myriad::testing::seed_note(seed);
}
inline std::mt19937_64& rng() {
  if (!rng_state().seeded) (void)reseed_rng();
  return rng_state().gen;
}
#define MYRIAD_CUDA_TEST_SEED() SCOPED_TRACE(::myriad::cuda_test::reseed_rng())

inline float round_to(DType t, float v) { return t == DType::kBF16 ? bf16_to_f32(f32_to_bf16(v)) : v; }

// Normal(0, scale) values, rounded to `t`.
inline std::vector<float> randn(size_t n, DType t, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = round_to(t, d(rng()));
  return v;
}

inline std::vector<uint8_t> to_bytes(const std::vector<float>& v, DType t) {
  std::vector<uint8_t> b(v.size() * dtype_size(t));
  if (t == DType::kF32) {
    std::memcpy(b.data(), v.data(), b.size());
  } else {
    for (size_t i = 0; i < v.size(); ++i) {
      const uint16_t h = f32_to_bf16(v[i]);
      std::memcpy(&b[2 * i], &h, 2);
    }
  }
  return b;
}

inline std::vector<float> from_bytes(const std::vector<uint8_t>& b, DType t) {
  const size_t n = b.size() / dtype_size(t);
  std::vector<float> v(n);
  if (t == DType::kF32) {
    std::memcpy(v.data(), b.data(), b.size());
  } else {
    for (size_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, &b[2 * i], 2);
      v[i] = bf16_to_f32(h);
    }
  }
  return v;
}

// Aborts the test (via the returned buffer being empty) only on a CUDA error,
// which the MYRIAD_ASSERT_OK in callers reports.
template <class T>
DeviceBuffer upload_raw(const std::vector<T>& v) {
  auto b = DeviceBuffer::alloc(std::max<size_t>(1, v.size() * sizeof(T)));
  EXPECT_TRUE(b.ok()) << b.error().to_string();
  if (!b.ok()) return {};
  auto st = gpu::cuda::copy_h2d(b->data(), v.data(), v.size() * sizeof(T));
  EXPECT_TRUE(st.ok()) << st.error().to_string();
  return std::move(b.value());
}

inline DeviceBuffer upload(const std::vector<float>& v, DType t) { return upload_raw(to_bytes(v, t)); }

// A device buffer of n elements of dtype t filled with NaN (0xFF bytes).
inline DeviceBuffer poisoned(size_t n, DType t) {
  auto b = DeviceBuffer::alloc(std::max<size_t>(1, n * dtype_size(t)));
  EXPECT_TRUE(b.ok()) << b.error().to_string();
  if (!b.ok()) return {};
  auto st = gpu::cuda::fill_bytes(b->data(), 0xFF, n * dtype_size(t));
  EXPECT_TRUE(st.ok()) << st.error().to_string();
  return std::move(b.value());
}

inline std::vector<float> download(const DeviceBuffer& b, size_t n, DType t) {
  std::vector<uint8_t> bytes(n * dtype_size(t));
  auto st = gpu::cuda::copy_d2h(bytes.data(), b.data(), bytes.size());
  EXPECT_TRUE(st.ok()) << st.error().to_string();
  auto sync = gpu::cuda::device_synchronize();
  EXPECT_TRUE(sync.ok()) << sync.error().to_string();
  return from_bytes(bytes, t);
}

template <class T>
std::vector<T> download_raw(const DeviceBuffer& b, size_t n) {
  std::vector<T> v(n);
  auto st = gpu::cuda::copy_d2h(v.data(), b.data(), n * sizeof(T));
  EXPECT_TRUE(st.ok()) << st.error().to_string();
  auto sync = gpu::cuda::device_synchronize();
  EXPECT_TRUE(sync.ok()) << sync.error().to_string();
  return v;
}

// The GEMM reference, in double: y[m, n] = out(alpha * sum_k x[m*ldx + k] *
// w[n*K + k] + beta * y[m*ldy + n]) (y's old value not read when beta is 0).
inline void gemm_ref(const std::vector<float>& x, int ldx, const std::vector<float>& w, std::vector<float>& y,
                     int ldy, int M, int N, int K, float alpha, float beta, DType out) {
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      double s = 0;
      for (int k = 0; k < K; ++k) s += double(x[size_t(m) * ldx + k]) * w[size_t(n) * K + k];
      float& d = y[size_t(m) * ldy + n];
      d = round_to(out, float(alpha * s + (beta != 0.0f ? double(beta) * d : 0.0)));
    }
}

// Tolerances by dtype for float32-accumulated results: f32 leaves only
// summation-order differences; bf16 rounds the output (8 bits of mantissa:
// relative error 2^-8 = 3.9e-3) and possibly intermediates, so 2e-2 relative.
struct Tol {
  float atol, rtol;
};
inline Tol tol_for(DType t) { return t == DType::kF32 ? Tol{1e-4f, 1e-4f} : Tol{2e-2f, 2e-2f}; }

inline ::testing::AssertionResult all_close(const std::vector<float>& got, const std::vector<float>& ref, Tol tol,
                                            const std::string& what) {
  if (got.size() != ref.size())
    return ::testing::AssertionFailure() << what << ": size " << got.size() << " != " << ref.size();
  size_t bad = 0, first = 0;
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(double(got[i]) - double(ref[i]));
    const bool ok = std::isfinite(got[i]) && err <= tol.atol + tol.rtol * std::fabs(ref[i]);
    if (!ok) {
      if (bad++ == 0) first = i;
    }
    if (std::isfinite(err)) worst = std::max(worst, err);
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": " << bad << " of " << got.size()
                                       << " elements out of tolerance (atol " << tol.atol << ", rtol " << tol.rtol
                                       << "); first at " << first << ": got " << got[first] << ", ref "
                                       << ref[first] << "; largest finite error " << worst;
}

}  // namespace myriad::cuda_test
