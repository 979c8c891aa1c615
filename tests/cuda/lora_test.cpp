// SGMV and BGMV LoRA shrink/expand vs a plain CPU reference over a grid of
// tokens x slots x max rank x dtype (like vLLM's test_lora_ops): ranks differ
// between slots in one launch (some 0 = module not targeted), some rows have
// no adapter (-1) and must come out unchanged, SGMV rows carry mixing weights
// and some rows mix two adapters (expand launched once per mixture level).
// Groups (q|k|v, gate|up in one launch pair) against each member's reference
// on its own columns of the fused output.
#include <algorithm>
#include <cmath>
#include <map>

#include "cuda_test_util.h"
#include "gpu/cuda/elementwise.h"
#include "gpu/cuda/lora.h"
#include "gpu/cuda/rmsnorm.h"
#include "gpu/cuda/rope.h"

namespace myriad::cuda_test {
namespace {

struct LoraCase {
  DType dtype;
  int tokens, slots, max_rank;
  int in, out;
};

struct Slots {
  std::vector<float> a, b, scales;  // [S, R, in], [S, out, R]
  std::vector<int32_t> ranks;
};

Slots make_slots(const LoraCase& c) {
  Slots s;
  s.a = randn(size_t(c.slots) * c.max_rank * c.in, c.dtype, 1.0f / std::sqrt(float(c.in)));
  s.b = randn(size_t(c.slots) * c.out * c.max_rank, c.dtype, 1.0f / std::sqrt(float(c.max_rank)));
  for (int i = 0; i < c.slots; ++i) {
    const int choices[] = {c.max_rank, c.max_rank / 2, 1, 0, c.max_rank};
    s.ranks.push_back(std::max(0, choices[rng()() % 5]));
    s.scales.push_back(0.5f + float(rng()() % 8));
  }
  s.ranks[0] = c.max_rank;  // at least one full-rank slot
  return s;
}

// y[tok] += w * scale * B (A x); returns v[0:rank] too.
void lora_ref(const LoraCase& c, const Slots& s, const std::vector<float>& x, int tok, int slot, float w,
              std::vector<float>& y, std::vector<double>* v_out) {
  const int r = s.ranks[slot];
  std::vector<double> v(r);
  for (int k = 0; k < r; ++k) {
    double acc = 0;
    for (int i = 0; i < c.in; ++i) acc += double(x[size_t(tok) * c.in + i]) * s.a[(size_t(slot) * c.max_rank + k) * c.in + i];
    v[k] = acc;
  }
  for (int o = 0; o < c.out; ++o) {
    double d = 0;
    for (int k = 0; k < r; ++k) d += double(s.b[(size_t(slot) * c.out + o) * c.max_rank + k]) * float(v[k]);
    y[size_t(tok) * c.out + o] = round_to(c.dtype, float(y[size_t(tok) * c.out + o] + w * s.scales[slot] * d));
  }
  if (v_out) *v_out = v;
}

struct Device {
  DeviceBuffer a, b, ranks, scales;
  gpu::cuda::LoraModuleSlots view(const LoraCase& c) const {
    return {.a = a.data(), .b = b.data(), .ranks = ranks.as<int32_t>(), .scales = scales.as<float>(),
            .meta_stride = 1, .num_slots = c.slots, .max_rank = c.max_rank, .in = c.in, .out = c.out};
  }
};
Device upload_slots(const LoraCase& c, const Slots& s) {
  return {upload(s.a, c.dtype), upload(s.b, c.dtype), upload_raw(s.ranks), upload(s.scales, DType::kF32)};
}

Tol lora_tol(DType t) { return t == DType::kF32 ? Tol{2e-4f, 2e-4f} : Tol{3e-2f, 2e-2f}; }

class LoraTest : public ::testing::TestWithParam<LoraCase> {};

// One BGMV shrink and expand over the case's tokens (`weight` null: 1 each),
// v poisoned first; v and y as the device left them.
struct BgmvResult {
  std::vector<float> v, y;
};
BgmvResult run_bgmv(const LoraCase& c, const Slots& s, const std::vector<float>& x, const std::vector<float>& y,
                    const std::vector<int32_t>& slot, const std::vector<float>* weight) {
  auto dev = upload_slots(c, s);
  auto dx = upload(x, c.dtype), dy = upload(y, c.dtype), dslot = upload_raw(slot);
  DeviceBuffer dw = weight ? upload_raw(*weight) : DeviceBuffer{};
  auto dv = poisoned(size_t(c.tokens) * c.max_rank, DType::kF32);
  const Status shrink = gpu::cuda::bgmv_shrink(c.dtype, dv.as<float>(), dx.data(), c.in, dev.view(c),
                                               dslot.as<int32_t>(), c.tokens, nullptr);
  EXPECT_TRUE(shrink.ok()) << shrink.error().to_string();
  const Status expand = gpu::cuda::bgmv_expand(c.dtype, dy.data(), c.out, dv.as<float>(), dev.view(c),
                                               dslot.as<int32_t>(), c.tokens, nullptr,
                                               weight ? dw.as<float>() : nullptr);
  EXPECT_TRUE(expand.ok()) << expand.error().to_string();
  return {download(dv, size_t(c.tokens) * c.max_rank, DType::kF32), download(dy, y.size(), c.dtype)};
}

TEST_P(LoraTest, BgmvMatchesReference) {
  MYRIAD_REQUIRE_CUDA();
  MYRIAD_CUDA_TEST_SEED();
  const LoraCase c = GetParam();
  const Slots s = make_slots(c);
  auto x = randn(size_t(c.tokens) * c.in, c.dtype);
  auto y = randn(size_t(c.tokens) * c.out, c.dtype);
  std::vector<int32_t> slot(c.tokens);
  for (auto& v : slot) v = int32_t(rng()() % (c.slots + 1)) - 1;  // -1 .. slots-1
  slot[0] = -1;
  if (c.tokens > 1) slot[1] = 0;
  const BgmvResult out = run_bgmv(c, s, x, y, slot, nullptr);
  const std::vector<float>& vgot = out.v;
  std::vector<float> ref = y, vg, vr;
  for (int t = 0; t < c.tokens; ++t) {
    if (slot[t] < 0) continue;
    std::vector<double> v;
    lora_ref(c, s, x, t, slot[t], 1.0f, ref, &v);
    for (size_t k = 0; k < v.size(); ++k) {
      vg.push_back(vgot[size_t(t) * c.max_rank + k]);
      vr.push_back(float(v[k]));
    }
  }
  EXPECT_TRUE(all_close(vg, vr, Tol{1e-4f, 1e-4f}, "v (shrink)"));
  const std::vector<float>& got = out.y;
  EXPECT_TRUE(all_close(got, ref, lora_tol(c.dtype), "y"));
  for (int t = 0; t < c.tokens; ++t)
    if (slot[t] < 0 || s.ranks[slot[t]] == 0) {
      for (int o = 0; o < c.out; ++o) ASSERT_EQ(got[size_t(t) * c.out + o], y[size_t(t) * c.out + o]) << "row " << t;
    }
}

// Each token's slot (-1: none) and mixture weight (-1 .. 1.75, 0 included);
// token 0 on slot 0 at weight 0.25.
std::pair<std::vector<int32_t>, std::vector<float>> token_slots(const LoraCase& c) {
  std::vector<int32_t> slot(c.tokens);
  std::vector<float> weight(c.tokens);
  for (int t = 0; t < c.tokens; ++t) {
    slot[t] = int32_t(rng()() % (c.slots + 1)) - 1;
    weight[t] = float(int(rng()() % 12) - 4) / 4.0f;
  }
  slot[0] = 0;
  weight[0] = 0.25f;
  return {slot, weight};
}

// A decode step's mixture level: each token's slot and its weight in the
// mixture (the expand adds w * scale * B A x), as the executor's BGMV levels.
TEST_P(LoraTest, BgmvWithTokenWeightsMatchesReference) {
  MYRIAD_REQUIRE_CUDA();
  MYRIAD_CUDA_TEST_SEED();
  const LoraCase c = GetParam();
  const Slots s = make_slots(c);
  auto x = randn(size_t(c.tokens) * c.in, c.dtype);
  auto y = randn(size_t(c.tokens) * c.out, c.dtype);
  const auto [slot, weight] = token_slots(c);
  const BgmvResult out = run_bgmv(c, s, x, y, slot, &weight);
  std::vector<float> ref = y;
  for (int t = 0; t < c.tokens; ++t)
    if (slot[t] >= 0) lora_ref(c, s, x, t, slot[t], weight[t], ref, nullptr);
  EXPECT_TRUE(all_close(out.y, ref, lora_tol(c.dtype), "y"));
}

TEST_P(LoraTest, SgmvMatchesReference) {
  MYRIAD_REQUIRE_CUDA();
  MYRIAD_CUDA_TEST_SEED();
  const LoraCase c = GetParam();
  const Slots s = make_slots(c);
  auto x = randn(size_t(c.tokens) * c.in, c.dtype);
  auto y = randn(size_t(c.tokens) * c.out, c.dtype);
  // Each token: no adapter, one, or (every 5th) a mixture of two distinct slots.
  struct Ref { int tok, slot; float w; int level; };
  std::vector<Ref> refs;
  std::vector<int> adapters_of(c.tokens, 0);
  for (int t = 0; t < c.tokens; ++t) {
    const int s0 = int(rng()() % (c.slots + 1)) - 1;
    if (s0 < 0) continue;
    const bool mix = t % 5 == 4 && c.slots > 1;
    const float w0 = mix ? 0.25f + 0.5f * float(rng()() % 100) / 100.0f : 1.0f;
    refs.push_back({t, s0, w0, 0});
    if (mix) refs.push_back({t, (s0 + 1) % c.slots, 1.0f - w0, 1});
  }
  auto dev = upload_slots(c, s);
  auto dx = upload(x, c.dtype), dy = upload(y, c.dtype);
  std::vector<float> ref = y;
  for (int level = 0; level < 2; ++level) {
    // Segments of this level's entries, grouped by slot (a stable sort keeps token order inside a segment).
    std::vector<Ref> lv;
    for (auto& r : refs) if (r.level == level) lv.push_back(r);
    std::stable_sort(lv.begin(), lv.end(), [](const Ref& a, const Ref& b) { return a.slot < b.slot; });
    std::vector<int32_t> seg_slot, seg_start, entry_token;
    std::vector<float> entry_weight;
    int max_len = 0;
    for (size_t i = 0; i < lv.size(); ++i) {
      if (i == 0 || lv[i].slot != lv[i - 1].slot) {
        seg_slot.push_back(lv[i].slot);
        seg_start.push_back(int32_t(i));
      }
      entry_token.push_back(lv[i].tok);
      entry_weight.push_back(lv[i].w);
    }
    seg_start.push_back(int32_t(lv.size()));
    for (size_t g = 0; g + 1 < seg_start.size(); ++g) max_len = std::max(max_len, seg_start[g + 1] - seg_start[g]);
    auto ds = upload_raw(seg_slot), dst = upload_raw(seg_start), dt = upload_raw(entry_token);
    auto dw = upload(entry_weight, DType::kF32);
    auto dv = poisoned(std::max<size_t>(1, lv.size()) * c.max_rank, DType::kF32);
    gpu::cuda::SgmvBatch b{ds.as<int32_t>(), dst.as<int32_t>(), dt.as<int32_t>(), dw.as<float>(),
                           int32_t(seg_slot.size()), max_len};
    MYRIAD_ASSERT_OK(gpu::cuda::sgmv_shrink(c.dtype, dv.as<float>(), dx.data(), c.in, dev.view(c), b, nullptr));
    MYRIAD_ASSERT_OK(gpu::cuda::sgmv_expand(c.dtype, dy.data(), c.out, dv.as<float>(), dev.view(c), b, nullptr));
    const auto vgot = download(dv, lv.size() * c.max_rank, DType::kF32);
    std::vector<float> vg, vr;
    for (size_t e = 0; e < lv.size(); ++e) {
      std::vector<double> v;
      lora_ref(c, s, x, lv[e].tok, lv[e].slot, lv[e].w, ref, &v);
      for (size_t k = 0; k < v.size(); ++k) {
        vg.push_back(vgot[e * c.max_rank + k]);
        vr.push_back(float(v[k]));
      }
    }
    EXPECT_TRUE(all_close(vg, vr, Tol{1e-4f, 1e-4f}, "v (shrink), level " + std::to_string(level)));
  }
  const auto got = download(dy, y.size(), c.dtype);
  EXPECT_TRUE(all_close(got, ref, lora_tol(c.dtype), "y"));
  std::vector<bool> touched(c.tokens, false);
  for (auto& r : refs) touched[r.tok] = touched[r.tok] || s.ranks[r.slot] > 0;
  for (int t = 0; t < c.tokens; ++t)
    if (!touched[t]) {
      for (int o = 0; o < c.out; ++o) ASSERT_EQ(got[size_t(t) * c.out + o], y[size_t(t) * c.out + o]) << "row " << t;
    }
}

// BGMV's expand as an epilogue of the kernel that consumes the GEMM output
// (what the executor's decode steps run) gives the bits of bgmv_expand into
// that output followed by the plain kernel: RMSNorm into the residual (o_proj,
// down), SiLU-mul over gate|up, RoPE + KV write over q|k|v. The case's `out`
// columns are the residual's width, gate|up's, and q|k|v's (kv heads of 1).
TEST_P(LoraTest, EpiloguesInTheConsumersEqualTheExpandThenTheConsumer) {
  MYRIAD_REQUIRE_CUDA();
  MYRIAD_CUDA_TEST_SEED();
  const LoraCase c = GetParam();
  const Slots s = make_slots(c);
  auto x = randn(size_t(c.tokens) * c.in, c.dtype);
  auto y0 = randn(size_t(c.tokens) * c.out, c.dtype);
  const auto [slot, weight] = token_slots(c);
  auto dev = upload_slots(c, s);
  auto dx = upload(x, c.dtype), dslot = upload_raw(slot), dw = upload(weight, DType::kF32);
  auto dv = poisoned(size_t(c.tokens) * c.max_rank, DType::kF32);
  const auto g = gpu::cuda::lora_group(dev.view(c));
  MYRIAD_ASSERT_OK(gpu::cuda::bgmv_shrink(c.dtype, dv.as<float>(), dx.data(), c.in, g, dslot.as<int32_t>(), c.tokens,
                                          nullptr));
  auto ep = gpu::cuda::lora_epilogue(c.dtype, g, dv.as<float>(), dslot.as<int32_t>(), dw.as<float>());
  ASSERT_TRUE(ep.ok()) << ep.error().to_string();
  const size_t n = y0.size();
  auto expanded = [&]() {  // y0 with bgmv_expand applied, on the device
    DeviceBuffer y = upload(y0, c.dtype);
    EXPECT_TRUE(gpu::cuda::bgmv_expand(c.dtype, y.data(), c.out, dv.as<float>(), g, dslot.as<int32_t>(), c.tokens,
                                       nullptr, dw.as<float>())
                    .ok());
    return y;
  };
  auto same = [&](const DeviceBuffer& a, const DeviceBuffer& b, size_t count, const std::string& what) {
    const auto ga = download(a, count, c.dtype), gb = download(b, count, c.dtype);
    for (size_t i = 0; i < count; ++i) {
      ASSERT_TRUE((std::isnan(ga[i]) && std::isnan(gb[i])) || ga[i] == gb[i])
          << what << " element " << i << ": " << ga[i] << " vs " << gb[i];
    }
  };
  {  // RMSNorm into the residual
    std::vector<float> w(size_t(c.out));
    for (auto& e : w) e = round_to(c.dtype, 1.0f + 0.1f * randn(1, DType::kF32)[0]);
    auto dnorm = upload(w, c.dtype);
    DeviceBuffer ref_res = expanded(), ref_out = poisoned(n, c.dtype);
    MYRIAD_ASSERT_OK(gpu::cuda::rmsnorm(c.dtype, ref_out.data(), nullptr, ref_res.data(), dnorm.data(), c.tokens,
                                        c.out, 1e-6f, nullptr));
    DeviceBuffer res = upload(y0, c.dtype), out = poisoned(n, c.dtype);
    MYRIAD_ASSERT_OK(gpu::cuda::rmsnorm_add_lora(c.dtype, out.data(), res.data(), ep.value(), dnorm.data(), c.tokens,
                                                 c.out, 1e-6f, nullptr));
    same(ref_res, res, n, "rmsnorm residual");
    same(ref_out, out, n, "rmsnorm out");
  }
  {  // SiLU-mul over gate|up (out = 2 x inter); gate_up itself stays
    const int64_t inter = c.out / 2;
    DeviceBuffer ref_gu = expanded(), ref_out = poisoned(size_t(c.tokens) * inter, c.dtype);
    MYRIAD_ASSERT_OK(gpu::cuda::silu_mul(c.dtype, ref_out.data(), ref_gu.data(), c.tokens, inter, nullptr));
    DeviceBuffer gu = upload(y0, c.dtype), out = poisoned(size_t(c.tokens) * inter, c.dtype);
    MYRIAD_ASSERT_OK(gpu::cuda::silu_mul(c.dtype, out.data(), gu.data(), c.tokens, inter, nullptr, &ep.value()));
    same(ref_out, out, size_t(c.tokens) * inter, "silu_mul");
    same(upload(y0, c.dtype), gu, n, "gate_up (unchanged)");
  }
  {  // RoPE + KV write over q|k|v: q and k rotated in place, k and v into the cache; v's columns stay
    const int hd = c.out >= 64 ? 16 : 4, kv = 1, heads = c.out / hd - 2 * kv, kvw = kv * hd;
    ASSERT_EQ((heads + 2 * kv) * hd, c.out);
    std::vector<float> inv(size_t(hd / 2));
    for (int i = 0; i < hd / 2; ++i) inv[size_t(i)] = 1.0f / std::pow(10000.0f, float(2 * i) / float(hd));
    std::vector<int32_t> pos(c.tokens), cache_slot(c.tokens);
    for (int t = 0; t < c.tokens; ++t) {
      pos[t] = int32_t(rng()() % 4096);
      cache_slot[t] = c.tokens - 1 - t;
    }
    auto dinv = upload(inv, DType::kF32);
    auto dpos = upload_raw(pos), dcs = upload_raw(cache_slot);
    const std::vector<float> nan_cache(size_t(c.tokens) * kvw, std::nanf(""));
    DeviceBuffer ref_qkv = expanded(), ref_k = upload(nan_cache, c.dtype), ref_v = upload(nan_cache, c.dtype);
    MYRIAD_ASSERT_OK(gpu::cuda::rope_kv_write(c.dtype, ref_qkv.data(), c.out, dpos.as<int32_t>(), dinv.as<float>(),
                                              ref_k.data(), ref_v.data(), dcs.as<int32_t>(), c.tokens, heads, kv, hd,
                                              nullptr));
    DeviceBuffer qkv = upload(y0, c.dtype), k = upload(nan_cache, c.dtype), v = upload(nan_cache, c.dtype);
    MYRIAD_ASSERT_OK(gpu::cuda::rope_kv_write(c.dtype, qkv.data(), c.out, dpos.as<int32_t>(), dinv.as<float>(),
                                              k.data(), v.data(), dcs.as<int32_t>(), c.tokens, heads, kv, hd, nullptr,
                                              &ep.value()));
    same(ref_k, k, nan_cache.size(), "k cache");
    same(ref_v, v, nan_cache.size(), "v cache");
    const auto got = download(qkv, n, c.dtype), want = download(ref_qkv, n, c.dtype);
    for (int t = 0; t < c.tokens; ++t)
      for (int e = 0; e < c.out; ++e) {
        const size_t i = size_t(t) * c.out + e;
        ASSERT_EQ(got[i], e < c.out - kvw ? want[i] : y0[i]) << "qkv token " << t << " column " << e;
      }
  }
}

std::vector<LoraCase> lora_cases() {
  std::vector<LoraCase> v;
  for (DType t : {DType::kF32, DType::kBF16})
    for (int tokens : {1, 4, 37})
      for (int slots : {1, 4, 16})
        for (int rank : {8, 16, 64}) v.push_back({t, tokens, slots, rank, rank == 64 ? 512 : 2048, 256});
  for (DType t : {DType::kF32, DType::kBF16}) {
    v.push_back({t, 64, 32, 16, 2048, 5632});  // tinyllama gate/up at batch 64
    v.push_back({t, 9, 3, 16, 5632, 2048});    // down_proj
    v.push_back({t, 5, 2, 4, 64, 16});         // the fixtures' shapes
  }
  return v;
}
INSTANTIATE_TEST_SUITE_P(Grid, LoraTest, ::testing::ValuesIn(lora_cases()), [](const auto& info) {
  const LoraCase& c = info.param;
  return std::string(dtype_name(c.dtype)) + "_t" + std::to_string(c.tokens) + "_s" + std::to_string(c.slots) + "_r" +
         std::to_string(c.max_rank) + "_" + std::to_string(c.in) + "x" + std::to_string(c.out);
});

struct GroupCase {
  DType dtype;
  int tokens, max_rank;
  std::vector<int> outs;  // the members' output widths (adjacent columns of y)
  bool sgmv;
};

class LoraGroupTest : public ::testing::TestWithParam<GroupCase> {};

// One launch pair over a group equals each member applied alone (the CPU
// reference) on its own columns of the fused output; a member a slot does not
// target (rank 0) and the padding columns past the group stay untouched.
TEST_P(LoraGroupTest, OneLaunchPairEqualsEachMemberAlone) {
  MYRIAD_REQUIRE_CUDA();
  MYRIAD_CUDA_TEST_SEED();
  const GroupCase gc = GetParam();
  const int count = int(gc.outs.size()), slots = 5, in = 256, pad = 8;
  int width = 0;
  for (int o : gc.outs) width += o;
  const int ldy = width + pad;
  std::vector<LoraCase> cases;
  std::vector<Slots> host;
  std::vector<Device> dev;
  gpu::cuda::LoraGroupSlots g;
  g.count = count;
  for (int i = 0; i < count; ++i) {
    cases.push_back({gc.dtype, gc.tokens, slots, gc.max_rank, in, gc.outs[size_t(i)]});
    host.push_back(make_slots(cases.back()));
  }
  host[size_t(count) - 1].ranks[0] = 0;  // slot 0 leaves the last member untargeted
  for (int i = 0; i < count; ++i) {
    dev.push_back(upload_slots(cases[size_t(i)], host[size_t(i)]));
    g.member[i] = dev.back().view(cases[size_t(i)]);
  }
  auto x = randn(size_t(gc.tokens) * in, gc.dtype);
  auto y = randn(size_t(gc.tokens) * ldy, gc.dtype);
  // Every token one slot (or none); SGMV entries sorted by slot, with weights.
  std::vector<int32_t> slot(size_t(gc.tokens));
  for (auto& v : slot) v = int32_t(rng()() % (slots + 1)) - 1;
  slot[0] = 0;
  std::vector<float> weight(size_t(gc.tokens), 1.0f);
  if (gc.sgmv)
    for (auto& w : weight) w = 0.25f + float(rng()() % 100) / 100.0f;
  auto dx = upload(x, gc.dtype), dy = upload(y, gc.dtype);
  auto dv = poisoned(size_t(gc.tokens) * count * gc.max_rank, DType::kF32);
  if (gc.sgmv) {
    std::vector<int> order;
    for (int t = 0; t < gc.tokens; ++t)
      if (slot[size_t(t)] >= 0) order.push_back(t);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return slot[size_t(a)] < slot[size_t(b)]; });
    std::vector<int32_t> seg_slot, seg_start, entry_token;
    std::vector<float> entry_weight;
    int max_len = 0;
    for (size_t e = 0; e < order.size(); ++e) {
      if (e == 0 || slot[size_t(order[e])] != slot[size_t(order[e - 1])]) {
        seg_slot.push_back(slot[size_t(order[e])]);
        seg_start.push_back(int32_t(e));
      }
      entry_token.push_back(order[e]);
      entry_weight.push_back(weight[size_t(order[e])]);
    }
    seg_start.push_back(int32_t(order.size()));
    for (size_t k = 0; k + 1 < seg_start.size(); ++k) max_len = std::max(max_len, seg_start[k + 1] - seg_start[k]);
    auto ds = upload_raw(seg_slot), dst = upload_raw(seg_start), dt = upload_raw(entry_token);
    auto dw = upload(entry_weight, DType::kF32);
    gpu::cuda::SgmvBatch b{ds.as<int32_t>(), dst.as<int32_t>(), dt.as<int32_t>(), dw.as<float>(),
                           int32_t(seg_slot.size()), max_len};
    MYRIAD_ASSERT_OK(gpu::cuda::sgmv_shrink(gc.dtype, dv.as<float>(), dx.data(), in, g, b, nullptr));
    MYRIAD_ASSERT_OK(gpu::cuda::sgmv_expand(gc.dtype, dy.data(), ldy, dv.as<float>(), g, b, nullptr));
  } else {
    auto dslot = upload_raw(slot);
    MYRIAD_ASSERT_OK(
        gpu::cuda::bgmv_shrink(gc.dtype, dv.as<float>(), dx.data(), in, g, dslot.as<int32_t>(), gc.tokens, nullptr));
    MYRIAD_ASSERT_OK(gpu::cuda::bgmv_expand(gc.dtype, dy.data(), ldy, dv.as<float>(), g, dslot.as<int32_t>(),
                                            gc.tokens, nullptr));
  }
  // Reference: member i alone on columns [col0_i, col0_i + out_i).
  std::vector<float> ref = y;
  int col0 = 0;
  for (int i = 0; i < count; ++i) {
    const LoraCase& c = cases[size_t(i)];
    std::vector<float> yi(size_t(gc.tokens) * c.out);
    for (int t = 0; t < gc.tokens; ++t)
      std::copy_n(&y[size_t(t) * ldy + col0], c.out, &yi[size_t(t) * c.out]);
    for (int t = 0; t < gc.tokens; ++t)
      if (slot[size_t(t)] >= 0) lora_ref(c, host[size_t(i)], x, t, slot[size_t(t)], weight[size_t(t)], yi, nullptr);
    for (int t = 0; t < gc.tokens; ++t)
      std::copy_n(&yi[size_t(t) * c.out], c.out, &ref[size_t(t) * ldy + col0]);
    col0 += c.out;
  }
  const auto got = download(dy, y.size(), gc.dtype);
  EXPECT_TRUE(all_close(got, ref, lora_tol(gc.dtype), "y"));
  for (int t = 0; t < gc.tokens; ++t) {
    for (int o = width; o < ldy; ++o) {
      ASSERT_EQ(got[size_t(t) * ldy + o], y[size_t(t) * ldy + o]) << "pad, row " << t;
    }
    if (slot[size_t(t)] != 0) continue;
    for (int o = width - gc.outs.back(); o < width; ++o)  // the untargeted last member's columns are unchanged
      ASSERT_EQ(got[size_t(t) * ldy + o], y[size_t(t) * ldy + o]) << "untargeted member, row " << t;
  }
}

std::vector<GroupCase> group_cases() {
  std::vector<GroupCase> v;
  for (DType t : {DType::kF32, DType::kBF16})
    for (bool sgmv : {false, true})
      for (int tokens : {1, 9, 64}) {
        v.push_back({t, tokens, 16, {256, 64, 64}, sgmv});  // q|k|v with GQA
        v.push_back({t, tokens, 8, {320, 320}, sgmv});      // gate|up
        v.push_back({t, tokens, 4, {40, 24, 24}, sgmv});    // widths off the 256-thread blocks
      }
  return v;
}
INSTANTIATE_TEST_SUITE_P(Grid, LoraGroupTest, ::testing::ValuesIn(group_cases()), [](const auto& info) {
  const GroupCase& c = info.param;
  std::string outs;
  for (int o : c.outs) outs += "_" + std::to_string(o);
  return std::string(dtype_name(c.dtype)) + (c.sgmv ? "_sgmv" : "_bgmv") + "_t" + std::to_string(c.tokens) + "_r" +
         std::to_string(c.max_rank) + outs;
});

}  // namespace
}  // namespace myriad::cuda_test
