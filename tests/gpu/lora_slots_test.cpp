// CPU adapter slots: fixture adapters copied into slots give the plain
// s·B(Ax) delta per row (mixtures too); loads run in the background and
// never block apply() on other slots; bad loads change nothing.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <random>
#include <thread>

#include "gpu/cpu/lora_slots.h"
#include "runtime/peft_adapter.h"
#include "test_fixtures.h"

using myriad::testing::fixtures_dir;

namespace myriad::gpu::cpu {
namespace {


struct Fixture {
  ModelConfig config;
  std::vector<std::shared_ptr<const LoraWeights>> adapters;  // r4-qv, r8-all, r16-rslora-o-down
  Fixture() {
    auto c = load_model_config(fixtures_dir() + "/tiny-llama");
    EXPECT_TRUE(c.ok());
    config = c.value();
    for (const char* n : {"r4-qv", "r8-all", "r16-rslora-o-down"}) {
      auto w = load_peft_adapter(fixtures_dir() + "/tiny-llama/adapters/" + n, config);
      EXPECT_TRUE(w.ok()) << w.error().to_string();
      adapters.push_back(w.value());
    }
  }
};

// y[t] += sum w * s * B (A x[t]) in double, straight from LoraWeights.
void reference(const ModelConfig& c, const std::vector<const LoraWeights*>& by_slot, int layer, LinearModule m,
               const std::vector<float>& x, std::vector<float>& y, std::span<const AdapterMix> mixes) {
  const auto [out, in] = linear_module_shape(c, m);
  for (size_t t = 0; t < mixes.size(); ++t) {
    for (uint8_t i = 0; i < mixes[t].count; ++i) {
      const LoraModuleWeights& mw = by_slot[size_t(mixes[t].refs[i].slot)]->at(layer, m);
      std::vector<double> h(size_t(mw.rank), 0.0);
      for (int k = 0; k < mw.rank; ++k) {
        for (int64_t j = 0; j < in; ++j) h[size_t(k)] += double(mw.a[size_t(k * in + j)]) * x[size_t(int64_t(t) * in + j)];
      }
      for (int64_t o = 0; o < out; ++o) {
        double acc = 0;
        for (int k = 0; k < mw.rank; ++k) acc += double(mw.b[size_t(o * mw.rank + k)]) * h[size_t(k)];
        y[size_t(int64_t(t) * out + o)] += float(double(mixes[t].refs[i].weight) * mw.scale * acc);
      }
    }
  }
}

void wait_ready(CpuLoraSlots& s, int32_t slot) {
  for (int i = 0; i < 5000 && !s.ready(slot); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_TRUE(s.ready(slot));
}

TEST(CpuLoraSlots, DeltasMatchReferenceForEveryModuleAndMixture) {
  Fixture f;
  ThreadPool pool(2);
  CpuLoraSlots slots(f.config, 4, 16, &pool);
  // Slot 0 empty on purpose; 1..3 hold the three adapters.
  std::vector<const LoraWeights*> by_slot = {nullptr, f.adapters[0].get(), f.adapters[1].get(), f.adapters[2].get()};
  for (int s = 1; s <= 3; ++s) ASSERT_TRUE(slots.begin_load(s, f.adapters[size_t(s - 1)]).ok());
  for (int s = 1; s <= 3; ++s) wait_ready(slots, s);
  EXPECT_FALSE(slots.ready(0));

  const int T = 9;
  std::vector<AdapterMix> mixes(T);
  mixes[0] = AdapterMix::single(1);
  mixes[1] = AdapterMix::single(2);
  mixes[2] = AdapterMix::single(3);
  // mixes[3], [4]: base only
  mixes[5] = AdapterMix::single(2);
  for (int t : {6, 7}) {
    mixes[size_t(t)].refs[0] = {1, 0.25f};
    mixes[size_t(t)].refs[1] = {2, 0.5f};
    mixes[size_t(t)].refs[2] = {3, 0.25f};
    mixes[size_t(t)].count = 3;
  }
  mixes[8] = AdapterMix::single(3);
  ASSERT_TRUE(slots.validate(mixes).ok());

  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0, 1);
  for (int layer = 0; layer < 2; ++layer) {
    for (int mi = 0; mi < kNumLinearModules; ++mi) {
      const auto m = LinearModule(mi);
      const auto [out, in] = linear_module_shape(f.config, m);
      std::vector<float> x(size_t(T * in)), y(size_t(T * out));
      for (auto& v : x) v = nd(rng);
      for (auto& v : y) v = nd(rng);
      std::vector<float> ref = y, got = y;
      reference(f.config, by_slot, layer, m, x, ref, mixes);
      slots.apply(layer, m, x.data(), got.data(), mixes);
      for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_NEAR(got[i], ref[i], 1e-5 + 1e-5 * std::abs(ref[i])) << layer << " " << linear_module_name(m) << " " << i;
      }
      for (int t : {3, 4}) {
        for (int64_t o = 0; o < out; ++o) ASSERT_EQ(got[size_t(t * out + o)], y[size_t(t * out + o)]);
      }
    }
  }
  EXPECT_EQ(slots.distinct_slots_in_step(), 3u);
}

TEST(CpuLoraSlots, SlowLoadRunsInBackgroundWhileOtherSlotsServe) {
  Fixture f;
  CpuLoraSlots slots(f.config, 2, 16, nullptr);
  ASSERT_TRUE(slots.begin_load(0, f.adapters[1]).ok());
  wait_ready(slots, 0);
  slots.set_load_hook([](int32_t) { std::this_thread::sleep_for(std::chrono::milliseconds(150)); });
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(slots.begin_load(1, f.adapters[2]).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(50));  // returned at once
  // Meanwhile slot 0 keeps serving, and slot 1 is refused by validate().
  const auto [out, in] = linear_module_shape(f.config, LinearModule::kQ);
  std::vector<float> x(size_t(in), 0.5f), y(size_t(out), 0.0f);
  std::vector<AdapterMix> mix0{AdapterMix::single(0)}, mix1{AdapterMix::single(1)};
  int served = 0;
  while (!slots.ready(1)) {
    ASSERT_TRUE(slots.validate(mix0).ok());
    auto bad = slots.validate(mix1);
    if (!slots.ready(1)) {
      ASSERT_FALSE(bad.ok());
      EXPECT_NE(bad.error().message.find("not loaded"), std::string::npos);
    }
    slots.apply(0, LinearModule::kQ, x.data(), y.data(), mix0);
    ++served;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_GE(served, 10);  // >= 50 ms of service while the 150 ms load ran
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(150));
}

TEST(CpuLoraSlots, BadLoadsChangeNothing) {
  Fixture f;
  CpuLoraSlots slots(f.config, 2, 8, nullptr);
  auto r = slots.begin_load(0, f.adapters[2]);  // rank 16 > 8
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("rank 16"), std::string::npos);
  EXPECT_FALSE(slots.ready(0));
  EXPECT_FALSE(slots.begin_load(2, f.adapters[0]).ok());   // out of range
  EXPECT_FALSE(slots.begin_load(-1, f.adapters[0]).ok());
  auto other = std::make_shared<LoraWeights>(*f.adapters[0]);
  other->num_layers = 3;
  EXPECT_FALSE(slots.begin_load(0, other).ok());
  ASSERT_TRUE(slots.begin_load(0, f.adapters[0]).ok());
  auto busy = slots.begin_load(0, f.adapters[1]);  // loading or loaded: busy
  ASSERT_FALSE(busy.ok());
  EXPECT_NE(busy.error().message.find("busy"), std::string::npos);
  slots.unload(0);  // waits for the copy, then empties
  EXPECT_FALSE(slots.ready(0));
  ASSERT_TRUE(slots.begin_load(0, f.adapters[1]).ok());
  wait_ready(slots, 0);
}

}  // namespace
}  // namespace myriad::gpu::cpu
