// Every CPU kernel against its naive reference on fresh random inputs.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <iterator>
#include <random>
#include <vector>

#include "cpu_kernel_checks.h"
#include "gpu/cpu/matmul.h"
#include "gpu/cpu/ops.h"
#include "gpu/cpu/thread_pool.h"
#include "test_seed.h"

namespace myriad::gpu::cpu {
namespace {

// More threads than this machine's cores, and workers that sleep between
// regions (spin 0): late and descheduled workers must neither miss nor
// repeat a chunk, nor run a chunk of a region that has moved on.
class CpuThreadPool : public ::testing::TestWithParam<int> {};

TEST_P(CpuThreadPool, CoversEveryIndexOnceAcrossManyRegions) {
  ThreadPool pool(3, GetParam());
  ASSERT_EQ(pool.size(), 3);
  std::vector<std::atomic<int>> hits(1000);
  for (int round = 0; round < 2000; ++round) {
    const int64_t n = 1 + round % 997, grain = 1 + round % 13;
    pool.parallel_for(n, grain, [&](int64_t b, int64_t e, int w) {
      ASSERT_GE(w, 0);
      ASSERT_LT(w, 3);
      ASSERT_LE(e - b, grain);
      for (int64_t i = b; i < e; ++i) hits[size_t(i)].fetch_add(1, std::memory_order_relaxed);
    });
    for (int64_t i = 0; i < 1000; ++i) {
      ASSERT_EQ(hits[size_t(i)].load(), i < n ? 1 : 0) << "round " << round << " index " << i;
      hits[size_t(i)].store(0);
    }
  }
}

TEST_P(CpuThreadPool, SharesCoverEveryIndexOnceAndStealFromTheBack) {
  // 5 participants on a 2-core machine: some are descheduled or asleep, so
  // their shares are taken from the back by the others. Shares jobs and
  // plain jobs alternate, so a late worker meets a job of the other kind.
  ThreadPool pool(5, GetParam());
  std::vector<std::atomic<int>> hits(5000);
  int64_t stolen_pieces = 0;
  for (int round = 0; round < 1500; ++round) {
    const int64_t n = 1 + (round * 37) % 4999, piece = 1 + round % 17;
    const int own = 1 + round % 5;
    std::atomic<int64_t> out_of_share{0};
    auto body = [&](int64_t b, int64_t e, int w) {
      ASSERT_GE(w, 0);
      ASSERT_LT(w, 5);
      ASSERT_LE(e - b, piece * own);
      ASSERT_EQ(b % piece, 0);  // pieces start on piece boundaries
      // Participant w's own share is pieces [P*w/5, P*(w+1)/5).
      const int64_t pieces = (n + piece - 1) / piece, p0 = b / piece;
      if (p0 < pieces * w / 5 || p0 >= pieces * (w + 1) / 5) out_of_share.fetch_add(1);
      for (int64_t i = b; i < e; ++i) hits[size_t(i)].fetch_add(1, std::memory_order_relaxed);
    };
    if (round % 3 == 2) {
      pool.parallel_for(n, piece, body);
    } else {
      pool.parallel_for_shares(n, piece, own, body);
      stolen_pieces += out_of_share.load();
    }
    for (int64_t i = 0; i < 5000; ++i) {
      ASSERT_EQ(hits[size_t(i)].load(), i < n ? 1 : 0) << "round " << round << " index " << i;
      hits[size_t(i)].store(0);
    }
  }
  EXPECT_GT(stolen_pieces, 0);  // 5 threads on 2 cores: someone always finishes first
}

TEST(CpuThreadPoolShares, FallsBackAbove65535Pieces) {
  ThreadPool pool(2);
  const int64_t n = 200000;
  std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
  pool.parallel_for_shares(n, 1, 4, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) hits[size_t(i)].fetch_add(1);
  });
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[size_t(i)].load(), 1) << i;
}

INSTANTIATE_TEST_SUITE_P(Spin, CpuThreadPool, ::testing::Values(0, 200));

