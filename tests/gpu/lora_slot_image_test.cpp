// The LoRA slot image (gpu/lora_slot_image.h) against a plain reading of its
// layout: module-major, 16-byte aligned; an image is the adapter's span of
// the slot (A's first rank rows and B's first rank columns in the slot dtype,
// zeros elsewhere) then the rank and scale tables; the span covers exactly
// the targeted modules; adapters that do not fit are refused by name. Random
// adapters from a printed seed.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "gpu/lora_slot_image.h"
#include "test_seed.h"

namespace myriad::gpu {
namespace {

ModelConfig small_config() {
  ModelConfig c;
  c.hidden_size = 48;
  c.intermediate_size = 80;
  c.num_layers = 3;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 12;
  c.vocab_size = 64;
  return c;
}

// Rank per (layer, module) from `ranks_of(layer, module)`, normal values.
template <class RankOf>
LoraWeights random_adapter(const ModelConfig& c, RankOf ranks_of, std::mt19937_64& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  LoraWeights w;
  w.name = "random";
  w.num_layers = int32_t(c.num_layers);
  w.modules.resize(size_t(c.num_layers) * kNumLinearModules);
  for (int l = 0; l < w.num_layers; ++l)
    for (int m = 0; m < kNumLinearModules; ++m) {
      auto& mw = w.at(l, LinearModule(m));
      mw.rank = ranks_of(l, m);
      mw.scale = 0.5f + float(l * kNumLinearModules + m);
      const auto [out, in] = linear_module_shape(c, LinearModule(m));
      mw.a.resize(size_t(mw.rank) * size_t(in));
      mw.b.resize(size_t(out) * size_t(mw.rank));
      for (auto& x : mw.a) x = nd(rng);
      for (auto& x : mw.b) x = nd(rng);
    }
  return w;
}

float element(const LoraSlotLayout& l, const std::byte* p, size_t i) {
  if (l.dtype == DType::kF32) {
    float f;
    std::memcpy(&f, p + i * 4, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, p + i * 2, 2);
  return bf16_to_f32(h);
}

float as_slot(DType t, float v) { return t == DType::kBF16 ? bf16_to_f32(f32_to_bf16(v)) : v; }

class LoraSlotImageTest : public ::testing::TestWithParam<DType> {};

TEST_P(LoraSlotImageTest, ImageHoldsEachModuleAtItsOffsetPaddedWithZeros) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE(testing::seed_note(seed));
  std::mt19937_64 rng(seed);
  const ModelConfig c = small_config();
  const int32_t R = 8;
  auto layout = LoraSlotLayout::make(c, R, GetParam());
  ASSERT_TRUE(layout.ok()) << layout.error().to_string();
  const LoraSlotLayout& l = *layout;
  // Module-major, aligned, no overlap, inside the slot.
  size_t prev_end = 0;
  for (int m = 0; m < kNumLinearModules; ++m)
    for (int layer = 0; layer < l.num_layers; ++layer) {
      const size_t i = l.index(layer, LinearModule(m));
      EXPECT_EQ(l.a_offset[i] % 16, 0u);
      EXPECT_EQ(l.b_offset[i] % 16, 0u);
      EXPECT_GE(l.a_offset[i], prev_end);
      EXPECT_GE(l.b_offset[i], l.a_offset[i] + size_t(R) * size_t(l.in[m]) * l.element_bytes());
      prev_end = l.b_offset[i] + size_t(l.out[m]) * size_t(R) * l.element_bytes();
    }
  EXPECT_LE(prev_end, l.slot_bytes);
  EXPECT_EQ(l.slot_bytes % 16, 0u);

  // Ranks from 0 (untargeted) to R; every module's bytes checked.
  const LoraWeights w = random_adapter(c, [&](int, int) { return int32_t(rng() % (R + 1)); }, rng);
  ASSERT_TRUE(check_fits(l, w).ok());
  const ByteSpan span = used_span(l, w);
  std::vector<std::byte> image(image_bytes(l, span), std::byte{0x7f});  // 0x7f7f...: not zero, not the weights
  write_slot_image(l, w, image);
  for (int layer = 0; layer < l.num_layers; ++layer)
    for (int m = 0; m < kNumLinearModules; ++m) {
      const LoraModuleWeights& mw = w.at(layer, LinearModule(m));
      const size_t i = l.index(layer, LinearModule(m));
      EXPECT_EQ(image_ranks(l, span, image.data())[i], mw.rank);
      EXPECT_EQ(image_scales(l, span, image.data())[i], mw.scale);
      if (l.a_offset[i] < span.begin || l.a_offset[i] >= span.end) {
        EXPECT_EQ(mw.rank, 0) << "a targeted module outside the span: layer " << layer << " module " << m;
        continue;
      }
      // Within the span every byte is written: untargeted modules there are zero.
      const std::byte* a = image.data() + (l.a_offset[i] - span.begin);
      for (int32_t r = 0; r < R; ++r)
        for (int64_t k = 0; k < l.in[m]; ++k) {
          const float want = r < mw.rank ? as_slot(l.dtype, mw.a[size_t(r) * size_t(l.in[m]) + size_t(k)]) : 0.0f;
          ASSERT_EQ(element(l, a, size_t(r) * size_t(l.in[m]) + size_t(k)), want)
              << "A layer " << layer << " module " << m << " row " << r << " col " << k;
        }
      const std::byte* b = image.data() + (l.b_offset[i] - span.begin);
      for (int64_t o = 0; o < l.out[m]; ++o)
        for (int32_t r = 0; r < R; ++r) {
          const float want = r < mw.rank ? as_slot(l.dtype, mw.b[size_t(o) * size_t(mw.rank) + size_t(r)]) : 0.0f;
          ASSERT_EQ(element(l, b, size_t(o) * size_t(R) + size_t(r)), want)
              << "B layer " << layer << " module " << m << " row " << o << " col " << r;
        }
    }
}

TEST_P(LoraSlotImageTest, SpanCoversExactlyTheTargetedModules) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE(testing::seed_note(seed));
  std::mt19937_64 rng(seed);
  const ModelConfig c = small_config();
  auto layout = LoraSlotLayout::make(c, 4, GetParam());
  ASSERT_TRUE(layout.ok());
  const LoraSlotLayout& l = *layout;
  const auto end_of = [&](int layer, int m) {
    return l.b_offset[l.index(layer, LinearModule(m))] + size_t(l.out[m]) * 4 * l.element_bytes();
  };
  // q, k, v, o on every layer: from q of layer 0 to o of the last layer.
  const LoraWeights qkvo = random_adapter(c, [](int, int m) { return m <= int(LinearModule::kO) ? 4 : 0; }, rng);
  ByteSpan s = used_span(l, qkvo);
  EXPECT_EQ(s.begin, l.a_offset[l.index(0, LinearModule::kQ)]);
  EXPECT_EQ(s.end, end_of(l.num_layers - 1, int(LinearModule::kO)));
  // One module of one layer: just its A and B.
  const LoraWeights one = random_adapter(c, [](int layer, int m) { return layer == 1 && m == 5 ? 2 : 0; }, rng);
  s = used_span(l, one);
  EXPECT_EQ(s.begin, l.a_offset[l.index(1, LinearModule(5))]);
  EXPECT_EQ(s.end, end_of(1, 5));
  // Its image holds that span and the tables, nothing more.
  EXPECT_EQ(image_bytes(l, s), (s.size() + 15) / 16 * 16 + l.table_entries() * 8);
  // Nothing targeted: an empty span, an image of the tables alone.
  const LoraWeights none = random_adapter(c, [](int, int) { return 0; }, rng);
  s = used_span(l, none);
  EXPECT_EQ(s.size(), 0u);
  std::vector<std::byte> image(image_bytes(l, s), std::byte{0x7f});
  write_slot_image(l, none, image);
  for (size_t i = 0; i < l.table_entries(); ++i) EXPECT_EQ(image_ranks(l, s, image.data())[i], 0);
}

TEST_P(LoraSlotImageTest, AdaptersThatDoNotFitAreRefusedByName) {
  std::mt19937_64 rng(1);
  const ModelConfig c = small_config();
  auto layout = LoraSlotLayout::make(c, 4, GetParam());
  ASSERT_TRUE(layout.ok());
  LoraWeights big = random_adapter(c, [](int layer, int m) { return layer == 2 && m == 6 ? 5 : 1; }, rng);
  big.name = "too-big";
  Status st = check_fits(*layout, big);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::kResourceExhausted);
  EXPECT_NE(st.error().message.find("too-big"), std::string::npos) << st.error().to_string();
  EXPECT_NE(st.error().message.find("layer 2 down_proj"), std::string::npos) << st.error().to_string();

