// Multi-LoRA kernels against the plain double reference: a grid of
// batch x adapters x rank (ranks differ between slots), rows with no adapter,
// weighted mixtures, threaded partitions, and batch invariance.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <thread>

#include "gpu/cpu/lora_sgmv.h"
#include "gpu/devices.h"

namespace myriad::gpu::cpu {
namespace {

struct SlotData {
  std::vector<float> a, bt;
  std::vector<uint16_t> a16, bt16;  // bf16 copies
  LoraModuleView view;
};

std::vector<SlotData> make_slots(std::mt19937& rng, int n, int64_t in, int64_t out, const std::vector<int>& ranks,
                                 DType dtype = DType::kF32) {
  std::normal_distribution<float> nd(0.0f, 0.05f);
  std::vector<SlotData> s(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    const int r = ranks[size_t(i) % ranks.size()];
    s[size_t(i)].a.resize(size_t(r * in));
    s[size_t(i)].bt.resize(size_t(r * out));
    for (auto& v : s[size_t(i)].a) v = nd(rng);
    for (auto& v : s[size_t(i)].bt) v = nd(rng);
  }
  for (int i = 0; i < n; ++i) {
    const int r = ranks[size_t(i) % ranks.size()];
    SlotData& d = s[size_t(i)];
    d.view = {d.a.data(), d.bt.data(), r, 16.0f / float(r)};
    if (dtype == DType::kBF16) {
      for (float v : d.a) d.a16.push_back(f32_to_bf16(v));
      for (float v : d.bt) d.bt16.push_back(f32_to_bf16(v));
      d.view = {d.a16.data(), d.bt16.data(), r, 16.0f / float(r), DType::kBF16};
    }
  }
  return s;
}

std::vector<LoraModuleView> views(const std::vector<SlotData>& s) {
  std::vector<LoraModuleView> v;
  for (const auto& d : s) v.push_back(d.view);
  return v;
}

// Mixtures: ~20% rows base only, ~20% a mixture of 2-3 slots, the rest one slot.
std::vector<AdapterMix> make_mixes(std::mt19937& rng, int64_t t, int slots) {
  std::vector<AdapterMix> m(static_cast<size_t>(t));
  std::uniform_int_distribution<int> pick(0, slots - 1), kind(0, 9);
  std::uniform_real_distribution<float> w(0.1f, 1.0f);
  for (auto& mix : m) {
    const int k = kind(rng);
    if (k < 2 || slots == 0) continue;
    const int n = k < 4 ? std::min(slots, 2 + k % 2) : 1;
    std::vector<int> used;
    while (int(used.size()) < n) {
      int s = pick(rng);
      if (std::find(used.begin(), used.end(), s) == used.end()) used.push_back(s);
    }
    for (int s : used) mix.refs[mix.count++] = {s, n == 1 ? 1.0f : w(rng)};
  }
  return m;
}

LoraParallelFor thread_parallel(int threads) {
  return [threads](int64_t n, const std::function<void(int64_t, int64_t)>& body) {
    std::vector<std::thread> ts;
    const int64_t per = (n + threads - 1) / threads;
    for (int64_t b = 0; b < n; b += per) ts.emplace_back(body, b, std::min(n, b + per));
    for (auto& t : ts) t.join();
  };
}

void expect_close(const std::vector<float>& got, const std::vector<float>& ref, const std::string& what) {
  ASSERT_EQ(got.size(), ref.size());
  for (size_t i = 0; i < got.size(); ++i) {
    // f32 dot products of a few hundred terms of size ~0.05: 1e-5 absolute
    // plus 1e-5 relative is ~100x the observed error and far below a delta.
    ASSERT_LE(std::abs(got[i] - ref[i]), 1e-5f + 1e-5f * std::abs(ref[i])) << what << " at " << i;
  }
}

using Kernel = void (*)(const LoraBatchPlan&, std::span<const LoraModuleView>, const float*, int64_t, float*,
                        int64_t, LoraScratch&, const LoraParallelFor&);

void run_grid(Kernel kernel, const char* name) {
  std::mt19937 rng(42);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t in = 72, out = 200;  // not multiples of 32: exercises every tail
  for (DType dtype : {DType::kF32, DType::kBF16}) {
  for (int64_t t : {1, 3, 16, 33}) {
    for (int adapters : {1, 4, 16}) {
      for (const std::vector<int>& ranks : std::vector<std::vector<int>>{{4}, {8, 16}, {1, 5, 16, 64}}) {
        auto slots = make_slots(rng, adapters, in, out, ranks, dtype);
        auto v = views(slots);
        auto mixes = make_mixes(rng, t, adapters);
        std::vector<float> x(size_t(t * in)), y(size_t(t * out));
        for (auto& e : x) e = nd(rng);
        for (auto& e : y) e = nd(rng);
        std::vector<float> ref = y;
        lora_reference(mixes, v, x.data(), in, ref.data(), out);
        LoraBatchPlan plan;
        plan.build(mixes);
        LoraScratch scratch;
        for (int threads : {1, 3}) {
          std::vector<float> got = y;
          kernel(plan, v, x.data(), in, got.data(), out, scratch, threads == 1 ? LoraParallelFor{} : thread_parallel(threads));
          const std::string what = std::string(name) + " " + dtype_name(dtype) + " T=" + std::to_string(t) + " adapters=" +
                                   std::to_string(adapters) + " ranks[0]=" + std::to_string(ranks[0]) +
                                   " threads=" + std::to_string(threads);
          expect_close(got, ref, what);
          // Rows with no adapter are untouched, bit for bit.
          for (int64_t r = 0; r < t; ++r) {
            if (mixes[size_t(r)].count) continue;
            for (int64_t o = 0; o < out; ++o) ASSERT_EQ(got[size_t(r * out + o)], y[size_t(r * out + o)]) << what;
          }
        }
      }
    }
  }
  }
}

TEST(LoraSgmv, FastMatchesReferenceGrid) { run_grid(lora_sgmv, "lora_sgmv"); }
TEST(LoraSgmv, PortableMatchesReferenceGrid) { run_grid(lora_sgmv_portable, "lora_sgmv_portable"); }

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
  expect_close(got, sum, "mixture");
}

TEST(LoraSgmv, RowResultIsBatchInvariant) {
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t in = 128, out = 256, t = 24;
  auto slots = make_slots(rng, 6, in, out, {16, 4});
  auto v = views(slots);
  auto mixes = make_mixes(rng, t, 6);
  std::vector<float> x(size_t(t * in)), y(size_t(t * out));
  for (auto& e : x) e = nd(rng);
  for (auto& e : y) e = nd(rng);
  std::vector<float> batch = y;
  LoraBatchPlan plan;
  LoraScratch scratch;
  plan.build(mixes);
  lora_sgmv(plan, v, x.data(), in, batch.data(), out, scratch, thread_parallel(2));
  for (int64_t r = 0; r < t; ++r) {
    std::vector<float> alone(y.begin() + r * out, y.begin() + (r + 1) * out);
    std::vector<AdapterMix> one{mixes[size_t(r)]};
    plan.build(one);
    lora_sgmv(plan, v, x.data() + r * in, in, alone.data(), out, scratch);
    for (int64_t o = 0; o < out; ++o) ASSERT_EQ(alone[size_t(o)], batch[size_t(r * out + o)]) << r << "," << o;
  }
}

}  // namespace
}  // namespace myriad::gpu::cpu