TEST(CpuThreadPoolSleep, WakesAfterSleeping) {
  ThreadPool pool(2, /*spin_us=*/0);  // workers go to sleep at once
  for (int round = 0; round < 50; ++round) {
    std::atomic<int64_t> sum{0};
    pool.parallel_for(100, 1, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) sum += i;
    });
    ASSERT_EQ(sum.load(), 4950);
    if (round % 10 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

class CpuMatmul : public ::testing::TestWithParam<MatmulIsa> {};

TEST_P(CpuMatmul, MatchesReferenceForEveryDtypeAndShape) {
  matmul_limit_isa(GetParam());
  if (matmul_isa() != GetParam()) GTEST_SKIP() << "this CPU lacks " << int(GetParam());
  ThreadPool pool(2);
  const uint64_t seed = myriad::testing::test_seed();
  SCOPED_TRACE(myriad::testing::seed_note(seed));
  std::mt19937 rng(static_cast<uint32_t>(seed));
  for (DType d : {DType::kF32, DType::kBF16, DType::kF16})
    for (int64_t T : {1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17, 70})
      // Wide inputs (1100, 2000, 2048) at T >= 5 take the AVX-512 path that
      // splits the columns into chunks whose x fits in L1 (tails included).
      // With AMX, bf16 weights whose `in` is a multiple of 32 (64, 768, 2048)
      // run in tiles: pairs of 16-row blocks (96, 80), a single block (80,
      // 25), rows past the last block (25, 12), token blocks of 16 with and
      // without a partial one (T = 17, 70).
      for (auto [in, out] : {std::pair<int64_t, int64_t>{64, 96}, {176, 37}, {50, 13}, {768, 25}, {16, 1}, {7, 5}, {40, 9},
                             {2048, 12}, {1100, 9}, {2000, 6}, {256, 80}})
        check_matmul(pool, {d, T, in, out}, rng);
  matmul_limit_isa(MatmulIsa::kAmx);
}

INSTANTIATE_TEST_SUITE_P(Kernels, CpuMatmul,
                         ::testing::Values(MatmulIsa::kPortable, MatmulIsa::kAvx2, MatmulIsa::kAvx512, MatmulIsa::kAmx),
                         [](const auto& info) {
                           switch (info.param) {
                             case MatmulIsa::kPortable: return "portable";
                             case MatmulIsa::kAvx2: return "avx2";
                             case MatmulIsa::kAvx512: return "avx512";
                             case MatmulIsa::kAmx: return "amx";
                           }
                           return "unknown";
                         });

// One nonzero weight a row (a power of two, exact in bf16): every product is
// exact, so y must equal x * w bit for bit. With AMX this checks that x
// enters as hi + mid + lo exactly (dropping any term changes the low bits),
// over pairs of 16-row blocks, a single block, rows past the last block and
// partial token blocks.
TEST(CpuMatmul, ExactProductsGiveExactSums) {
  ThreadPool pool(2);
  const uint64_t seed = myriad::testing::test_seed();
  SCOPED_TRACE(myriad::testing::seed_note(seed));
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::uniform_real_distribution<float> u(-3.0f, 3.0f);
  const int64_t in = 64, out = 53;
  std::vector<uint16_t> w(size_t(out * in), 0);
  const float scale[] = {1.0f, -2.0f, 0.5f, 4.0f};
  for (int64_t r = 0; r < out; ++r) w[size_t(r * in + (r * 7) % in)] = f32_to_bf16(scale[r % 4]);
  const WeightView wv{DType::kBF16, w.data(), out, in};
  for (MatmulIsa isa : {MatmulIsa::kAvx512, MatmulIsa::kAmx}) {
    matmul_limit_isa(isa);
    for (int64_t T : {5, 6, 8, 16, 21}) {  // AMX: one narrow B tile, two, a wide token block, a partial one
      std::vector<float> x(size_t(T * in)), y(size_t(T * out));
      for (auto& v : x) v = u(rng);  // full 24-bit significands
      matmul(pool, x.data(), T, wv, y.data());
      for (int64_t t = 0; t < T; ++t)
        for (int64_t r = 0; r < out; ++r)
          ASSERT_EQ(y[size_t(t * out + r)], x[size_t(t * in + (r * 7) % in)] * scale[r % 4])
              << matmul_kernel_name() << " T=" << T << " t=" << t << " r=" << r;
    }
  }
  matmul_limit_isa(MatmulIsa::kAmx);
}

TEST(CpuMatmul, ManyTargetsEqualSeparateCalls) {
  ThreadPool pool(2);
  const uint64_t seed = myriad::testing::test_seed();
  SCOPED_TRACE(myriad::testing::seed_note(seed));
  std::mt19937 rng(static_cast<uint32_t>(seed));
  const int64_t T = 6, in = 96;
  const auto x = randn(size_t(T * in), rng);
  const auto a = randn(size_t(40 * in), rng), b = randn(size_t(24 * in), rng), c = randn(size_t(7 * in), rng);
  const WeightView wa{DType::kF32, a.data(), 40, in}, wb{DType::kF32, b.data(), 24, in}, wc{DType::kF32, c.data(), 7, in};
  std::vector<float> ya(size_t(T * 40)), yb(size_t(T * 24)), yc(size_t(T * 7));
  const MatmulTarget ts[] = {{wa, ya.data()}, {wb, yb.data()}, {wc, yc.data()}};
  matmul_many(pool, x.data(), T, ts);
  for (const auto& [w, y] : {std::pair{wa, &ya}, {wb, &yb}, {wc, &yc}}) {
    std::vector<float> ref(y->size());
    matmul(pool, x.data(), T, w, ref.data());
    EXPECT_EQ(*y, ref);  // same loop, same order: bit-identical
  }
}

TEST(CpuOps, RmsNormMatchesReference) {
  const uint64_t seed = myriad::testing::test_seed();
  SCOPED_TRACE(myriad::testing::seed_note(seed));
  std::mt19937 rng(static_cast<uint32_t>(seed));
  for (int64_t n : {64, 67, 768}) {
    const auto x = randn(size_t(3 * n), rng, 2.0f), w = randn(size_t(n), rng);
    std::vector<float> y(x.size()), ref(x.size());
    rmsnorm(x.data(), w.data(), 3, n, 1e-6f, y.data());
    rmsnorm_reference(x.data(), w.data(), 3, n, 1e-6f, ref.data());
    for (size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], ref[i], 1e-5 * (1 + std::fabs(ref[i])));
  }
}

