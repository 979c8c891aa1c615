// Multi-LoRA kernels against the plain double reference: a grid of
// batch x adapters x rank (ranks differ between slots), rows with no adapter,
// weighted mixtures, threaded partitions, and batch invariance; the stacked
// group pass (q|k|v, gate|up) bit for bit against one pass per module and
// against itself without the next-block prefetch.
#include "gpu/cpu/lora_sgmv.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <thread>

#include "cpu_kernel_checks.h"
#include "gpu/devices.h"

namespace myriad::gpu::cpu {
namespace {

void run_grid(LoraKernel kernel, const char* name) {
  std::mt19937 rng(42);
  const int64_t in = 72, out = 200;  // not multiples of 32: exercises every tail
  for (DType dtype : {DType::kF32, DType::kBF16})
    for (int64_t t : {1, 3, 16, 33})
      for (int adapters : {1, 4, 16})
        for (const std::vector<int>& ranks : std::vector<std::vector<int>>{{4}, {8, 16}, {1, 5, 16, 64}}) {
          check_lora(kernel, name, dtype, t, adapters, ranks, in, out, rng);
          if (::testing::Test::HasFatalFailure()) return;
        }
}

// Each ISA's loops on their own (where the CPU has them), not only the best.
void sgmv_avx2(const LoraBatchPlan& p, std::span<const LoraModuleView> s, const float* x, int64_t in, float* y,
               int64_t out, LoraScratch& sc, const LoraParallelFor& par) {
  lora_sgmv_isa(LoraIsa::kAvx2, p, s, x, in, y, out, sc, par);
}
void sgmv_avx512(const LoraBatchPlan& p, std::span<const LoraModuleView> s, const float* x, int64_t in, float* y,
                 int64_t out, LoraScratch& sc, const LoraParallelFor& par) {
  lora_sgmv_isa(LoraIsa::kAvx512, p, s, x, in, y, out, sc, par);
}

TEST(LoraSgmv, FastMatchesReferenceGrid) {
  std::printf("[ lora     ] fast kernels: %s\n", lora_isa_name(lora_best_isa()));
  run_grid(lora_sgmv, "lora_sgmv");
}
TEST(LoraSgmv, PortableMatchesReferenceGrid) { run_grid(lora_sgmv_portable, "lora_sgmv_portable"); }
TEST(LoraSgmv, Avx2MatchesReferenceGrid) {
  if (lora_best_isa() < LoraIsa::kAvx2) GTEST_SKIP() << "no AVX2+FMA on this CPU";
  run_grid(sgmv_avx2, "lora_sgmv_isa(avx2)");
}
TEST(LoraSgmv, Avx512MatchesReferenceGrid) {
  if (lora_best_isa() < LoraIsa::kAvx512) GTEST_SKIP() << "no AVX-512F/BW on this CPU";
  run_grid(sgmv_avx512, "lora_sgmv_isa(avx512)");
}

TEST(LoraSgmv, PlanGroupsRowsBySlotAndSkipsBase) {
  std::vector<AdapterMix> m(5);
  m[0] = AdapterMix::single(3);
  m[2] = AdapterMix::single(1);
  m[3].refs[m[3].count++] = {3, 0.5f};
  m[3].refs[m[3].count++] = {1, 0.25f};
  m[4].refs[m[4].count++] = {2, 0.0f};  // zero weight: no work
  LoraBatchPlan p;
  p.build(m);
  ASSERT_EQ(p.segments.size(), 2u);
  EXPECT_EQ(p.segments[0].slot, 1);
  EXPECT_EQ(p.segments[1].slot, 3);
  EXPECT_EQ(std::vector<uint32_t>(p.rows.begin(), p.rows.end()), (std::vector<uint32_t>{2, 3, 0, 3}));
  EXPECT_EQ(p.weights[1], 0.25f);
  EXPECT_EQ(p.weights[3], 0.5f);
  ASSERT_EQ(p.blocks.size(), 2u);  // one block per slot here
  // Blocks: up to kLoraBlockRows entries of one slot, never across slots.
  std::vector<AdapterMix> many(11);
  for (int t = 0; t < 11; ++t) many[size_t(t)] = AdapterMix::single(t < 6 ? 1 : 3);
  p.build(many);
  ASSERT_EQ(p.blocks.size(), 4u);
  const uint32_t want[4][3] = {{0, 0, 4}, {0, 4, 2}, {1, 6, 4}, {1, 10, 1}};
  for (size_t b = 0; b < 4; ++b) {
    EXPECT_EQ(p.blocks[b].segment, want[b][0]) << "block " << b;
    EXPECT_EQ(p.blocks[b].begin, want[b][1]) << "block " << b;
    EXPECT_EQ(p.blocks[b].count, want[b][2]) << "block " << b;
  }
  p.build(std::vector<AdapterMix>(4));
  EXPECT_TRUE(p.empty());
  EXPECT_TRUE(p.blocks.empty());
}

TEST(LoraSgmv, MixtureIsWeightedSumOfSingleDeltas) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t in = 64, out = 96;
  auto slots = make_slots(rng, 3, in, out, {4, 8, 16});
  auto v = views(slots);
  std::vector<float> x(static_cast<size_t>(in));
  for (auto& e : x) e = nd(rng);
  const float w[3] = {0.5f, 0.3f, 0.2f};
  std::vector<float> sum(static_cast<size_t>(out), 0.0f);
  LoraScratch scratch;
  LoraBatchPlan plan;
  for (int s = 0; s < 3; ++s) {
    std::vector<float> d(static_cast<size_t>(out), 0.0f);
    std::vector<AdapterMix> one{AdapterMix::single(s)};
    plan.build(one);
    lora_sgmv(plan, v, x.data(), in, d.data(), out, scratch);
    for (int64_t o = 0; o < out; ++o) sum[size_t(o)] += w[s] * d[size_t(o)];
  }
  AdapterMix mix;
  for (int s = 0; s < 3; ++s) mix.refs[mix.count++] = {s, w[s]};
  std::vector<AdapterMix> mixes{mix};
  plan.build(mixes);
  std::vector<float> got(static_cast<size_t>(out), 0.0f);
  lora_sgmv(plan, v, x.data(), in, got.data(), out, scratch);
  expect_lora_close(got, sum, "mixture");
}

TEST(LoraSgmv, RowResultIsBatchInvariant) {
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    std::mt19937 rng(9);
    check_lora_batch_invariance(lora_sgmv, "lora_sgmv", dtype, 24, 6, {16, 4}, 128, 256, rng);
    if (lora_best_isa() >= LoraIsa::kAvx2)
      check_lora_batch_invariance(sgmv_avx2, "lora_sgmv_isa(avx2)", dtype, 24, 6, {16, 4}, 136, 300, rng);
  }
}

