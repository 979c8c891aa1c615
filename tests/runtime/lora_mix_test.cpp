// mix_lora: a weighted mixture of adapters as one adapter. Per module, the
// dense delta s'·B'A' of the mixture equals sum_i w_i s_i B_i A_i (computed
// here in double from the parts), on the fixture adapters with different
// ranks and target sets (r4-qv targets q/v only, r8-all all seven).
#include <gtest/gtest.h>

#include <cmath>

#include "runtime/checkpoint.h"
#include "runtime/lora_weights.h"
#include "runtime/model_config.h"
#include "runtime/peft_adapter.h"
#include "test_fixtures.h"

namespace myriad {
namespace {

std::vector<double> dense_delta(const LoraModuleWeights& m, int64_t in, int64_t out, double weight) {
  std::vector<double> d(size_t(in * out), 0.0);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) {
      double s = 0;
      for (int32_t j = 0; j < m.rank; ++j) s += double(m.b[size_t(o * m.rank + j)]) * m.a[size_t(j * in + i)];
      d[size_t(o * in + i)] = weight * m.scale * s;
    }
  return d;
}

TEST(LoraMix, MixtureDeltaEqualsTheWeightedSumOfDeltas) {
  const std::string base = testing::fixtures_dir() + "/tiny-llama";
  auto cfg = load_model_config(base);
  ASSERT_TRUE(cfg.ok()) << cfg.error().to_string();
  auto a = load_peft_adapter(base + "/adapters/r8-all", *cfg);
  auto b = load_peft_adapter(base + "/adapters/r4-qv", *cfg);
  ASSERT_TRUE(a.ok() && b.ok());
  const std::vector<LoraMixPart> parts = {{*a, 0.7f}, {*b, -0.4f}};
  const LoraWeights mix = mix_lora(parts, "mix");
  EXPECT_EQ(mix.name, "mix");
  ASSERT_EQ(mix.modules.size(), (*a)->modules.size());
  for (int l = 0; l < cfg->num_layers; ++l) {
    for (int mi = 0; mi < kNumLinearModules; ++mi) {
      const auto m = LinearModule(mi);
      SCOPED_TRACE(std::string(linear_module_name(m)) + " layer " + std::to_string(l));
      const auto [out, in] = linear_module_shape(*cfg, m);
      const LoraModuleWeights& ma = (*a)->at(l, m);
      const LoraModuleWeights& mb = (*b)->at(l, m);
      const LoraModuleWeights& mm = mix.at(l, m);
      ASSERT_EQ(mm.rank, ma.rank + mb.rank);
      if (mm.rank == 0) continue;
      EXPECT_EQ(mm.scale, 1.0f);
      const auto want_a = dense_delta(ma, in, out, 0.7), want_b = dense_delta(mb, in, out, -0.4);
      const auto got = dense_delta(mm, in, out, 1.0);
      // float products of the scaled B' (one rounding of w·s·b) against the
      // double reference: |Δ| ≤ 1e-6 + 1e-5·|ref| for sums of ≤ 12 terms of ~1e-2.
      for (size_t i = 0; i < got.size(); ++i) {
        const double ref = (ma.rank ? want_a[i] : 0.0) + (mb.rank ? want_b[i] : 0.0);
        ASSERT_LE(std::fabs(got[i] - ref), 1e-6 + 1e-5 * std::fabs(ref)) << "element " << i;
      }
    }
  }
  // A single part of weight 1 is that adapter, delta for delta.
  const LoraWeights one = mix_lora({{*a, 1.0f}}, "one");
  const auto [out, in] = linear_module_shape(*cfg, LinearModule::kDown);
  const auto d1 = dense_delta(one.at(1, LinearModule::kDown), in, out, 1.0);
  const auto d0 = dense_delta((*a)->at(1, LinearModule::kDown), in, out, 1.0);
  for (size_t i = 0; i < d1.size(); ++i) ASSERT_NEAR(d1[i], d0[i], 1e-7 + 1e-6 * std::fabs(d0[i]));
}

}  // namespace
}  // namespace myriad