TEST(CpuOps, RopeMatchesReferenceWithAndWithoutLlama3Scaling) {
  const uint64_t seed = myriad::testing::test_seed();
  SCOPED_TRACE(myriad::testing::seed_note(seed));
  std::mt19937 rng(static_cast<uint32_t>(seed));
  ModelConfig c;
  c.head_dim = 64;
  c.rope_theta = 500000.0f;
  for (int scaled = 0; scaled < 2; ++scaled) {
    if (scaled) c.rope_scaling = RopeScaling{"llama3", 8.0f, 1.0f, 4.0f, 8192};
    const auto inv = rope_inv_freq(c);
    std::vector<float> cs(32), sn(32);
    for (int64_t pos : {0, 1, 5, 17, 255, 1000}) {
      auto x = randn(size_t(3 * 64), rng);
      auto ref = x;
      rope_cos_sin(pos, inv.data(), 32, cs.data(), sn.data());
      rope_apply(x.data(), 3, 64, cs.data(), sn.data());
      rope_reference(ref.data(), 3, 64, pos, c);
      // float32 angles: pos * f carries ~pos * 2^-24 rad of error.
      for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(x[i], ref[i], 2e-6 * (1 + double(pos)) * 4) << pos;
    }
  }
  // Scaling changes the low frequencies and keeps the highest one.
  ModelConfig plain = c;
  plain.rope_scaling.reset();
  const auto a = rope_inv_freq(plain), b = rope_inv_freq(c);
  EXPECT_EQ(a[0], b[0]);
  EXPECT_NEAR(b[31], a[31] / 8.0f, 1e-12);
}

TEST(CpuOps, ToBf16IsBitExactRoundToNearestEven) {
  const uint64_t seed = myriad::testing::test_seed();
  SCOPED_TRACE(myriad::testing::seed_note(seed));
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::vector<float> x = randn(1037, rng, 10.0f);
  // Ties both ways, the largest finite values, infinities, NaNs (a payload
  // whose top bits are zero must stay a NaN), denormals, signed zeros.
  const uint32_t special[] = {0x3f808000u, 0x3f818000u, 0xbf808000u, 0x7f7fffffu, 0xff7fffffu, 0x7f800000u,
                              0xff800000u, 0x7fc00000u, 0x7f800001u, 0xff800001u, 0x00000001u, 0x807fffffu,
                              0x00008000u, 0x00000000u, 0x80000000u, 0x3f7fffffu};
  for (size_t i = 0; i < std::size(special); ++i) std::memcpy(&x[i * 7], &special[i], 4);
  for (MatmulIsa isa : {MatmulIsa::kPortable, MatmulIsa::kAvx2}) {
    matmul_limit_isa(isa);
    for (size_t n : {size_t(1), size_t(7), size_t(8), x.size()}) {
      std::vector<uint16_t> got(n);
      to_bf16(x.data(), int64_t(n), got.data());
      for (size_t i = 0; i < n; ++i) ASSERT_EQ(got[i], f32_to_bf16(x[i])) << "isa " << int(isa) << " i " << i;
    }
  }
  matmul_limit_isa(MatmulIsa::kAmx);
}

