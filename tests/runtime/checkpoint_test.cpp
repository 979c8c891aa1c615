// Checkpoint::load on the shared fixtures (shapes, bit-exact bytes, ties,
// biases), sharded loading, and the checkpoint-level hostile cases.
#include "runtime/checkpoint.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

namespace myriad {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string fixtures() {
  if (const char* e = std::getenv("MYRIAD_FIXTURES")) return e;
  return MYRIAD_FIXTURES;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// Independent reading of a safetensors file: name -> (dtype, shape, bytes).
struct RawTensor {
  std::string dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};
std::map<std::string, RawTensor> read_raw(const std::string& path) {
  const std::string b = read_bytes(path);
  uint64_t n = 0;
  std::memcpy(&n, b.data(), 8);
  json h = json::parse(b.substr(8, n));
  std::map<std::string, RawTensor> out;
  for (auto& [k, v] : h.items()) {
    if (k == "__metadata__") continue;
    const uint64_t begin = v["data_offsets"][0], end = v["data_offsets"][1];
    out[k] = {v["dtype"], v["shape"].get<std::vector<int64_t>>(), b.substr(8 + n + begin, end - begin)};
  }
  return out;
}

class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = fs::temp_directory_path() / ("myriad_ckpt_test_" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

void check_fixture(const std::string& name, bool tied, bool biases) {
  const std::string dir = fixtures() + "/" + name;
  auto ck = Checkpoint::load(dir);
  ASSERT_TRUE(ck.ok()) << ck.error().to_string();
  const Checkpoint& c = **ck;
  const ModelConfig& cfg = c.config();
  EXPECT_EQ(cfg.hidden_size, 64);
  EXPECT_EQ(cfg.num_layers, 2);
  EXPECT_EQ(cfg.num_heads, 4);
  EXPECT_EQ(cfg.num_kv_heads, 2);
  EXPECT_EQ(cfg.head_dim, 16);
  EXPECT_EQ(cfg.intermediate_size, 176);
  EXPECT_EQ(cfg.vocab_size, 512);
  EXPECT_EQ(cfg.max_position_embeddings, 256);
  EXPECT_FLOAT_EQ(cfg.rope_theta, 10000.0f);
  EXPECT_FLOAT_EQ(cfg.rms_norm_eps, 1e-6f);
  EXPECT_EQ(cfg.tie_word_embeddings, tied);
  EXPECT_EQ(cfg.attention_bias, biases);
  EXPECT_FALSE(cfg.o_proj_bias);
  EXPECT_FALSE(cfg.rope_scaling.has_value());
  EXPECT_EQ(cfg.bos_token_ids, std::vector<int64_t>{1});
  EXPECT_EQ(cfg.eos_token_ids, std::vector<int64_t>{2});
  EXPECT_EQ(c.generation_config().eos_token_ids, std::vector<int64_t>{2});
  EXPECT_EQ(c.generation_config().bos_token_id, 1);
  EXPECT_EQ(c.dtype(), DType::kF32);

  // Every tensor: right shape, and bytes identical to an independent read.
  const auto raw = read_raw(dir + "/model.safetensors");
  const auto expected = expected_tensors(cfg);
  EXPECT_EQ(raw.size(), expected.size());
  for (const ExpectedTensor& e : expected) {
    const TensorView* t = c.find(e.name);
    ASSERT_NE(t, nullptr) << e.name;
    EXPECT_EQ(t->shape, e.shape) << e.name;
    EXPECT_EQ(t->dtype, DType::kF32) << e.name;
    ASSERT_TRUE(raw.count(e.name)) << e.name;
    const RawTensor& r = raw.at(e.name);
    EXPECT_EQ(r.dtype, "F32");
    EXPECT_EQ(r.shape, e.shape);
    ASSERT_EQ(t->nbytes, r.bytes.size()) << e.name;
    EXPECT_EQ(std::memcmp(t->data, r.bytes.data(), t->nbytes), 0) << e.name;
    EXPECT_EQ(t->numel() * 4, int64_t(t->nbytes));
  }

  // Views wired to the right tensors.
  EXPECT_EQ(c.embed_tokens().name, "model.embed_tokens.weight");
  EXPECT_EQ(c.lm_head().name, tied ? "model.embed_tokens.weight" : "lm_head.weight");
  EXPECT_EQ(c.final_norm().name, "model.norm.weight");
  ASSERT_EQ(c.layers().size(), 2u);
  for (size_t l = 0; l < 2; ++l) {
    const LayerWeights& w = c.layers()[l];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    EXPECT_EQ(w.input_norm.name, p + "input_layernorm.weight");
    EXPECT_EQ(w.post_attn_norm.name, p + "post_attention_layernorm.weight");
    for (int m = 0; m < kNumLinearModules; ++m) {
      const auto mod = LinearModule(m);
      const TensorView& t = w.linear(mod);
      EXPECT_NE(t.name.find(linear_module_name(mod)), std::string::npos);
      EXPECT_EQ(t.name.rfind(p, 0), 0u) << t.name;
      auto [o, i] = linear_module_shape(cfg, mod);
      EXPECT_EQ(t.shape, (std::vector<int64_t>{o, i}));
    }
    EXPECT_EQ(w.q.shape, (std::vector<int64_t>{64, 64}));
    EXPECT_EQ(w.k.shape, (std::vector<int64_t>{32, 64}));
    EXPECT_EQ(w.down.shape, (std::vector<int64_t>{64, 176}));
    if (biases) {
      EXPECT_EQ(w.q_bias.shape, std::vector<int64_t>{64});
      EXPECT_EQ(w.k_bias.shape, std::vector<int64_t>{32});
      EXPECT_EQ(w.v_bias.name, p + "self_attn.v_proj.bias");
    } else {
      EXPECT_EQ(w.q_bias.data, nullptr);
    }
    EXPECT_EQ(w.o_bias.data, nullptr);
    // Norm weights are 1 + N(0, 0.1): all within 0.6 of 1, mean near 1.
    double sum = 0;
    for (int64_t i = 0; i < w.input_norm.numel(); ++i) {
      EXPECT_NEAR(w.input_norm.at(size_t(i)), 1.0f, 0.6f);
      sum += w.input_norm.at(size_t(i));
    }
    EXPECT_NEAR(sum / 64, 1.0, 0.06);
  }
  // Linear weights ~ N(0, 0.08): the std over a big tensor is near 0.08.
  const TensorView& e = c.embed_tokens();
  double s = 0, s2 = 0;
  for (int64_t i = 0; i < e.numel(); ++i) {
    const double x = e.at(size_t(i));
    s += x;
    s2 += x * x;
  }
  const double mean = s / double(e.numel());
  EXPECT_NEAR(mean, 0.0, 0.003);
  EXPECT_NEAR(std::sqrt(s2 / double(e.numel()) - mean * mean), 0.08, 0.003);
}

TEST(Checkpoint, LoadsTinyLlama) { check_fixture("tiny-llama", /*tied=*/false, /*biases=*/false); }
TEST(Checkpoint, LoadsTinyQwen2) { check_fixture("tiny-qwen2", /*tied=*/true, /*biases=*/true); }

TEST(Checkpoint, ExpectedTensorsOfTinyLlama) {
  auto cfg = load_model_config(fixtures() + "/tiny-llama");
  ASSERT_TRUE(cfg.ok()) << cfg.error().to_string();
  const auto e = expected_tensors(*cfg);
  ASSERT_EQ(e.size(), 1u + 2u * 9u + 1u + 1u);
  EXPECT_EQ(e.front().name, "model.embed_tokens.weight");
  EXPECT_EQ(e.back().name, "lm_head.weight");
  EXPECT_EQ(linear_module_shape(*cfg, LinearModule::kO), (std::pair<int64_t, int64_t>{64, 64}));
  EXPECT_EQ(linear_module_shape(*cfg, LinearModule::kV), (std::pair<int64_t, int64_t>{32, 64}));
  EXPECT_EQ(linear_module_shape(*cfg, LinearModule::kUp), (std::pair<int64_t, int64_t>{176, 64}));
  EXPECT_STREQ(linear_module_name(LinearModule::kGate), "gate_proj");
}

// Writes the tensors of `src` (a loaded checkpoint) into `dir` as shards:
// tensor i goes to shard shard_of(i). Returns the index JSON.
json write_shards(const Checkpoint& src, const std::string& dir, int num_shards,
                  const std::function<int(size_t)>& shard_of) {
  std::vector<std::vector<TensorToWrite>> shards(static_cast<size_t>(num_shards));
  std::vector<const TensorView*> all;
  for (const auto& f : src.shards())
    for (const TensorView& t : f->tensors()) all.push_back(&t);
  json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", json::object()}};
  for (size_t i = 0; i < all.size(); ++i) {
    const TensorView& t = *all[i];
    const int s = shard_of(i);
    shards[size_t(s)].push_back({t.name, t.dtype, t.shape, {t.data, t.nbytes}});
    char name[64];
    std::snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, num_shards);
    index["weight_map"][t.name] = name;
  }
  for (int s = 0; s < num_shards; ++s) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, num_shards);
    auto st = write_safetensors(dir + "/" + name, shards[size_t(s)]);
    EXPECT_TRUE(st.ok()) << st.error().to_string();
  }
  fs::copy_file(src.dir() + "/config.json", dir + "/config.json");
  write_text(dir + "/model.safetensors.index.json", index.dump(2));
  return index;
}

