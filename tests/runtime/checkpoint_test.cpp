// Checkpoint::load on the shared fixtures (shapes, bit-exact bytes, ties,
// biases), sharded loading, and the checkpoint-level hostile cases.
#include "runtime/checkpoint.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include "test_fixtures.h"

using myriad::testing::fixtures_dir;

namespace myriad {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;


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
  const std::string dir = fixtures_dir() + "/" + name;
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
  auto cfg = load_model_config(fixtures_dir() + "/tiny-llama");
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
  auto orig = Checkpoint::load(fixtures_dir() + "/tiny-llama");
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

// An editable copy of a fixture's tensors, written out as a model folder.
struct EditableModel {
  struct T {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<std::byte> bytes;
  };
  std::vector<T> tensors;
  std::string config_text;

  static EditableModel of(const std::string& fixture) {
    EditableModel m;
    const std::string dir = fixtures_dir() + "/" + fixture;
    auto f = SafetensorsFile::open(dir + "/model.safetensors");
    EXPECT_TRUE(f.ok());
    for (const TensorView& t : (*f)->tensors())
      m.tensors.push_back({t.name, t.dtype, t.shape, std::vector<std::byte>(t.data, t.data + t.nbytes)});
    m.config_text = read_bytes(dir + "/config.json");
    return m;
  }
  T* find(const std::string& name) {
    for (auto& t : tensors)
      if (t.name == name) return &t;
    return nullptr;
  }
  void erase(const std::string& name) {
    std::erase_if(tensors, [&](const T& t) { return t.name == name; });
  }
  void write(const std::string& dir) const {
    std::vector<TensorToWrite> w;
    for (const auto& t : tensors) w.push_back({t.name, t.dtype, t.shape, t.bytes});
    auto st = write_safetensors(dir + "/model.safetensors", w);
    EXPECT_TRUE(st.ok()) << st.error().to_string();
    write_text(dir + "/config.json", config_text);
  }
};

void expect_load_error(const std::string& dir, ErrorCode code, std::initializer_list<std::string> needles) {
  auto ck = Checkpoint::load(dir);
  ASSERT_FALSE(ck.ok()) << "expected an error mentioning " << *needles.begin();
  EXPECT_EQ(ck.error().code, code) << ck.error().to_string();
  for (const auto& n : needles) EXPECT_NE(ck.error().message.find(n), std::string::npos) << ck.error().message;
}

TEST(CheckpointHostile, MissingTensor) {
  TempDir tmp;
  auto m = EditableModel::of("tiny-llama");
  m.erase("model.layers.1.mlp.up_proj.weight");
  m.write(tmp.str());
  expect_load_error(tmp.str(), ErrorCode::kBadFile,
                    {tmp.str(), "'model.layers.1.mlp.up_proj.weight'", "[176, 64]", "missing"});
}

TEST(CheckpointHostile, WrongShape) {
  TempDir tmp;
  auto m = EditableModel::of("tiny-llama");
  m.find("model.layers.0.self_attn.k_proj.weight")->shape = {64, 32};  // transposed
  m.write(tmp.str());
  expect_load_error(tmp.str(), ErrorCode::kBadFile,
                    {tmp.str() + "/model.safetensors", "'model.layers.0.self_attn.k_proj.weight'", "[64, 32]", "[32, 64]"});
}

TEST(CheckpointHostile, ConfigDisagreesWithWeights) {
  TempDir tmp;
  auto m = EditableModel::of("tiny-llama");
  json c = json::parse(m.config_text);
  c["vocab_size"] = 1024;
  m.config_text = c.dump();
  m.write(tmp.str());
  expect_load_error(tmp.str(), ErrorCode::kBadFile, {"'model.embed_tokens.weight'", "[512, 64]", "[1024, 64]"});
}

TEST(CheckpointHostile, UnexpectedTensorButInvFreqIgnored) {
  TempDir tmp;
  auto m = EditableModel::of("tiny-llama");
  m.tensors.push_back({"model.layers.0.self_attn.rotary_emb.inv_freq", DType::kF32, {8}, std::vector<std::byte>(32)});
  m.write(tmp.str());
  ASSERT_TRUE(Checkpoint::load(tmp.str()).ok());
  m.tensors.push_back({"model.layers.0.self_attn.q_proj.bias", DType::kF32, {64}, std::vector<std::byte>(256)});
  m.write(tmp.str());
  expect_load_error(tmp.str(), ErrorCode::kBadFile,
                    {tmp.str() + "/model.safetensors", "unexpected tensor 'model.layers.0.self_attn.q_proj.bias'"});
}

TEST(CheckpointHostile, MixedLinearDtypes) {
  TempDir tmp;
  auto m = EditableModel::of("tiny-llama");
  auto* t = m.find("model.layers.1.mlp.down_proj.weight");
  t->dtype = DType::kBF16;
  t->bytes.resize(t->bytes.size() / 2);
  m.write(tmp.str());
  expect_load_error(tmp.str(), ErrorCode::kBadFile, {"'model.layers.1.mlp.down_proj.weight'", "BF16", "F32"});
}

// A poisoned weight is refused at load, naming the file, the tensor, the
// element and what it is; a checkpoint otherwise valid, so nothing else is
// at fault. Covers a linear weight (f32) and a norm stored as bf16.
TEST(CheckpointHostile, NanOrInfinityInAnyWeight) {
  {
    TempDir tmp;
    auto m = EditableModel::of("tiny-llama");
    const float inf = -std::numeric_limits<float>::infinity();
    std::memcpy(m.find("model.layers.1.self_attn.o_proj.weight")->bytes.data() + 4 * 77, &inf, 4);
    m.write(tmp.str());
    expect_load_error(tmp.str(), ErrorCode::kBadFile,
                      {tmp.str() + "/model.safetensors", "'model.layers.1.self_attn.o_proj.weight'", "element 77",
                       "infinite"});
  }
  {
    TempDir tmp;
    auto m = EditableModel::of("tiny-qwen2");
    auto* t = m.find("model.layers.0.input_layernorm.weight");
    std::vector<std::byte> bf(t->bytes.size() / 2);
    for (size_t i = 0; i < bf.size() / 2; ++i) {
      float f;
      std::memcpy(&f, t->bytes.data() + 4 * i, 4);
      const uint16_t h = f32_to_bf16(i == 9 ? std::numeric_limits<float>::quiet_NaN() : f);
      std::memcpy(bf.data() + 2 * i, &h, 2);
    }
    t->dtype = DType::kBF16;
    t->bytes = bf;
    m.write(tmp.str());
    expect_load_error(tmp.str(), ErrorCode::kBadFile,
                      {"'model.layers.0.input_layernorm.weight'", "element 9", "NaN"});
  }
}

TEST(CheckpointHostile, NormsMayUseAnotherDtype) {
  TempDir tmp;
  auto m = EditableModel::of("tiny-llama");
  auto* t = m.find("model.norm.weight");
  std::vector<std::byte> bf(t->bytes.size() / 2);
  for (size_t i = 0; i < bf.size() / 2; ++i) {
    float f;
    std::memcpy(&f, t->bytes.data() + 4 * i, 4);
    const uint16_t h = f32_to_bf16(f);
    std::memcpy(bf.data() + 2 * i, &h, 2);
  }
  t->dtype = DType::kBF16;
  t->bytes = bf;
  m.write(tmp.str());
  auto ck = Checkpoint::load(tmp.str());
  ASSERT_TRUE(ck.ok()) << ck.error().to_string();
  EXPECT_EQ((*ck)->dtype(), DType::kF32);
  EXPECT_EQ((*ck)->final_norm().dtype, DType::kBF16);
}

TEST(CheckpointHostile, TiedModelWithLmHeadCopy) {
  TempDir tmp;
  auto m = EditableModel::of("tiny-qwen2");
  auto embed = *m.find("model.embed_tokens.weight");
  m.tensors.push_back({"lm_head.weight", embed.dtype, embed.shape, embed.bytes});
  m.write(tmp.str());
  ASSERT_TRUE(Checkpoint::load(tmp.str()).ok());  // an identical copy is harmless
  m.find("lm_head.weight")->bytes[5] ^= std::byte{1};
  m.write(tmp.str());
  expect_load_error(tmp.str(), ErrorCode::kBadFile, {"'lm_head.weight'", "tie_word_embeddings"});
}

TEST(CheckpointHostile, Qwen2WithoutBiases) {
  TempDir tmp;
  auto m = EditableModel::of("tiny-qwen2");
  m.erase("model.layers.0.self_attn.v_proj.bias");
  m.write(tmp.str());
  expect_load_error(tmp.str(), ErrorCode::kBadFile, {"'model.layers.0.self_attn.v_proj.bias'", "missing"});
}

TEST(CheckpointHostile, NoWeightsOrNoConfig) {
  TempDir tmp;
  expect_load_error(tmp.str(), ErrorCode::kNotFound, {tmp.str() + "/config.json"});
  fs::copy_file(fixtures_dir() + "/tiny-llama/config.json", tmp.str() + "/config.json");
  expect_load_error(tmp.str(), ErrorCode::kNotFound, {"model.safetensors"});
}

TEST(CheckpointHostile, TruncatedShard) {
  TempDir tmp;
  EditableModel::of("tiny-llama").write(tmp.str());
  fs::resize_file(tmp.str() + "/model.safetensors", fs::file_size(tmp.str() + "/model.safetensors") - 100);
  expect_load_error(tmp.str(), ErrorCode::kBadFile, {tmp.str() + "/model.safetensors", "tensor 'model.norm.weight'", "truncated"});
}

TEST(CheckpointHostile, BadConfigIsReportedByField) {
  TempDir tmp;
  auto m = EditableModel::of("tiny-llama");
  json c = json::parse(m.config_text);
  c["num_key_value_heads"] = 3;
  m.config_text = c.dump();
  m.write(tmp.str());
  expect_load_error(tmp.str(), ErrorCode::kBadFile, {tmp.str() + "/config.json", "num_key_value_heads", "3"});
}

class ShardedHostile : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ck = Checkpoint::load(fixtures_dir() + "/tiny-llama");
    ASSERT_TRUE(ck.ok());
    index_ = write_shards(**ck, tmp_.str(), 2, [](size_t i) { return int(i % 2); });
  }
  void rewrite_index() { write_text(tmp_.str() + "/model.safetensors.index.json", index_.dump()); }
  TempDir tmp_;
  json index_;
};

