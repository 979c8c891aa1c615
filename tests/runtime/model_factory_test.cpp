// make_model: shapes, exact deterministic contents, sharding, custom
// configs, tokenizer handling.
#include "runtime/model_factory.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "runtime/checkpoint.h"
#include "test_fixtures.h"

using myriad::testing::fixtures_dir;

namespace myriad {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;


std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = fs::temp_directory_path() / ("myriad_factory_test_" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string sub(const std::string& s) const { return (path_ / s).string(); }

 private:
  fs::path path_;
};

TEST(ModelFactory, Shapes) {
  auto tiny = model_shape("tiny");
  ASSERT_TRUE(tiny.ok());
  EXPECT_EQ(tiny->hidden_size, 64);
  EXPECT_EQ(tiny->num_layers, 2);
  EXPECT_EQ(tiny->num_heads, 4);
  EXPECT_EQ(tiny->num_kv_heads, 2);
  EXPECT_EQ(tiny->intermediate_size, 176);
  EXPECT_EQ(tiny->vocab_size, kBuiltinTokenizerVocab);
  auto l110 = model_shape("llama-110m");
  ASSERT_TRUE(l110.ok());
  EXPECT_EQ(l110->hidden_size, 768);
  EXPECT_EQ(l110->num_layers, 12);
  EXPECT_EQ(l110->num_kv_heads, 12);
  EXPECT_EQ(l110->intermediate_size, 2048);
  EXPECT_EQ(l110->vocab_size, 32000);
  auto tl = model_shape("tinyllama-1.1b");
  ASSERT_TRUE(tl.ok());
  EXPECT_EQ(tl->hidden_size, 2048);
  EXPECT_EQ(tl->num_layers, 22);
  EXPECT_EQ(tl->num_heads, 32);
  EXPECT_EQ(tl->num_kv_heads, 4);
  EXPECT_EQ(tl->intermediate_size, 5632);
  auto l3 = model_shape("llama3-8b");
  ASSERT_TRUE(l3.ok());
  EXPECT_EQ(l3->hidden_size, 4096);
  EXPECT_EQ(l3->num_layers, 32);
  EXPECT_EQ(l3->num_kv_heads, 8);
  EXPECT_EQ(l3->intermediate_size, 14336);
  EXPECT_EQ(l3->vocab_size, 128256);
  EXPECT_FLOAT_EQ(l3->rope_theta, 500000.0f);
  ASSERT_TRUE(l3->rope_scaling.has_value());
  EXPECT_EQ(l3->rope_scaling->type, "llama3");
  // The parameter count of Llama 3 8B.
  int64_t params = 0;
  for (const auto& e : expected_tensors(*l3)) {
    int64_t n = 1;
    for (int64_t d : e.shape) n *= d;
    params += n;
  }
  EXPECT_EQ(params, 8030261248);
  // Llama-2-7B, as S-LoRA measured it: multi-head attention, 6.74 B parameters.
  auto l7 = model_shape("llama-7b");
  ASSERT_TRUE(l7.ok());
  EXPECT_EQ(l7->num_kv_heads, l7->num_heads);
  EXPECT_EQ(l7->max_position_embeddings, 4096);
  params = 0;
  for (const auto& e : expected_tensors(*l7)) {
    int64_t n = 1;
    for (int64_t d : e.shape) n *= d;
    params += n;
  }
  EXPECT_EQ(params, 6738415616);
  auto bad = model_shape("llama-13b");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("llama-13b"), std::string::npos);
}

TEST(ModelFactory, ConfigJsonRoundTrips) {
  for (const char* s : {"tiny", "llama3-8b"}) {
    auto c = model_shape(s);
    ASSERT_TRUE(c.ok());
    const std::string text = model_config_to_json(*c);
    auto back = parse_model_config(text, "roundtrip");
    ASSERT_TRUE(back.ok()) << back.error().to_string();
    EXPECT_EQ(back->hidden_size, c->hidden_size);
    EXPECT_EQ(back->num_kv_heads, c->num_kv_heads);
    EXPECT_EQ(back->rope_theta, c->rope_theta);
    EXPECT_EQ(back->rms_norm_eps, c->rms_norm_eps);
    EXPECT_EQ(back->rope_scaling.has_value(), c->rope_scaling.has_value());
    if (c->rope_scaling) {
      EXPECT_EQ(back->rope_scaling->factor, c->rope_scaling->factor);
      EXPECT_EQ(back->rope_scaling->original_max_position_embeddings, 8192);
    }
  }
  EXPECT_NE(model_config_to_json(*model_shape("tiny")).find("\"rms_norm_eps\": 1e-05"), std::string::npos);
}