TEST(CpuOps, SiluMulSoftmaxArgmaxEmbedding) {
  const uint64_t seed = myriad::testing::test_seed();
  SCOPED_TRACE(myriad::testing::seed_note(seed));
  std::mt19937 rng(static_cast<uint32_t>(seed));
  // Every ISA (the AVX2 loop uses the vector exp), widths with and without a
  // tail, and gates far out on both sides (exp(-g) would overflow float).
  for (MatmulIsa isa : {MatmulIsa::kPortable, MatmulIsa::kAvx2}) {
    matmul_limit_isa(isa);
    for (int n : {1, 7, 8, 300, 2051}) {
      auto g = randn(size_t(n), rng, 3.0f);
      const auto u = randn(size_t(n), rng);
      if (n > 7) g[1] = 120.0f, g[2] = -120.0f, g[3] = 0.0f, g[4] = -1e-20f, g[5] = 88.5f, g[6] = -88.5f;
      std::vector<float> y(static_cast<size_t>(n)), ref(static_cast<size_t>(n));
      silu_mul(g.data(), u.data(), n, y.data());
      silu_mul_reference(g.data(), u.data(), n, ref.data());
      // float32 g * sigmoid(g) * u: an exp (~2e-7 relative in the vector
      // kernel), a division and two products of ~6e-8 each; 4e-6 relative
      // leaves room without hiding a wrong formula (off by O(1)).
      for (size_t i = 0; i < y.size(); ++i)
        ASSERT_NEAR(y[i], ref[i], 1e-6 + 4e-6 * std::fabs(ref[i])) << "isa " << int(isa) << " n " << n << " i " << i;
    }
  }
  matmul_limit_isa(MatmulIsa::kAmx);

  for (MatmulIsa isa : {MatmulIsa::kPortable, MatmulIsa::kAvx2}) {
    matmul_limit_isa(isa);
    for (int n : {1, 5, 8, 1000, 1003}) {
      auto s = randn(size_t(n), rng, 5.0f);
      if (n > 4) s[2] = -200.0f;  // underflows
      std::vector<double> sref(s.size());
      softmax_reference(s.data(), n, sref.data());
      softmax(s.data(), n);
      // float32 exp and an n-term float sum: a few 1e-6 relative at worst.
      for (size_t i = 0; i < s.size(); ++i) ASSERT_NEAR(s[i], sref[i], 2e-5 * sref[i] + 1e-9) << "isa " << int(isa);
    }
  }
  matmul_limit_isa(MatmulIsa::kAmx);

  const float ties[] = {1, 3, 2, 3, -1};
  EXPECT_EQ(argmax(ties, 5), 1);
  // The vector path: the first of several maxima, anywhere (tails included),
  // and NaNs falling back to the scalar scan.
  for (MatmulIsa isa : {MatmulIsa::kPortable, MatmulIsa::kAvx2}) {
    matmul_limit_isa(isa);
    for (int n : {9, 64, 1000, 32001}) {
      auto v = randn(size_t(n), rng);
      const int64_t first = int64_t(rng() % uint32_t(n));
      v[size_t(first)] = 50.0f;
      for (int64_t i = first + 1; i < n; i += 7) v[size_t(i)] = 50.0f;
      ASSERT_EQ(argmax(v.data(), n), first) << "isa " << int(isa) << " n " << n;
    }
    std::vector<float> nan_first = {std::nanf(""), 1.0f, 4.0f, 2.0f, 4.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    EXPECT_EQ(argmax(nan_first.data(), 9), 0) << "isa " << int(isa);  // as the scalar scan: NaN at 0 wins
    std::vector<float> nan_mid = {1.0f, 4.0f, std::nanf(""), 2.0f, 4.5f, 0.0f, 0.0f, 0.0f, 0.0f};
    EXPECT_EQ(argmax(nan_mid.data(), 9), 4) << "isa " << int(isa);
  }
  matmul_limit_isa(MatmulIsa::kAmx);

  const auto table = randn(10 * 8, rng);
  std::vector<uint16_t> tb(table.size());
  for (size_t i = 0; i < table.size(); ++i) tb[i] = f32_to_bf16(table[i]);
  const int32_t ids[] = {7, 0, 7, 9};
  std::vector<float> e(4 * 8);
  embedding({DType::kBF16, tb.data(), 10, 8}, ids, 4, e.data());
  for (int t = 0; t < 4; ++t)
    for (int i = 0; i < 8; ++i) ASSERT_EQ(e[size_t(t * 8 + i)], bf16_to_f32(tb[size_t(ids[t] * 8 + i)]));
}

TEST(CpuAttention, PagedMatchesContiguousReferenceWithShuffledBlocks) {
  const uint64_t seed = myriad::testing::test_seed();
  SCOPED_TRACE(myriad::testing::seed_note(seed));
  std::mt19937 rng(static_cast<uint32_t>(seed));
  for (const AttentionShape& s : {AttentionShape{4, 2, 16, 0}, AttentionShape{12, 12, 64, 0}, AttentionShape{8, 2, 80, 0},
                                  AttentionShape{4, 1, 20, 0}, AttentionShape{4, 2, 16, 4}, AttentionShape{6, 3, 128, 0}})
    for (int32_t bs : {1, 4, 16})
      for (DType kv_dtype : {DType::kF32, DType::kBF16, DType::kF16})
        for (bool portable : {false, true}) {
          matmul_force_portable(portable);
          check_attention(s, bs, kv_dtype, rng);
        }
  matmul_force_portable(false);
}

}  // namespace
}  // namespace myriad::gpu::cpu
