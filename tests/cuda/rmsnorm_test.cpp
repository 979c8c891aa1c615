// Fused RMSNorm (+ residual) on the device vs a plain CPU twin, F32 and BF16,
// with and without residual, over several shapes.
#include <cmath>

#include "cuda_test_util.h"
#include "gpu/cuda/rmsnorm.h"

namespace myriad::cuda_test {
namespace {

// The CPU twin: float32 arithmetic, the residual sum rounded to the dtype
// before it is normalised, one rounding of the output.
void rmsnorm_ref(DType t, std::vector<float>& out, std::vector<float>* residual, const std::vector<float>& x,
                 const std::vector<float>& w, int rows, int hidden, float eps) {
  out.assign(size_t(rows) * hidden, 0.0f);
  for (int r = 0; r < rows; ++r) {
    std::vector<float> v(hidden);
    double ss = 0;
    for (int i = 0; i < hidden; ++i) {
      float e = x[size_t(r) * hidden + i];
      if (residual) {
        e = round_to(t, e + (*residual)[size_t(r) * hidden + i]);
        (*residual)[size_t(r) * hidden + i] = e;
      }
      v[i] = e;
      ss += double(e) * e;
    }
    const float inv = float(1.0 / std::sqrt(ss / hidden + eps));
    for (int i = 0; i < hidden; ++i) out[size_t(r) * hidden + i] = round_to(t, v[i] * inv * w[i]);
  }
}

struct RmsNormCase {
  DType dtype;
  int rows, hidden;
  bool residual;
};

class RmsNormTest : public ::testing::TestWithParam<RmsNormCase> {};

TEST_P(RmsNormTest, MatchesCpuReference) {
  MYRIAD_REQUIRE_CUDA();
  MYRIAD_CUDA_TEST_SEED();
  const RmsNormCase c = GetParam();
  const float eps = 1e-6f;
  const size_t n = size_t(c.rows) * c.hidden;
  auto x = randn(n, c.dtype, 2.0f);
  auto res = randn(n, c.dtype);
  std::vector<float> w(c.hidden);
  for (auto& e : w) e = round_to(c.dtype, 1.0f + 0.1f * randn(1, DType::kF32)[0]);

  DeviceBuffer dx = upload(x, c.dtype), dw = upload(w, c.dtype), dres = upload(res, c.dtype);
  DeviceBuffer dout = poisoned(n, c.dtype);
  MYRIAD_ASSERT_OK(gpu::cuda::rmsnorm(c.dtype, dout.data(), c.residual ? dres.data() : nullptr, dx.data(),
                                      dw.data(), c.rows, c.hidden, eps, nullptr));
  std::vector<float> ref;
  rmsnorm_ref(c.dtype, ref, c.residual ? &res : nullptr, x, w, c.rows, c.hidden, eps);
  EXPECT_TRUE(all_close(download(dout, n, c.dtype), ref, tol_for(c.dtype), "out"));
  if (c.residual) {
    EXPECT_TRUE(all_close(download(dres, n, c.dtype), res, tol_for(c.dtype), "residual"));
  }
}

TEST(RmsNorm, InPlaceWithoutResidual) {
  MYRIAD_REQUIRE_CUDA();
  MYRIAD_CUDA_TEST_SEED();
  const int rows = 3, hidden = 64;
  auto x = randn(size_t(rows) * hidden, DType::kF32);
  auto w = randn(hidden, DType::kF32);
  DeviceBuffer dx = upload(x, DType::kF32), dw = upload(w, DType::kF32);
  MYRIAD_ASSERT_OK(gpu::cuda::rmsnorm(DType::kF32, dx.data(), nullptr, dx.data(), dw.data(), rows, hidden, 1e-6f,
                                      nullptr));
  std::vector<float> ref;
  rmsnorm_ref(DType::kF32, ref, nullptr, x, w, rows, hidden, 1e-6f);
  EXPECT_TRUE(all_close(download(dx, x.size(), DType::kF32), ref, tol_for(DType::kF32), "in place"));
}

TEST(RmsNorm, RejectsF16AndBadShape) {
  // Argument checks come before any CUDA call, so these run without a device.
  auto st = gpu::cuda::rmsnorm(DType::kF16, nullptr, nullptr, nullptr, nullptr, 1, 8, 1e-6f, nullptr);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("F16"), std::string::npos) << st.error().message;
  EXPECT_FALSE(gpu::cuda::rmsnorm(DType::kF32, nullptr, nullptr, nullptr, nullptr, 1, 0, 1e-6f, nullptr).ok());
}

std::vector<RmsNormCase> rms_norm_cases() {
  std::vector<RmsNormCase> v;
  for (DType t : {DType::kF32, DType::kBF16})
    for (int hidden : {64, 100, 768, 2048, 4096})
      for (int rows : {1, 7, 64})
        for (bool r : {false, true}) v.push_back({t, rows, hidden, r});
  return v;
}

INSTANTIATE_TEST_SUITE_P(Grid, RmsNormTest, ::testing::ValuesIn(rms_norm_cases()), [](const auto& info) {
  const RmsNormCase& c = info.param;
  return std::string(dtype_name(c.dtype)) + "_r" + std::to_string(c.rows) + "_h" + std::to_string(c.hidden) +
         (c.residual ? "_res" : "");
});

}  // namespace
}  // namespace myriad::cuda_test