TEST(ModelFactory, RandomWeightsAreStandardNormalScaled) {
  const int n = 200000;
  double s = 0, s2 = 0;
  int within1 = 0;
  for (int i = 0; i < n; ++i) {
    const double x = random_weight(7, "t", uint64_t(i), 1.0f);
    s += x;
    s2 += x * x;
    within1 += std::fabs(x) < 1.0;
  }
  const double mean = s / n, var = s2 / n - mean * mean;
  EXPECT_NEAR(mean, 0.0, 0.01);
  EXPECT_NEAR(var, 1.0, 0.015);
  EXPECT_NEAR(double(within1) / n, 0.6827, 0.005);
  EXPECT_NE(random_weight(7, "t", 0, 1.0f), random_weight(8, "t", 0, 1.0f));
  EXPECT_NE(random_weight(7, "t", 0, 1.0f), random_weight(7, "u", 0, 1.0f));
  EXPECT_EQ(random_weight(7, "t", 5, 0.02f), random_weight(7, "t", 5, 1.0f) * 0.02f);
}

// random_lora's A and B are random_weight's streams of "<layer>.<module>.A"
// and ".B", every element (odd and even, each tensor's last), with rank,
// scale and name as asked.
TEST(ModelFactory, RandomLoraElementsAreRandomWeights) {
  const ModelConfig cfg = *model_shape("tiny");
  const auto w = random_lora(cfg, 4, 8.0f, 3, "x", 0.05f);
  ASSERT_EQ(w->name, "x");
  ASSERT_EQ(w->modules.size(), size_t(cfg.num_layers) * kNumLinearModules);
  for (int64_t l = 0; l < cfg.num_layers; ++l)
    for (int m = 0; m < kNumLinearModules; ++m) {
      const LoraModuleWeights& mw = w->at(int(l), LinearModule(m));
      const std::string key = std::to_string(l) + "." + linear_module_name(LinearModule(m));
      ASSERT_EQ(mw.rank, 4);
      ASSERT_EQ(mw.scale, 2.0f);
      for (size_t i = 0; i < mw.a.size(); ++i)
        ASSERT_EQ(mw.a[i], random_weight(3, key + ".A", i, 0.05f)) << key << ".A[" << i << "]";
      for (size_t i = 0; i < mw.b.size(); ++i)
        ASSERT_EQ(mw.b[i], random_weight(3, key + ".B", i, 0.05f)) << key << ".B[" << i << "]";
    }
}

// Every element equals random_weight (rounded to the dtype) or 1 for norms.
void expect_exact_contents(const Checkpoint& ck, uint64_t seed) {
  for (const auto& e : expected_tensors(ck.config())) {
    const TensorView* t = ck.find(e.name);
    ASSERT_NE(t, nullptr) << e.name;
    const bool norm = e.name.find("norm.weight") != std::string::npos;
    for (int64_t i = 0; i < t->numel(); ++i) {
      float want = norm ? 1.0f : random_weight(seed, e.name, uint64_t(i), 0.02f);
      if (t->dtype == DType::kBF16) want = bf16_to_f32(f32_to_bf16(want));
      if (t->at(size_t(i)) != want) {
        ADD_FAILURE() << e.name << "[" << i << "] = " << t->at(size_t(i)) << ", want " << want;
        return;
      }
    }
  }
}

