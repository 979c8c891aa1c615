// The GEMM wrapper (y = alpha * x . W^T + beta * y) vs a double-precision
// CPU reference: F32 (TF32 off) and BF16 in, same-dtype or F32 out, odd shapes,
// column slices (ldx/ldy wider than the matrix) and beta = 1 accumulation;
// each case on cuBLAS alone, on small_gemm wherever M <= 8, and as tuned.
#include <cmath>

#include "cuda_test_util.h"
#include "gpu/cuda/gemm.h"
#include "gpu/cuda/small_gemm.h"

namespace myriad::cuda_test {
namespace {

struct GemmCase {
  DType in, out;
  int M, N, K;
  int x_pad, y_pad;  // extra columns in x's and y's rows
  float beta;
};

class GemmTest : public ::testing::TestWithParam<GemmCase> {};

// One gemm of case c through `bt` as it is set, against the reference.
void check_case(gpu::cuda::Blas& bt, const GemmCase& c, const std::vector<float>& x, const std::vector<float>& w,
                const DeviceBuffer& dx, const DeviceBuffer& dw) {
  const int ldx = c.K + c.x_pad, ldy = c.N + c.y_pad;
  std::vector<float> y;
  DeviceBuffer dy;
  if (c.beta != 0.0f) {
    y = randn(size_t(c.M) * ldy, c.out);
    dy = upload(y, c.out);
  } else {
    y.assign(size_t(c.M) * ldy, std::nanf(""));  // padding must stay NaN; the matrix must be written
    dy = poisoned(y.size(), c.out);
  }
  MYRIAD_ASSERT_OK(bt.gemm(c.in, c.out, dx.data(), ldx, dw.data(), dy.data(), ldy, c.M, c.N, c.K, 1.0f, c.beta));
  gemm_ref(x, ldx, w, y, ldy, c.M, c.N, c.K, 1.0f, c.beta, c.out);
  auto got = download(dy, y.size(), c.out);
  std::vector<float> g, r;  // compare the matrix part; check the padding was not touched
  for (int m = 0; m < c.M; ++m)
    for (int n = 0; n < ldy; ++n) {
      const size_t i = size_t(m) * ldy + n;
      if (n < c.N) {
        g.push_back(got[i]);
        r.push_back(y[i]);
      } else if (c.beta == 0.0f) {
        EXPECT_TRUE(std::isnan(got[i])) << "padding written at row " << m << " col " << n;
      }
    }
  const Tol tol = c.out == DType::kF32 && c.in == DType::kF32 ? Tol{1e-4f, 1e-4f}
                  : c.out == DType::kF32                      ? Tol{1e-3f, 1e-3f}  // bf16 inputs exact, f32 sums
                                                              : tol_for(DType::kBF16);
  EXPECT_TRUE(all_close(g, r, tol, "y"));
}

TEST_P(GemmTest, MatchesCpuReference) {
  MYRIAD_REQUIRE_CUDA();
  MYRIAD_CUDA_TEST_SEED();
  const GemmCase c = GetParam();
  const int ldx = c.K + c.x_pad;
  const float scale = 1.0f / std::sqrt(float(c.K));  // keeps outputs O(1) so atol means something
  auto x = randn(size_t(c.M) * ldx, c.in);
  auto w = randn(size_t(c.N) * c.K, c.in, scale);
  auto dx = upload(x, c.in), dw = upload(w, c.in);
  auto bt = gpu::cuda::Blas::create(nullptr);
  MYRIAD_ASSERT_OK(bt);
  using Mode = gpu::cuda::Blas::SmallGemm;
  {
    SCOPED_TRACE("cuBLAS");
    bt->set_small_gemm(Mode::kNever);
    check_case(*bt, c, x, w, dx, dw);
  }
  {
    SCOPED_TRACE("small_gemm wherever M <= 8");
    bt->set_small_gemm(Mode::kAlways);
    check_case(*bt, c, x, w, dx, dw);
  }
  {
    SCOPED_TRACE("as tuned");  // tuning runs on scratch of the case's shape
    bt->set_small_gemm(Mode::kTuned);
    const int64_t rows = gpu::cuda::kSmallGemmMaxRows;
    auto xs = poisoned(size_t(rows) * ldx, c.in), ys = poisoned(size_t(rows) * c.N, c.out);
    const void* weights[] = {dw.data()};
    MYRIAD_ASSERT_OK(bt->tune_small_gemm(c.in, c.out, xs.data(), ldx, weights, ys.data(), c.N, rows, c.N, c.K));
    check_case(*bt, c, x, w, dx, dw);
  }
}

// tune_small_gemm times each path as the step runs it: work the cuBLAS path
// runs around its GEMM counts against cuBLAS, a heavier small_gemm path
// against small_gemm. The extra work is 30 launches of the same kind as the
// other path, so the choice cannot go the other way on any device or on
// cuda_emu.
TEST(Gemm, TuningTimesEachPathAsTheStepRunsIt) {
  MYRIAD_REQUIRE_CUDA();
  const int N = 64, K = 64, rows = 2;
  auto bt = gpu::cuda::Blas::create(nullptr);
  MYRIAD_ASSERT_OK(bt);
  auto w = upload(randn(size_t(N) * K, DType::kF32), DType::kF32);
  auto x = upload(randn(size_t(rows) * K, DType::kF32), DType::kF32);
  auto y = poisoned(size_t(rows) * N, DType::kF32), y2 = poisoned(size_t(rows) * N, DType::kF32);
  const void* weights[] = {w.data()};
  auto small_gemms = [&](int64_t M, int count) -> Status {
    for (int i = 0; i < count; ++i)
      MYRIAD_TRY(gpu::cuda::small_gemm(DType::kF32, DType::kF32, x.data(), K, w.data(), y2.data(), N, M, N, K, 1.0f,
                                       0.0f, nullptr));
    return ok_status();
  };
  int calls = 0;
  gpu::cuda::Blas::TunedPaths heavy_cublas;
  heavy_cublas.cublas_after = [&](int64_t M) {
    ++calls;
    return small_gemms(M, 30);
  };
  auto chose = bt->tune_small_gemm(DType::kF32, DType::kF32, x.data(), K, weights, y.data(), N, rows, N, K,
                                   heavy_cublas);
  MYRIAD_ASSERT_OK(chose);
  EXPECT_EQ(chose.value(), rows);
  EXPECT_GT(calls, 0);
  for (int M = 1; M <= rows; ++M) EXPECT_TRUE(bt->uses_small_gemm(DType::kF32, DType::kF32, M, N, K)) << M;
  gpu::cuda::Blas::TunedPaths heavy_small;
  heavy_small.small = [&](int64_t M, const void*) { return small_gemms(M, 31); };
  chose = bt->tune_small_gemm(DType::kF32, DType::kF32, x.data(), K, weights, y.data(), N, rows, N, K, heavy_small);
  MYRIAD_ASSERT_OK(chose);
  EXPECT_EQ(chose.value(), 0);
  for (int M = 1; M <= rows; ++M) EXPECT_FALSE(bt->uses_small_gemm(DType::kF32, DType::kF32, M, N, K)) << M;
}

TEST(Gemm, RejectsBadArguments) {
  gpu::cuda::Blas none;  // no handle: argument errors must not touch CUDA
  EXPECT_FALSE(none.gemm(DType::kF32, DType::kF32, nullptr, 4, nullptr, nullptr, 4, 1, 4, 4).ok());
  // small_gemm takes at most kSmallGemmMaxRows rows and checks before it launches.
  EXPECT_FALSE(gpu::cuda::small_gemm(DType::kF32, DType::kF32, nullptr, 4, nullptr, nullptr, 4,
                                     gpu::cuda::kSmallGemmMaxRows + 1, 4, 4, 1.0f, 0.0f, nullptr)
                   .ok());
  EXPECT_FALSE(gpu::cuda::small_gemm(DType::kBF16, DType::kF16, nullptr, 4, nullptr, nullptr, 4, 1, 4, 4, 1.0f, 0.0f,
                                     nullptr)
                   .ok());
}

std::vector<GemmCase> gemm_cases() {
  std::vector<GemmCase> v;
  const std::pair<DType, DType> types[] = {
      {DType::kF32, DType::kF32}, {DType::kBF16, DType::kBF16}, {DType::kBF16, DType::kF32}};
  for (auto [in, out] : types) {
      v.push_back({in, out, 1, 64, 64, 0, 0, 0.0f});
      v.push_back({in, out, 7, 176, 64, 0, 0, 0.0f});
      v.push_back({in, out, 33, 512, 64, 5, 0, 0.0f});
      v.push_back({in, out, 64, 2048, 2048, 0, 0, 0.0f});
      v.push_back({in, out, 5, 96, 2048, 0, 32, 0.0f});  // column slice of a wider buffer
      v.push_back({in, out, 16, 256, 128, 0, 0, 1.0f});  // accumulate
      v.push_back({in, out, 8, 300, 520, 8, 4, 1.0f});   // small_gemm's largest M, sliced, accumulating
      v.push_back({in, out, 3, 77, 61, 3, 0, 0.0f});     // K and ldx off the 16-byte chunks: scalar path
      v.push_back({in, out, 2, 4096, 4096, 0, 0, 0.0f});
  }
  return v;
}

INSTANTIATE_TEST_SUITE_P(Grid, GemmTest, ::testing::ValuesIn(gemm_cases()), [](const auto& info) {
  const GemmCase& c = info.param;
  return std::string(dtype_name(c.in)) + "_to_" + dtype_name(c.out) + "_" + std::to_string(c.M) + "x" +
         std::to_string(c.N) + "x" + std::to_string(c.K) + (c.y_pad ? "_slice" : "") + (c.beta != 0 ? "_acc" : "");
});

}  // namespace
}  // namespace myriad::cuda_test