  LoraWeights torn = random_adapter(c, [](int, int) { return 2; }, rng);
  torn.at(1, LinearModule::kV).b.pop_back();
  st = check_fits(*layout, torn);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(st.error().message.find("layer 1 v_proj"), std::string::npos) << st.error().to_string();

  LoraWeights short_model = random_adapter(c, [](int, int) { return 1; }, rng);
  short_model.num_layers = 2;
  short_model.modules.resize(2 * kNumLinearModules);
  EXPECT_FALSE(check_fits(*layout, short_model).ok());
}

TEST(LoraSlotLayout, EqualShapesShareAnIdAndOthersDoNot) {
  const ModelConfig c = small_config();
  auto a = LoraSlotLayout::make(c, 8, DType::kBF16), b = LoraSlotLayout::make(c, 8, DType::kBF16);
  auto f32 = LoraSlotLayout::make(c, 8, DType::kF32), r16 = LoraSlotLayout::make(c, 16, DType::kBF16);
  ASSERT_TRUE(a.ok() && b.ok() && f32.ok() && r16.ok());
  EXPECT_EQ(a->id, b->id);
  EXPECT_NE(a->id, f32->id);
  EXPECT_NE(a->id, r16->id);
  EXPECT_FALSE(LoraSlotLayout::make(c, 0, DType::kBF16).ok());
  EXPECT_FALSE(LoraSlotLayout::make(c, 8, DType::kF16).ok());
}

INSTANTIATE_TEST_SUITE_P(Dtypes, LoraSlotImageTest, ::testing::Values(DType::kF32, DType::kBF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace myriad::gpu
