// small_gemm (the M <= 8 weight-streaming GEMV) called directly, against a
// double-precision CPU reference: every row count 1..8, output widths that do
// not fill a block, K on the 16-byte path and off it (odd K, a misaligned x),
// alpha and beta, padded rows (the padding must stay untouched), and the
// shapes it refuses. gemm_test covers it again behind Blas's choice.
#include <algorithm>
#include <cmath>

#include "cuda_test_util.h"
#include "gpu/cuda/elementwise.h"
#include "gpu/cuda/small_gemm.h"

namespace myriad::cuda_test {
namespace {

struct SmallGemmCase {
  DType in, out;
  int N, K;
  int x_offset;  // elements: 1 makes x misaligned, forcing the scalar path
};

class SmallGemmTest : public ::testing::TestWithParam<SmallGemmCase> {};

TEST_P(SmallGemmTest, EveryRowCountMatchesCpuReference) {
  MYRIAD_REQUIRE_CUDA();
  MYRIAD_CUDA_TEST_SEED();
  const SmallGemmCase c = GetParam();
  const int ldx = c.K + 8, ldy = c.N + 3;
  const float alpha = 0.5f;
  auto w = randn(size_t(c.N) * c.K, c.in, 1.0f / std::sqrt(float(c.K)));
  auto dw = upload(w, c.in);
  for (int M = 1; M <= int(gpu::cuda::kSmallGemmMaxRows); ++M) {
    for (float beta : {0.0f, 1.0f}) {
      SCOPED_TRACE("M=" + std::to_string(M) + " beta=" + std::to_string(beta));
      auto x = randn(size_t(c.x_offset) + size_t(M) * ldx, c.in);
      auto dx = upload(x, c.in);
      std::vector<float> y;
      DeviceBuffer dy;
      if (beta != 0.0f) {
        y = randn(size_t(M) * ldy, c.out);
        dy = upload(y, c.out);
      } else {
        y.assign(size_t(M) * ldy, std::nanf(""));
        dy = poisoned(y.size(), c.out);
      }
      const size_t esz = dtype_size(c.in);
      MYRIAD_ASSERT_OK(gpu::cuda::small_gemm(c.in, c.out, static_cast<char*>(dx.data()) + c.x_offset * esz, ldx,
                                             dw.data(), dy.data(), ldy, M, c.N, c.K, alpha, beta, nullptr));
      const auto got = download(dy, y.size(), c.out);
      std::vector<float> ref = y;
      gemm_ref(std::vector<float>(x.begin() + c.x_offset, x.end()), ldx, w, ref, ldy, M, c.N, c.K, alpha, beta, c.out);
      std::vector<float> g, r;
      for (int m = 0; m < M; ++m)
        for (int n = 0; n < ldy; ++n) {
          const size_t i = size_t(m) * ldy + size_t(n);
          if (n >= c.N) {
            if (beta == 0.0f) {
              EXPECT_TRUE(std::isnan(got[i])) << "padding written at row " << m << " col " << n;
            }
            continue;
          }
          g.push_back(got[i]);
          r.push_back(ref[i]);
        }
      const Tol tol = c.out == DType::kF32 && c.in == DType::kF32 ? Tol{1e-4f, 1e-4f}
                      : c.out == DType::kF32                      ? Tol{1e-3f, 1e-3f}  // exact inputs, f32 sums
                                                                  : tol_for(DType::kBF16);
      EXPECT_TRUE(all_close(g, r, tol, "y"));
    }
  }
}

// small_gemm_rmsnorm: the GEMV of RMSNorm(x) * gamma, each element rounded
// to the input dtype as rmsnorm() stores it, and the normalized rows written
// (every block its slice) where asked.
TEST_P(SmallGemmTest, NormalizedInputMatchesRmsnormThenGemv) {
  MYRIAD_REQUIRE_CUDA();
  MYRIAD_CUDA_TEST_SEED();
  const SmallGemmCase c = GetParam();
  const int ldx = c.K + 8, ldy = c.N + 3, ldn = c.K + 4;
  const float eps = 1e-5f, alpha = 1.0f, beta = 1.0f;
  auto w = randn(size_t(c.N) * c.K, c.in, 1.0f / std::sqrt(float(c.K)));
  auto gamma = randn(size_t(c.K), c.in, 0.5f);
  auto dw = upload(w, c.in), dg = upload(gamma, c.in);
  for (int M : {1, 3, 8}) {
    for (bool write_normed : {true, false}) {
      SCOPED_TRACE("M=" + std::to_string(M) + (write_normed ? " writing n" : ""));
      auto x = randn(size_t(c.x_offset) + size_t(M) * ldx, c.in, 3.0f);
      auto y = randn(size_t(M) * ldy, c.out);
      auto dx = upload(x, c.in), dy = upload(y, c.out);
      auto dn = poisoned(size_t(M) * ldn, c.in);
      const size_t esz = dtype_size(c.in);
      MYRIAD_ASSERT_OK(gpu::cuda::small_gemm_rmsnorm(c.in, c.out, static_cast<char*>(dx.data()) + c.x_offset * esz,
                                                     ldx, dg.data(), eps, write_normed ? dn.data() : nullptr, ldn,
                                                     dw.data(), dy.data(), ldy, M, c.N, c.K, alpha, beta, nullptr));
      std::vector<float> n_ref(size_t(M) * c.K), y_ref, y_got, n_got;
      for (int m = 0; m < M; ++m) {
        const float* xr = x.data() + c.x_offset + size_t(m) * ldx;
        double ss = 0;
        for (int k = 0; k < c.K; ++k) ss += double(xr[k]) * xr[k];
        const float rstd = float(1.0 / std::sqrt(ss / c.K + eps));
        for (int k = 0; k < c.K; ++k) n_ref[size_t(m) * c.K + k] = round_to(c.in, xr[k] * rstd * gamma[size_t(k)]);
      }
      const auto got = download(dy, y.size(), c.out);
      const auto normed = download(dn, size_t(M) * ldn, c.in);
      std::vector<float> ref = y;
      gemm_ref(n_ref, c.K, w, ref, ldy, M, c.N, c.K, alpha, beta, c.out);
      for (int m = 0; m < M; ++m) {
        for (int n = 0; n < c.N; ++n) {
          const size_t i = size_t(m) * ldy + size_t(n);
          y_ref.push_back(ref[i]);
          y_got.push_back(got[i]);
        }
        for (int k = 0; k < ldn; ++k) {
          const float v = normed[size_t(m) * ldn + size_t(k)];
          if (!write_normed || k >= c.K) {
            ASSERT_TRUE(std::isnan(v)) << "n written at row " << m << " col " << k;
          } else {
            n_got.push_back(v);
          }
        }
      }
      const Tol tol = c.in == DType::kF32 && c.out == DType::kF32 ? Tol{1e-4f, 1e-4f} : tol_for(DType::kBF16);
      EXPECT_TRUE(all_close(y_got, y_ref, tol, "y"));
      if (write_normed) {
        EXPECT_TRUE(all_close(n_got, n_ref, tol_for(c.in), "n"));
      }
    }
  }
}

// small_gemm_silu_mul: W's gate rows then up rows, the outputs silu(g) * u
// with g and u rounded to the dtype as the GEMV stores them; with the norm
// (gamma) and without it, every row count, feature counts that leave a
// block's warps idle (inter % 4 != 0), and the padding past inter untouched;
// and the same bits as the launches it replaces.
// The case's N is inter; its output dtype is unused (the input's).
TEST_P(SmallGemmTest, GatedOutputMatchesGemvThenSiluMul) {
  MYRIAD_REQUIRE_CUDA();
  MYRIAD_CUDA_TEST_SEED();
  const SmallGemmCase c = GetParam();
  const DType dt = c.in;
  const int inter = c.N, ldx = c.K + 8, ldy = inter + 3;
  const float eps = 1e-5f;
  auto w = randn(size_t(2 * inter) * c.K, dt, 1.0f / std::sqrt(float(c.K)));
  auto gamma = randn(size_t(c.K), dt, 0.5f);
  auto dw = upload(w, dt), dg = upload(gamma, dt);
  for (int M = 1; M <= int(gpu::cuda::kSmallGemmMaxRows); ++M) {
    for (bool norm : {true, false}) {
      SCOPED_TRACE("M=" + std::to_string(M) + (norm ? " with the norm" : ""));
      auto x = randn(size_t(c.x_offset) + size_t(M) * ldx, dt, 2.0f);
      auto dx = upload(x, dt);
      auto dy = poisoned(size_t(M) * ldy, dt);
      MYRIAD_ASSERT_OK(gpu::cuda::small_gemm_silu_mul(dt, static_cast<char*>(dx.data()) + c.x_offset * dtype_size(dt),
                                                      ldx, norm ? dg.data() : nullptr, eps, dw.data(), dy.data(), ldy,
                                                      M, inter, c.K, nullptr));
      const auto got = download(dy, size_t(M) * ldy, dt);
      // The unfused pair it replaces, on the device: the same bits.
      auto gu = poisoned(size_t(M) * 2 * inter, dt), act = poisoned(size_t(M) * inter, dt);
      const void* xp = static_cast<char*>(dx.data()) + c.x_offset * dtype_size(dt);
      if (norm) {
        MYRIAD_ASSERT_OK(gpu::cuda::small_gemm_rmsnorm(dt, dt, xp, ldx, dg.data(), eps, nullptr, 0, dw.data(),
                                                       gu.data(), 2 * inter, M, 2 * inter, c.K, 1.0f, 0.0f, nullptr));
      } else {
        MYRIAD_ASSERT_OK(gpu::cuda::small_gemm(dt, dt, xp, ldx, dw.data(), gu.data(), 2 * inter, M, 2 * inter, c.K,
                                               1.0f, 0.0f, nullptr));
      }
      MYRIAD_ASSERT_OK(gpu::cuda::silu_mul(dt, act.data(), gu.data(), M, inter, nullptr));
      const auto unfused = download(act, size_t(M) * inter, dt);
      for (int m = 0; m < M; ++m)
        for (int j = 0; j < inter; ++j)
          ASSERT_EQ(got[size_t(m) * ldy + size_t(j)], unfused[size_t(m) * inter + size_t(j)])
              << "row " << m << " feature " << j << ": not the bits of small_gemm then silu_mul";
      std::vector<float> y_got, y_ref, n(size_t(M) * c.K), gu_ref(size_t(M) * 2 * inter);
      for (int m = 0; m < M; ++m) {
        const float* xr = x.data() + c.x_offset + size_t(m) * ldx;
        float* nr = n.data() + size_t(m) * c.K;
        std::copy(xr, xr + c.K, nr);
        if (norm) {
          double ss = 0;
          for (int k = 0; k < c.K; ++k) ss += double(xr[k]) * xr[k];
          const float rstd = float(1.0 / std::sqrt(ss / c.K + eps));
          for (int k = 0; k < c.K; ++k) nr[k] = round_to(dt, xr[k] * rstd * gamma[size_t(k)]);
        }
      }
      gemm_ref(n, c.K, w, gu_ref, 2 * inter, M, 2 * inter, c.K, 1.0f, 0.0f, dt);
      for (int m = 0; m < M; ++m) {
        const float* gu = gu_ref.data() + size_t(m) * 2 * inter;
        for (int j = 0; j < ldy; ++j) {
          const float v = got[size_t(m) * ldy + size_t(j)];
          if (j >= inter) {
            ASSERT_TRUE(std::isnan(v)) << "padding written at row " << m << " col " << j;
            continue;
          }
          const float g = gu[j], u = gu[inter + j];
          y_ref.push_back(round_to(dt, g / (1.0f + std::exp(-g)) * u));
          y_got.push_back(v);
        }
      }
      EXPECT_TRUE(all_close(y_got, y_ref, tol_for(dt), "silu(g) * u"));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, SmallGemmTest,
                         ::testing::Values(SmallGemmCase{DType::kF32, DType::kF32, 33, 64, 0},
                                           SmallGemmCase{DType::kF32, DType::kF32, 7, 257, 0},
                                           SmallGemmCase{DType::kBF16, DType::kBF16, 96, 128, 0},
                                           SmallGemmCase{DType::kBF16, DType::kBF16, 9, 100, 0},
                                           SmallGemmCase{DType::kBF16, DType::kF32, 1, 256, 0},
                                           SmallGemmCase{DType::kBF16, DType::kF32, 40, 64, 1}));

TEST(SmallGemm, RefusesShapesItCannotRunAndWritesNothing) {
  MYRIAD_REQUIRE_CUDA();
  auto x = poisoned(16 * 9, DType::kF32), w = poisoned(16 * 4, DType::kF32), y = poisoned(9 * 4, DType::kF32);
  using gpu::cuda::small_gemm;
  auto too_many_rows = small_gemm(DType::kF32, DType::kF32, x.data(), 16, w.data(), y.data(), 4, 9, 4, 16, 1, 0,
                                  nullptr);
  ASSERT_FALSE(too_many_rows.ok());
  EXPECT_EQ(too_many_rows.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(too_many_rows.error().message.find("M=9"), std::string::npos) << too_many_rows.error().message;
  auto short_ldx = small_gemm(DType::kF32, DType::kF32, x.data(), 8, w.data(), y.data(), 4, 2, 4, 16, 1, 0, nullptr);
  EXPECT_FALSE(short_ldx.ok());
  auto narrowing = small_gemm(DType::kF32, DType::kBF16, x.data(), 16, w.data(), y.data(), 4, 2, 4, 16, 1, 0, nullptr);
  ASSERT_FALSE(narrowing.ok());
  EXPECT_EQ(narrowing.error().code, ErrorCode::kUnsupported);
  MYRIAD_ASSERT_OK(small_gemm(DType::kF32, DType::kF32, x.data(), 16, w.data(), y.data(), 4, 0, 4, 16, 1, 0, nullptr));
  auto gated_short_ldy = gpu::cuda::small_gemm_silu_mul(DType::kF32, x.data(), 16, nullptr, 0.0f, w.data(), y.data(),
                                                        1, 2, 2, 16, nullptr);  // y needs inter = 2 columns
  ASSERT_FALSE(gated_short_ldy.ok());
  EXPECT_NE(gated_short_ldy.error().message.find("small_gemm_silu_mul"), std::string::npos);
  EXPECT_FALSE(gpu::cuda::small_gemm_silu_mul(DType::kF32, x.data(), 16, nullptr, 0.0f, w.data(), y.data(), 4, 2, 0,
                                              16, nullptr)
                   .ok());
  for (float v : download(y, 9 * 4, DType::kF32)) ASSERT_TRUE(std::isnan(v)) << "a refused or empty call wrote y";
}

}  // namespace
}  // namespace myriad::cuda_test