TEST_F(ShardedHostile, ShardOutsideTheFolder) {
  index_["weight_map"]["model.norm.weight"] = "../model-00001-of-00002.safetensors";
  rewrite_index();
  expect_load_error(tmp_.str(), ErrorCode::kBadFile, {"model.safetensors.index.json", "'model.norm.weight'", "'../"});
  index_["weight_map"]["model.norm.weight"] = "/etc/passwd";
  rewrite_index();
  expect_load_error(tmp_.str(), ErrorCode::kBadFile, {"'/etc/passwd'"});
}

TEST_F(ShardedHostile, IndexPointsAtTheWrongShard) {
  const std::string name = "model.layers.0.mlp.gate_proj.weight";
  const std::string was = index_["weight_map"][name];
  index_["weight_map"][name] = was == "model-00001-of-00002.safetensors" ? "model-00002-of-00002.safetensors"
                                                                         : "model-00001-of-00002.safetensors";
  rewrite_index();
  expect_load_error(tmp_.str(), ErrorCode::kBadFile, {"'" + name + "'", was});
}

TEST_F(ShardedHostile, TensorNotListedOrListedButAbsent) {
  index_["weight_map"].erase("model.norm.weight");
  rewrite_index();
  expect_load_error(tmp_.str(), ErrorCode::kBadFile, {"'model.norm.weight'", "not listed"});
  index_["weight_map"]["model.norm.weight"] = "model-00001-of-00002.safetensors";
  index_["weight_map"]["model.extra.weight"] = "model-00001-of-00002.safetensors";
  rewrite_index();
  // model.norm.weight may be in either shard; the extra one is in none.
  auto ck = Checkpoint::load(tmp_.str());
  ASSERT_FALSE(ck.ok());
}

TEST_F(ShardedHostile, MissingShardAndBadIndex) {
  fs::remove(tmp_.str() + "/model-00002-of-00002.safetensors");
  expect_load_error(tmp_.str(), ErrorCode::kNotFound, {"model-00002-of-00002.safetensors"});
  write_text(tmp_.str() + "/model.safetensors.index.json", "{\"weight_map\": 3}");
  expect_load_error(tmp_.str(), ErrorCode::kBadFile, {"model.safetensors.index.json", "weight_map"});
  write_text(tmp_.str() + "/model.safetensors.index.json", "not json");
  expect_load_error(tmp_.str(), ErrorCode::kBadFile, {"model.safetensors.index.json"});
}

}  // namespace
}  // namespace myriad
