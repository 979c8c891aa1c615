// Paged KV write + causal GQA attention on the device vs a plain CPU
// reference. Blocks of a row are scattered (shuffled block ids) and every
// cache position no row owns is NaN, so reading a wrong block fails. The new
// tokens' K/V go in through kv_cache_write (their slots start as NaN too).
// Rows mix decode (1 token), whole prefill and chunked prefill (start_pos > 0).
// Each batch runs unsplit, with the device's split-K choice and with forced
// split counts (flash-decoding shares, some of them empty), all against the
// same reference.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "cuda_test_util.h"
#include "gpu/cuda/paged_attention.h"

namespace myriad::cuda_test {
namespace {

struct AttentionCase {
  DType dtype;
  int heads, kv_heads, head_dim, block_size;
};
struct Row {
  int start, n;
};

class PagedAttentionTest : public ::testing::TestWithParam<AttentionCase> {};

void check_against_reference(const AttentionCase& c, const std::vector<Row>& rows) {
  const DType t = c.dtype;
  const int H = c.heads, KV = c.kv_heads, D = c.head_dim, BS = c.block_size, group = H / KV;
  const int width = KV * D;
  // Block tables over a shuffled pool.
  int total_blocks = 0;
  for (auto r : rows) total_blocks += (r.start + r.n + BS - 1) / BS;
  const int pool = total_blocks + 5;
  std::vector<int32_t> perm(pool);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng());
  std::vector<int32_t> block_ids, row_off, tok_pos, tok_row, slots;
  int used = 0;
  for (size_t r = 0; r < rows.size(); ++r) {
    row_off.push_back(int32_t(block_ids.size()));
    const int nb = (rows[r].start + rows[r].n + BS - 1) / BS;
    for (int b = 0; b < nb; ++b) block_ids.push_back(perm[used++]);
    for (int j = 0; j < rows[r].n; ++j) {
      const int p = rows[r].start + j;
      tok_pos.push_back(p);
      tok_row.push_back(int32_t(r));
      slots.push_back(block_ids[row_off[r] + p / BS] * BS + p % BS);
    }
  }
  const int tokens = int(tok_pos.size());
  // Logical K/V per row and position; the cache holds old positions, NaN elsewhere.
  std::vector<std::vector<float>> K(rows.size()), V(rows.size());
  std::vector<float> kc(size_t(pool) * BS * width, std::nanf("")), vc = kc;
  for (size_t r = 0; r < rows.size(); ++r) {
    const int ctx = rows[r].start + rows[r].n;
    K[r] = randn(size_t(ctx) * width, t);
    V[r] = randn(size_t(ctx) * width, t);
    for (int p = 0; p < rows[r].start; ++p) {
      const size_t slot = size_t(block_ids[row_off[r] + p / BS]) * BS + p % BS;
      std::copy_n(&K[r][size_t(p) * width], width, &kc[slot * width]);
      std::copy_n(&V[r][size_t(p) * width], width, &vc[slot * width]);
    }
  }
  // New tokens in a fused qkv layout [tokens, (H + 2KV) * D].
  const int stride = H * D + 2 * width;
  std::vector<float> qkv(size_t(tokens) * stride);
  auto q = randn(size_t(tokens) * H * D, t);
  for (int i = 0; i < tokens; ++i) {
    const int r = tok_row[i], p = tok_pos[i];
    std::copy_n(&q[size_t(i) * H * D], H * D, &qkv[size_t(i) * stride]);
    std::copy_n(&K[r][size_t(p) * width], width, &qkv[size_t(i) * stride + H * D]);
    std::copy_n(&V[r][size_t(p) * width], width, &qkv[size_t(i) * stride + H * D + width]);
  }
  auto dk = upload(kc, t), dv = upload(vc, t), dqkv = upload(qkv, t);
  auto dslots = upload_raw(slots), dpos = upload_raw(tok_pos), drow = upload_raw(tok_row),
       doff = upload_raw(row_off), dblocks = upload_raw(block_ids);
  const size_t esz = dtype_size(t);
  MYRIAD_ASSERT_OK(gpu::cuda::kv_cache_write(t, dk.data(), dv.data(), static_cast<char*>(dqkv.data()) + H * D * esz,
                                             stride, static_cast<char*>(dqkv.data()) + (H * D + width) * esz, stride,
                                             dslots.as<int32_t>(), tokens, KV, D, nullptr));
  gpu::cuda::AttentionBatch b{dpos.as<int32_t>(), drow.as<int32_t>(), doff.as<int32_t>(), dblocks.as<int32_t>()};
  const float scale = 1.0f / std::sqrt(float(D));
  std::vector<float> ref(size_t(tokens) * H * D);
  for (int i = 0; i < tokens; ++i) {
    const int r = tok_row[i], p = tok_pos[i];
    for (int h = 0; h < H; ++h) {
      const int kvh = h / group;
      std::vector<double> s(p + 1);
      double mx = -INFINITY;
      for (int j = 0; j <= p; ++j) {
        double dot = 0;
        for (int d = 0; d < D; ++d) dot += double(q[size_t(i) * H * D + h * D + d]) * K[r][size_t(j) * width + kvh * D + d];
        s[j] = dot * scale;
        mx = std::max(mx, s[j]);
      }
      double z = 0;
      for (auto& x : s) z += (x = std::exp(x - mx));
      for (int d = 0; d < D; ++d) {
        double o = 0;
        for (int j = 0; j <= p; ++j) o += s[j] * V[r][size_t(j) * width + kvh * D + d];
        ref[size_t(i) * H * D + h * D + d] = round_to(t, float(o / z));
      }
    }
  }
  for (int splits : {-1, 0, 3, gpu::cuda::kMaxAttentionSplits}) {  // -1: no workspace
    SCOPED_TRACE("splits " + std::to_string(splits));
    gpu::cuda::AttentionWorkspace ws;
    DeviceBuffer dws;
    if (splits >= 0) {
      auto n = gpu::cuda::paged_attention_workspace_floats(tokens, H, KV, D, splits);
      MYRIAD_ASSERT_OK(n);
      dws = poisoned(size_t(std::max<int64_t>(n.value(), 1)), DType::kF32);
      ws = {dws.as<float>(), n.value(), splits};
    }
    auto dout = poisoned(size_t(tokens) * H * D, t);
    MYRIAD_ASSERT_OK(gpu::cuda::paged_attention(t, dout.data(), H * D, dqkv.data(), stride, dk.data(), dv.data(), b,
                                                tokens, H, KV, D, BS, scale, nullptr, ws));
    EXPECT_TRUE(all_close(download(dout, ref.size(), t), ref, tol_for(t), "attention out"));
  }
  // The cache now holds the new tokens at their slots.
  const auto kc_got = download(dk, kc.size(), t);
  for (int i = 0; i < tokens; ++i)
    for (int e = 0; e < width; ++e)
      ASSERT_EQ(kc_got[size_t(slots[i]) * width + e], K[tok_row[i]][size_t(tok_pos[i]) * width + e]) << "token " << i;
}

TEST_P(PagedAttentionTest, MatchesCpuReference) {
  MYRIAD_REQUIRE_CUDA();
  MYRIAD_CUDA_TEST_SEED();
  check_against_reference(GetParam(), {{0, 1}, {40, 1}, {0, 33}, {20, 13}, {130, 1}, {7, 1}, {0, 5}, {2000, 1}});
}

// Decode at batch 1 and 2 over long contexts, and 40 rows (the GQA form with
// the device's split choice for groups of 4 or 8 kv heads): the launches
// split-K is for.
TEST_P(PagedAttentionTest, SmallDecodeBatchesMatchCpuReference) {
  MYRIAD_REQUIRE_CUDA();
  MYRIAD_CUDA_TEST_SEED();
  check_against_reference(GetParam(), {{4095, 1}});
  check_against_reference(GetParam(), {{511, 1}, {37, 1}});
  std::vector<Row> forty;
  for (int i = 0; i < 40; ++i) forty.push_back({int(rng()() % 700), 1});
  check_against_reference(GetParam(), forty);
}

std::vector<AttentionCase> attention_cases() {
  std::vector<AttentionCase> v;
  for (DType t : {DType::kF32, DType::kBF16})
    for (int bs : {16, 5}) {
      v.push_back({t, 4, 2, 16, bs});    // the fixtures' shape
      v.push_back({t, 32, 8, 128, bs});  // llama3-8b
      v.push_back({t, 12, 12, 64, bs});  // llama-110m (no GQA)
      v.push_back({t, 32, 4, 64, bs});   // tinyllama (group 8 > warps per block)
    }
  return v;
}
INSTANTIATE_TEST_SUITE_P(Grid, PagedAttentionTest, ::testing::ValuesIn(attention_cases()), [](const auto& info) {
  const AttentionCase& c = info.param;
  return std::string(dtype_name(c.dtype)) + "_h" + std::to_string(c.heads) + "_kv" + std::to_string(c.kv_heads) +
         "_d" + std::to_string(c.head_dim) + "_bs" + std::to_string(c.block_size);
});

}  // namespace
}  // namespace myriad::cuda_test