TEST(Checkpoint, LoadsTwoShardCopyOfTinyLlama) {
  auto orig = Checkpoint::load(fixtures() + "/tiny-llama");
  ASSERT_TRUE(orig.ok()) << orig.error().to_string();
  TempDir tmp;
  write_shards(**orig, tmp.str(), 2, [](size_t i) { return int(i % 2); });
  auto ck = Checkpoint::load(tmp.str());
  ASSERT_TRUE(ck.ok()) << ck.error().to_string();
  EXPECT_EQ((*ck)->shards().size(), 2u);
  for (const ExpectedTensor& e : expected_tensors((*orig)->config())) {
    const TensorView* a = (*orig)->find(e.name);
    const TensorView* b = (*ck)->find(e.name);
    ASSERT_NE(b, nullptr) << e.name;
    EXPECT_EQ(a->shape, b->shape);
    ASSERT_EQ(a->nbytes, b->nbytes);
    EXPECT_EQ(std::memcmp(a->data, b->data, a->nbytes), 0) << e.name;
    // Our writer keeps 8-byte alignment of the data buffer.
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b->data) % 4, 0u) << e.name;
  }
  EXPECT_EQ((*ck)->layers()[1].down.name, "model.layers.1.mlp.down_proj.weight");
  EXPECT_EQ(std::memcmp((*ck)->lm_head().data, (*orig)->lm_head().data, (*orig)->lm_head().nbytes), 0);
}

}  // namespace
}  // namespace myriad
