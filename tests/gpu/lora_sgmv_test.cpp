// Multi-LoRA kernels against the plain double reference: a grid of
// batch x adapters x rank (ranks differ between slots), rows with no adapter,
// weighted mixtures, threaded partitions, and batch invariance.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <thread>

#include "cpu_kernel_checks.h"
#include "gpu/cpu/lora_sgmv.h"
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
  p.build(std::vector<AdapterMix>(4));
  EXPECT_TRUE(p.empty());
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

}  // namespace
}  // namespace myriad::gpu::cpu