TEST(ModelFactory, TinyF32HasExactDeterministicContents) {
  TempDir tmp;
  MakeModelOptions o;
  o.shape = "tiny";
  o.seed = 42;
  o.dtype = DType::kF32;
  o.out_dir = tmp.sub("m");
  ASSERT_TRUE(make_model(o).ok());
  auto ck = Checkpoint::load(o.out_dir);
  ASSERT_TRUE(ck.ok()) << ck.error().to_string();
  EXPECT_EQ((*ck)->dtype(), DType::kF32);
  EXPECT_EQ((*ck)->config().vocab_size, kBuiltinTokenizerVocab);
  EXPECT_EQ((*ck)->config().torch_dtype, "float32");
  EXPECT_EQ((*ck)->generation_config().eos_token_ids, (std::vector<int64_t>{257, 259}));
  expect_exact_contents(**ck, 42);
  // Weight statistics: N(0, 0.02).
  const TensorView& e = (*ck)->embed_tokens();
  double s = 0, s2 = 0;
  for (int64_t i = 0; i < e.numel(); ++i) {
    s += e.at(size_t(i));
    s2 += double(e.at(size_t(i))) * e.at(size_t(i));
  }
  EXPECT_NEAR(std::sqrt(s2 / double(e.numel())), 0.02, 0.0005);
}

TEST(ModelFactory, SameSeedSameBytesAnyThreadCount) {
  TempDir tmp;
  MakeModelOptions o;
  o.seed = 3;
  o.dtype = DType::kBF16;
  o.threads = 1;
  o.out_dir = tmp.sub("a");
  ASSERT_TRUE(make_model(o).ok());
  o.threads = 3;
  o.out_dir = tmp.sub("b");
  ASSERT_TRUE(make_model(o).ok());
  o.seed = 4;
  o.out_dir = tmp.sub("c");
  ASSERT_TRUE(make_model(o).ok());
  const std::string a = slurp(tmp.sub("a/model.safetensors"));
  EXPECT_GT(a.size(), 200000u);
  EXPECT_EQ(a, slurp(tmp.sub("b/model.safetensors")));
  EXPECT_NE(a, slurp(tmp.sub("c/model.safetensors")));
  EXPECT_EQ(slurp(tmp.sub("a/config.json")), slurp(tmp.sub("b/config.json")));
  auto ck = Checkpoint::load(tmp.sub("a"));
  ASSERT_TRUE(ck.ok()) << ck.error().to_string();
  EXPECT_EQ((*ck)->dtype(), DType::kBF16);
  expect_exact_contents(**ck, 3);
}

TEST(ModelFactory, ShardsWithAnIndexWhenOverTheLimit) {
  TempDir tmp;
  MakeModelOptions o;
  o.seed = 9;
  o.dtype = DType::kF32;
  o.out_dir = tmp.sub("one");
  ASSERT_TRUE(make_model(o).ok());
  o.out_dir = tmp.sub("sharded");
  o.max_shard_bytes = 150000;
  ASSERT_TRUE(make_model(o).ok());
  EXPECT_FALSE(fs::exists(tmp.sub("sharded/model.safetensors")));
  const json index = json::parse(slurp(tmp.sub("sharded/model.safetensors.index.json")));
  EXPECT_EQ(index["metadata"]["total_size"].get<int64_t>(), 125760 * 4);
  auto one = Checkpoint::load(tmp.sub("one"));
  auto sh = Checkpoint::load(tmp.sub("sharded"));
  ASSERT_TRUE(one.ok()) << one.error().to_string();
  ASSERT_TRUE(sh.ok()) << sh.error().to_string();
  EXPECT_GE((*sh)->shards().size(), 4u);
  for (const auto& f : (*sh)->shards()) {
    uint64_t bytes = 0;
    for (const auto& t : f->tensors()) bytes += t.nbytes;
    // Only a single tensor larger than the limit may exceed it.
    EXPECT_TRUE(bytes <= 150000 || f->tensors().size() == 1) << f->path();
  }
  for (const auto& e : expected_tensors((*one)->config())) {
    const TensorView* a = (*one)->find(e.name);
    const TensorView* b = (*sh)->find(e.name);
    ASSERT_NE(b, nullptr);
    ASSERT_EQ(a->nbytes, b->nbytes);
    EXPECT_EQ(std::memcmp(a->data, b->data, a->nbytes), 0) << e.name;
  }
  // Re-making into the sharded folder without sharding removes the stale index.
  o.max_shard_bytes = 4'000'000'000ull;
  ASSERT_TRUE(make_model(o).ok());
  EXPECT_FALSE(fs::exists(tmp.sub("sharded/model.safetensors.index.json")));
  EXPECT_TRUE(Checkpoint::load(tmp.sub("sharded")).ok());
}