// Module groups: `modules` modules reading one x (in columns), each of its
// own width; per slot, module m has rank ranks[(slot + m) % size] (0 = not
// targeted), its A stacked in one buffer as CpuLoraSlots stores them.
struct GroupSlots {
  std::vector<std::vector<float>> a32, bt32;  // [slot]: stacked A; [slot * modules + m]: Bᵀ
  std::vector<std::vector<uint16_t>> a16, bt16;
  std::vector<LoraGroupView> groups;               // [slot]
  std::vector<std::vector<LoraModuleView>> views;  // [m][slot]
};

GroupSlots make_group_slots(std::mt19937& rng, DType dtype, int slots, int64_t in,
                            const std::vector<int64_t>& outs, const std::vector<int>& ranks) {
  std::normal_distribution<float> nd(0.0f, 0.05f);
  const int modules = int(outs.size());
  GroupSlots g;
  g.a32.resize(size_t(slots));
  g.bt32.resize(size_t(slots * modules));
  g.views.assign(size_t(modules), std::vector<LoraModuleView>(size_t(slots)));
  g.groups.resize(size_t(slots));
  auto rank_of = [&](int s, int m) { return ranks[size_t(s + m) % ranks.size()]; };
  for (int s = 0; s < slots; ++s) {
    for (int m = 0; m < modules; ++m) {
      for (int64_t i = 0; i < rank_of(s, m) * in; ++i) g.a32[size_t(s)].push_back(nd(rng));
      for (int64_t i = 0; i < rank_of(s, m) * outs[size_t(m)]; ++i)
        g.bt32[size_t(s * modules + m)].push_back(nd(rng));
    }
  }
  if (dtype == DType::kBF16) {
    for (const auto& v : g.a32)
      g.a16.emplace_back(v.size()), std::transform(v.begin(), v.end(), g.a16.back().begin(), f32_to_bf16);
    for (const auto& v : g.bt32)
      g.bt16.emplace_back(v.size()), std::transform(v.begin(), v.end(), g.bt16.back().begin(), f32_to_bf16);
  }
  const size_t esize = dtype_size(dtype);
  for (int s = 0; s < slots; ++s) {
    const auto* a = reinterpret_cast<const std::byte*>(
        dtype == DType::kBF16 ? static_cast<const void*>(g.a16[size_t(s)].data()) : g.a32[size_t(s)].data());
    LoraGroupView& gv = g.groups[size_t(s)];
    gv.a = a;
    gv.dtype = dtype;
    gv.num_modules = modules;
    for (int m = 0; m < modules; ++m) {
      const int r = rank_of(s, m);
      const size_t bi = size_t(s * modules + m);
      const void* bt =
          dtype == DType::kBF16 ? static_cast<const void*>(g.bt16[bi].data()) : g.bt32[bi].data();
      const LoraModuleView v =
          r == 0 ? LoraModuleView{} : LoraModuleView{a, bt, r, 8.0f / float(r + m), dtype};
      gv.modules[m] = v;
      g.views[size_t(m)][size_t(s)] = v;
      gv.rank_total += r;
      a += size_t(r) * size_t(in) * esize;
    }
  }
  return g;
}

