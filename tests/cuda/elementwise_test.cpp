// RoPE (rotate-half, plain and llama3-scaled frequencies), SiLU-mul,
// embedding lookup and bias add on the device vs plain CPU references; the
// fused RoPE + KV write vs the two kernels it replaces, bit for bit.
#include <algorithm>
#include <cmath>

#include "cuda_test_util.h"
#include "gpu/cuda/elementwise.h"
#include "gpu/cuda/paged_attention.h"
#include "gpu/cuda/rope.h"

namespace myriad::cuda_test {
namespace {

ModelConfig rope_config(int head_dim, bool llama3) {
  ModelConfig c;
  c.head_dim = head_dim;
  c.rope_theta = llama3 ? 500000.0f : 10000.0f;
  if (llama3) c.rope_scaling = RopeScaling{"llama3", 8.0f, 1.0f, 4.0f, 8192};
  return c;
}

TEST(RopeInvFreq, Llama3ScalingMatchesHfFormula) {
  // Written out from HF's _compute_llama3_parameters in double precision.
  const auto c = rope_config(128, true);
  const auto got = gpu::cuda::rope_inv_freq(c);
  ASSERT_EQ(got.size(), 64u);
  for (int i = 0; i < 64; ++i) {
    const double f = 1.0 / std::pow(500000.0, 2.0 * i / 128.0);
    const double wl = 2 * M_PI / f;
    double want;
    if (wl < 8192.0 / 4.0) want = f;
    else if (wl > 8192.0 / 1.0) want = f / 8.0;
    else {
      const double s = (8192.0 / wl - 1.0) / (4.0 - 1.0);
      want = (1 - s) * f / 8.0 + s * f;
    }
    EXPECT_NEAR(got[i], want, 1e-6 * want) << "i=" << i;
  }
  const auto plain = gpu::cuda::rope_inv_freq(rope_config(16, false));
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(plain[i], 1.0 / std::pow(10000.0, 2.0 * i / 16.0), 1e-6);
}

struct RopeCase {
  DType dtype;
  int tokens, heads, kv_heads, head_dim;
  bool llama3;
};
class RopeTest : public ::testing::TestWithParam<RopeCase> {};

TEST_P(RopeTest, MatchesCpuReference) {
  MYRIAD_REQUIRE_CUDA();
  MYRIAD_CUDA_TEST_SEED();
  const RopeCase c = GetParam();
  const int qw = c.heads * c.head_dim, kw = c.kv_heads * c.head_dim, stride = qw + 2 * kw;  // fused qkv rows
  auto qkv = randn(size_t(c.tokens) * stride, c.dtype);
  std::vector<int32_t> pos(c.tokens);
  for (auto& p : pos) p = int32_t(rng()() % 9000);
  const auto inv = gpu::cuda::rope_inv_freq(rope_config(c.head_dim, c.llama3));
  auto d = upload(qkv, c.dtype);
  auto dpos = upload_raw(pos);
  auto dinv = upload(inv, DType::kF32);
  const size_t esz = dtype_size(c.dtype);
  MYRIAD_ASSERT_OK(gpu::cuda::rope(c.dtype, d.data(), stride, static_cast<char*>(d.data()) + qw * esz, stride,
                                   dpos.as<int32_t>(), dinv.as<float>(), c.tokens, c.heads, c.kv_heads, c.head_dim,
                                   nullptr));
  std::vector<float> ref = qkv;
  const int half = c.head_dim / 2;
  for (int t = 0; t < c.tokens; ++t)
    for (int h = 0; h < c.heads + c.kv_heads; ++h) {
      float* x = &ref[size_t(t) * stride + size_t(h) * c.head_dim];
      for (int i = 0; i < half; ++i) {
        const double a = double(float(pos[t]) * inv[i]);
        const float x1 = x[i], x2 = x[i + half];
        x[i] = round_to(c.dtype, float(x1 * std::cos(a) - x2 * std::sin(a)));
        x[i + half] = round_to(c.dtype, float(x2 * std::cos(a) + x1 * std::sin(a)));
      }
    }
  // v columns must be untouched (exactly equal).
  EXPECT_TRUE(all_close(download(d, qkv.size(), c.dtype), ref, tol_for(c.dtype), "qkv"));
}

// The fused RoPE + KV write equals rope() then kv_cache_write() bit for bit:
// the same qkv buffer afterwards and the same cache, every slot included
// (scattered slots, one token skipped with -1, unowned slots left NaN).
TEST_P(RopeTest, FusedKvWriteEqualsRopeThenKvWrite) {
  MYRIAD_REQUIRE_CUDA();
  MYRIAD_CUDA_TEST_SEED();
  const RopeCase c = GetParam();
  const int qw = c.heads * c.head_dim, kw = c.kv_heads * c.head_dim, stride = qw + 2 * kw + 8;  // + padding
  auto qkv = randn(size_t(c.tokens) * stride, c.dtype);
  std::vector<int32_t> pos(c.tokens), slots(c.tokens);
  const int pool = c.tokens * 3;
  std::vector<int32_t> perm(pool);
  for (int i = 0; i < pool; ++i) perm[i] = i;
  std::shuffle(perm.begin(), perm.end(), rng());
  for (int t = 0; t < c.tokens; ++t) {
    pos[t] = int32_t(rng()() % 9000);
    slots[t] = perm[t];
  }
  slots[size_t(c.tokens) / 2] = -1;
  const auto inv = gpu::cuda::rope_inv_freq(rope_config(c.head_dim, c.llama3));
  const std::vector<float> nan_cache(size_t(pool) * kw, std::nanf(""));
  auto a = upload(qkv, c.dtype), b = upload(qkv, c.dtype);
  auto ka = upload(nan_cache, c.dtype), va = upload(nan_cache, c.dtype);
  auto kb = upload(nan_cache, c.dtype), vb = upload(nan_cache, c.dtype);
  auto dpos = upload_raw(pos), dslots = upload_raw(slots);
  auto dinv = upload(inv, DType::kF32);
  const size_t esz = dtype_size(c.dtype);
  char* ak = static_cast<char*>(a.data()) + qw * esz;
  MYRIAD_ASSERT_OK(gpu::cuda::rope(c.dtype, a.data(), stride, ak, stride, dpos.as<int32_t>(), dinv.as<float>(),
                                   c.tokens, c.heads, c.kv_heads, c.head_dim, nullptr));
  MYRIAD_ASSERT_OK(gpu::cuda::kv_cache_write(c.dtype, ka.data(), va.data(), ak, stride, ak + kw * esz, stride,
                                             dslots.as<int32_t>(), c.tokens, c.kv_heads, c.head_dim, nullptr));
  MYRIAD_ASSERT_OK(gpu::cuda::rope_kv_write(c.dtype, b.data(), stride, dpos.as<int32_t>(), dinv.as<float>(),
                                            kb.data(), vb.data(), dslots.as<int32_t>(), c.tokens, c.heads, c.kv_heads,
                                            c.head_dim, nullptr));
  auto same = [&](const DeviceBuffer& x, const DeviceBuffer& y, size_t n, const char* what) {
    const auto gx = download(x, n, c.dtype), gy = download(y, n, c.dtype);
    for (size_t i = 0; i < n; ++i) {
      ASSERT_TRUE((std::isnan(gx[i]) && std::isnan(gy[i])) || gx[i] == gy[i])
          << what << " element " << i << ": " << gx[i] << " vs " << gy[i];
    }
  };
  same(a, b, qkv.size(), "qkv");
  same(ka, kb, nan_cache.size(), "k cache");
  same(va, vb, nan_cache.size(), "v cache");
}

std::vector<RopeCase> rope_cases() {
  std::vector<RopeCase> v;
  for (DType t : {DType::kF32, DType::kBF16}) {
    v.push_back({t, 7, 4, 2, 16, false});
    v.push_back({t, 33, 32, 8, 128, true});
    v.push_back({t, 5, 12, 12, 64, false});
  }
  return v;
}
INSTANTIATE_TEST_SUITE_P(Grid, RopeTest, ::testing::ValuesIn(rope_cases()), [](const auto& info) {
  const RopeCase& c = info.param;
  return std::string(dtype_name(c.dtype)) + "_t" + std::to_string(c.tokens) + "_h" + std::to_string(c.heads) + "_kv" +
         std::to_string(c.kv_heads) + "_d" + std::to_string(c.head_dim) + (c.llama3 ? "_llama3" : "");
});

class ElementwiseTest : public ::testing::TestWithParam<DType> {};

TEST_P(ElementwiseTest, SiluMul) {
  MYRIAD_REQUIRE_CUDA();
  MYRIAD_CUDA_TEST_SEED();
  const DType t = GetParam();
  for (auto [tokens, inter] : {std::pair{1, 176}, std::pair{13, 5632}, std::pair{64, 100}}) {
    auto gu = randn(size_t(tokens) * 2 * inter, t, 3.0f);
    auto dgu = upload(gu, t);
    auto dout = poisoned(size_t(tokens) * inter, t);
    MYRIAD_ASSERT_OK(gpu::cuda::silu_mul(t, dout.data(), dgu.data(), tokens, inter, nullptr));
    std::vector<float> ref(size_t(tokens) * inter);
    for (int r = 0; r < tokens; ++r)
      for (int i = 0; i < inter; ++i) {
        const double g = gu[size_t(r) * 2 * inter + i], u = gu[size_t(r) * 2 * inter + inter + i];
        ref[size_t(r) * inter + i] = round_to(t, float(g / (1 + std::exp(-g)) * u));
      }
    EXPECT_TRUE(all_close(download(dout, ref.size(), t), ref, tol_for(t), "silu_mul"));
  }
}

TEST_P(ElementwiseTest, EmbeddingAndBias) {
  MYRIAD_REQUIRE_CUDA();
  MYRIAD_CUDA_TEST_SEED();
  const DType t = GetParam();
  const int vocab = 512, hidden = 96, tokens = 37;
  auto table = randn(size_t(vocab) * hidden, t);
  std::vector<int32_t> ids(tokens);
  for (auto& i : ids) i = int32_t(rng()() % vocab);
  ids[0] = vocab - 1;
  ids[1] = 0;
  auto dt = upload(table, t);
  auto di = upload_raw(ids);
  auto dout = poisoned(size_t(tokens) * hidden, t);
  MYRIAD_ASSERT_OK(gpu::cuda::embedding(t, dout.data(), dt.data(), di.as<int32_t>(), tokens, hidden, vocab, nullptr));
  std::vector<float> ref(size_t(tokens) * hidden);
  for (int r = 0; r < tokens; ++r)
    for (int i = 0; i < hidden; ++i) ref[size_t(r) * hidden + i] = table[size_t(ids[r]) * hidden + i];
  EXPECT_TRUE(all_close(download(dout, ref.size(), t), ref, Tol{0, 0}, "embedding (exact)"));

  // Bias over the first 64 of 96 columns.
  auto bias = randn(64, t);
  auto db = upload(bias, t);
  MYRIAD_ASSERT_OK(gpu::cuda::add_bias(t, dout.data(), hidden, db.data(), tokens, 64, nullptr));
  for (int r = 0; r < tokens; ++r)
    for (int i = 0; i < 64; ++i) ref[size_t(r) * hidden + i] = round_to(t, ref[size_t(r) * hidden + i] + bias[i]);
  EXPECT_TRUE(all_close(download(dout, ref.size(), t), ref, tol_for(t), "bias"));
}

TEST_P(ElementwiseTest, ConvertAndFillRandom) {
  MYRIAD_REQUIRE_CUDA();
  MYRIAD_CUDA_TEST_SEED();
  const DType t = GetParam();
  auto src = randn(1000, DType::kF32);
  auto ds = upload(src, DType::kF32);
  auto dd = poisoned(src.size(), t);
  MYRIAD_ASSERT_OK(gpu::cuda::convert_from_f32(t, dd.data(), ds.as<float>(), int64_t(src.size()), nullptr));
  std::vector<float> ref(src.size());
  for (size_t i = 0; i < src.size(); ++i) ref[i] = round_to(t, src[i]);
  EXPECT_TRUE(all_close(download(dd, ref.size(), t), ref, Tol{0, 0}, "convert (exact rounding)"));
  auto dr = poisoned(4096, t);
  MYRIAD_ASSERT_OK(gpu::cuda::fill_random(t, dr.data(), 4096, 0.5f, 42, nullptr));
  const auto r = download(dr, 4096, t);
  double mean = 0;
  for (float x : r) {
    ASSERT_TRUE(std::isfinite(x));
    ASSERT_LE(std::fabs(x), 0.5f);
    mean += x;
  }
  EXPECT_NEAR(mean / 4096, 0.0, 0.03);  // uniform(-0.5, 0.5): sd of the mean 0.0045
}

INSTANTIATE_TEST_SUITE_P(Dtypes, ElementwiseTest, ::testing::Values(DType::kF32, DType::kBF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace myriad::cuda_test