TEST(ModelFactory, CustomQwen2ConfigWithBiasesAndTies) {
  TempDir tmp;
  auto text = slurp(fixtures_dir() + "/tiny-qwen2/config.json");
  auto cfg = parse_model_config(text, "tiny-qwen2/config.json");
  ASSERT_TRUE(cfg.ok()) << cfg.error().to_string();
  MakeModelOptions o;
  o.config = *cfg;
  o.seed = 5;
  o.dtype = DType::kF32;
  o.out_dir = tmp.sub("q");
  ASSERT_TRUE(make_model(o).ok());
  auto ck = Checkpoint::load(o.out_dir);
  ASSERT_TRUE(ck.ok()) << ck.error().to_string();
  EXPECT_EQ((*ck)->config().model_type, "qwen2");
  EXPECT_TRUE((*ck)->config().tie_word_embeddings);
  EXPECT_EQ((*ck)->lm_head().data, (*ck)->embed_tokens().data);
  EXPECT_EQ((*ck)->layers()[0].q_bias.shape, std::vector<int64_t>{64});
  EXPECT_EQ((*ck)->config().eos_token_ids, std::vector<int64_t>{2});  // kept from the given config
  expect_exact_contents(**ck, 5);
}

TEST(ModelFactory, CopiesAGivenTokenizerAndTakesItsVocab) {
  TempDir tmp;
  MakeModelOptions o;
  o.seed = 1;
  o.out_dir = tmp.sub("m");
  o.tokenizer_dir = fixtures_dir() + "/tokenizers/llama3";
  // A narrow model keeps the 128256-row embedding cheap to generate.
  ModelConfig narrow = *model_shape("tiny");
  narrow.hidden_size = 8;
  narrow.head_dim = 4;
  narrow.num_heads = 2;
  narrow.num_kv_heads = 1;
  narrow.num_layers = 1;
  narrow.intermediate_size = 8;
  o.config = narrow;
  ASSERT_TRUE(make_model(o).ok());
  EXPECT_EQ(slurp(tmp.sub("m/tokenizer.json")), slurp(o.tokenizer_dir + "/tokenizer.json"));
  EXPECT_EQ(slurp(tmp.sub("m/tokenizer_config.json")), slurp(o.tokenizer_dir + "/tokenizer_config.json"));
  auto cfg = load_model_config(o.out_dir);
  ASSERT_TRUE(cfg.ok()) << cfg.error().to_string();
  EXPECT_EQ(cfg->vocab_size, 128256);
  EXPECT_EQ(cfg->bos_token_ids, std::vector<int64_t>{128000});
  EXPECT_EQ(cfg->eos_token_ids, std::vector<int64_t>{128001});
  o.tokenizer_dir = tmp.sub("nowhere");
  auto st = make_model(o);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("nowhere/tokenizer.json"), std::string::npos) << st.error().message;
}

TEST(ModelFactory, BuiltinTokenizerIsByteLevel) {
  const json t = json::parse(builtin_tokenizer_json());
  const json& vocab = t["model"]["vocab"];
  EXPECT_EQ(vocab.size(), 256u);
  EXPECT_EQ(vocab["A"], 65);
  EXPECT_EQ(vocab["\xc4\xa0"], 32);   // 'Ġ' is the space byte
  EXPECT_EQ(vocab["\xc4\x8a"], 10);   // 'Ċ' is newline
  EXPECT_EQ(vocab["\xc4\x80"], 0);    // 'Ā' is byte 0
  EXPECT_EQ(vocab["\xc3\xbf"], 255);  // 'ÿ'
  EXPECT_TRUE(t["model"]["merges"].empty());
  EXPECT_EQ(t["pre_tokenizer"]["type"], "ByteLevel");
  EXPECT_EQ(t["decoder"]["type"], "ByteLevel");
  ASSERT_EQ(t["added_tokens"].size(), 4u);
  EXPECT_EQ(t["added_tokens"][3]["content"], "<|im_end|>");
  EXPECT_EQ(t["added_tokens"][3]["id"], 259);
  const json c = json::parse(builtin_tokenizer_config_json());
  EXPECT_NE(c["chat_template"].get<std::string>().find("<|im_start|>"), std::string::npos);
  EXPECT_EQ(c["eos_token"], "<|im_end|>");
}

}  // namespace
}  // namespace myriad