void check_group(LoraIsa isa, DType dtype, bool mixtures, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t in = 72;
  const std::vector<int64_t> outs{200, 72, 136};
  const int slots = 6;
  // Slot ranks differ per module; some modules untargeted (0); slot 5 with
  // ranks {0, 0, 0} would target nothing (rank_total 0) at modules 0..2.
  const GroupSlots g = make_group_slots(rng, dtype, slots, in, outs, {16, 0, 4, 8, 1, 0, 0});
  for (int64_t t : {1, 5, 33}) {
    std::vector<AdapterMix> mixes = make_mixes(rng, t, slots);
    if (!mixtures)
      for (auto& m : mixes)
        if (m.count > 1) m.count = 1;
    std::vector<float> x(size_t(t * in));
    for (auto& e : x) e = nd(rng);
    std::vector<std::vector<float>> y(outs.size());
    for (size_t m = 0; m < outs.size(); ++m) {
      y[m].resize(size_t(t * outs[m]));
      for (auto& e : y[m]) e = nd(rng);
    }
    LoraBatchPlan plan;
    plan.build(mixes);
    LoraScratch scratch;
    for (int threads : {1, 3}) {
      const LoraParallelFor par = threads == 1 ? LoraParallelFor{} : thread_parallel(threads);
      std::vector<std::vector<float>> got = y, each = y;
      std::vector<float*> ys;
      for (auto& v : got) ys.push_back(v.data());
      lora_sgmv_group_isa(isa, plan, g.groups, x.data(), in, ys, outs, scratch, par);
      // Prefetching the next block's weights changes no bit.
      std::vector<std::vector<float>> unprefetched = y;
      std::vector<float*> ys_unprefetched;
      for (auto& v : unprefetched) ys_unprefetched.push_back(v.data());
      lora_prefetch_next_block(false);
      lora_sgmv_group_isa(isa, plan, g.groups, x.data(), in, ys_unprefetched, outs, scratch, par);
      lora_prefetch_next_block(true);
      for (size_t m = 0; m < outs.size(); ++m) {
        ASSERT_EQ(got[m], unprefetched[m]) << "group without next-block prefetch, seed=" << seed << " T=" << t
                                           << " threads=" << threads << " module " << m;
        lora_sgmv_isa(isa, plan, g.views[m], x.data(), in, each[m].data(), outs[m], scratch, par);
        std::vector<float> ref = y[m];
        lora_reference(mixes, g.views[m], x.data(), in, ref.data(), outs[m]);
        const std::string what = std::string("group ") + lora_isa_name(isa) + " " + dtype_name(dtype) +
                                 " seed=" + std::to_string(seed) + " T=" + std::to_string(t) +
                                 " threads=" + std::to_string(threads) + " module " + std::to_string(m);
        for (size_t i = 0; i < ref.size(); ++i)
          ASSERT_EQ(got[m][i], each[m][i]) << what << " vs one pass, at " << i;
        expect_lora_close(got[m], ref, what + " vs reference");
        if (::testing::Test::HasFatalFailure()) return;
      }
    }
  }
}

TEST(LoraSgmv, GroupPassEqualsOnePassPerModuleBitForBit) {
  for (LoraIsa isa : {LoraIsa::kPortable, LoraIsa::kAvx2, LoraIsa::kAvx512}) {
    if (isa > lora_best_isa()) continue;
    for (DType dtype : {DType::kF32, DType::kBF16})
      for (bool mixtures : {false, true}) {
        check_group(isa, dtype, mixtures, 1000u + uint32_t(isa) * 10u + uint32_t(mixtures));
        if (HasFatalFailure()) return;
      }
  }
}
}  // namespace
}  // namespace myriad::gpu::cpu
