// parse_model_config / parse_generation_config: the three architectures,
// GQA, head_dim, llama3 rope scaling, and errors naming file, field, value.
#include "runtime/model_config.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "runtime/generation_config.h"
#include "test_fixtures.h"

using myriad::testing::fixtures_dir;

namespace myriad {
namespace {

using json = nlohmann::json;


json base_llama() {
  return json::parse(R"({
    "model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
    "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 128256,
    "max_position_embeddings": 131072, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "tie_word_embeddings": false, "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
    "hidden_act": "silu", "attention_bias": false, "mlp_bias": false, "torch_dtype": "bfloat16"})");
}

Result<ModelConfig> parse(const json& j) { return parse_model_config(j.dump(), "/m/config.json"); }

void expect_error(const Result<ModelConfig>& r, ErrorCode code, std::initializer_list<std::string> needles) {
  ASSERT_FALSE(r.ok()) << "expected an error mentioning " << *needles.begin();
  EXPECT_EQ(r.error().code, code) << r.error().to_string();
  EXPECT_NE(r.error().message.find("/m/config.json"), std::string::npos) << r.error().message;
  for (const auto& n : needles) EXPECT_NE(r.error().message.find(n), std::string::npos) << r.error().message;
}

TEST(ModelConfig, Llama31With8BShape) {
  auto c = parse(base_llama());
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(c->arch, ModelArch::kLlama);
  EXPECT_EQ(c->num_kv_heads, 8);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->q_dim(), 4096);
  EXPECT_EQ(c->kv_dim(), 1024);
  EXPECT_FLOAT_EQ(c->rope_theta, 500000.0f);
  EXPECT_FLOAT_EQ(c->rms_norm_eps, 1e-5f);
  ASSERT_TRUE(c->rope_scaling.has_value());
  EXPECT_EQ(c->rope_scaling->type, "llama3");
  EXPECT_FLOAT_EQ(c->rope_scaling->factor, 8.0f);
  EXPECT_FLOAT_EQ(c->rope_scaling->low_freq_factor, 1.0f);
  EXPECT_FLOAT_EQ(c->rope_scaling->high_freq_factor, 4.0f);
  EXPECT_EQ(c->rope_scaling->original_max_position_embeddings, 8192);
  EXPECT_EQ(c->bos_token_ids, std::vector<int64_t>{128000});
  EXPECT_EQ(c->eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  EXPECT_EQ(c->torch_dtype, "bfloat16");
  EXPECT_FALSE(c->attention_bias);
  EXPECT_FALSE(c->o_proj_bias);
}

TEST(ModelConfig, OldStyleRopeTypeKeyAndNullScaling) {
  json j = base_llama();
  j["rope_scaling"].erase("rope_type");
  j["rope_scaling"]["type"] = "llama3";
  auto c = parse(j);
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_TRUE(c->rope_scaling.has_value());
  j["rope_scaling"] = nullptr;
  c = parse(j);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->rope_scaling.has_value());
  j.erase("rope_scaling");
  c = parse(j);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->rope_scaling.has_value());
}

TEST(ModelConfig, OtherRopeTypesAreUnsupportedByName) {
  for (const char* t : {"linear", "dynamic", "yarn", "longrope"}) {
    json j = base_llama();
    j["rope_scaling"] = {{"rope_type", t}, {"factor", 2.0}};
    expect_error(parse(j), ErrorCode::kUnsupported, {"rope_scaling.rope_type", std::string("'") + t + "'"});
  }
}

TEST(ModelConfig, Llama3ScalingFieldsValidated) {
  json j = base_llama();
  j["rope_scaling"].erase("low_freq_factor");
  expect_error(parse(j), ErrorCode::kBadFile, {"rope_scaling.low_freq_factor", "missing"});
  j = base_llama();
  j["rope_scaling"]["factor"] = -1;
  expect_error(parse(j), ErrorCode::kBadFile, {"rope_scaling.factor", "-1"});
  j = base_llama();
  j["rope_scaling"]["original_max_position_embeddings"] = 0;
  expect_error(parse(j), ErrorCode::kBadFile, {"rope_scaling.original_max_position_embeddings", "0"});
}

TEST(ModelConfig, FixturesParse) {
  auto l = load_model_config(fixtures_dir() + "/tiny-llama");
  ASSERT_TRUE(l.ok()) << l.error().to_string();
  EXPECT_EQ(l->arch, ModelArch::kLlama);
  EXPECT_FALSE(l->attention_bias);
  auto q = load_model_config(fixtures_dir() + "/tiny-qwen2");
  ASSERT_TRUE(q.ok()) << q.error().to_string();
  EXPECT_EQ(q->arch, ModelArch::kQwen2);
  EXPECT_TRUE(q->attention_bias);
  EXPECT_FALSE(q->o_proj_bias);
  EXPECT_TRUE(q->tie_word_embeddings);
  EXPECT_FALSE(q->use_sliding_window);
  EXPECT_FALSE(q->sliding_window.has_value());
  auto missing = load_model_config(fixtures_dir() + "/no-such-model");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_NE(missing.error().message.find("no-such-model/config.json"), std::string::npos);
}

TEST(ModelConfig, MistralAndQwen2SlidingWindow) {
  json m = json::parse(R"({"model_type": "mistral", "hidden_size": 4096, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 32000,
    "max_position_embeddings": 32768, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096,
    "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": false, "hidden_act": "silu"})");
  auto c = parse(m);
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(c->arch, ModelArch::kMistral);
  EXPECT_EQ(c->sliding_window, 4096);
  EXPECT_TRUE(c->use_sliding_window);
  m["sliding_window"] = nullptr;
  c = parse(m);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->use_sliding_window);

  json q = json::parse(R"({"model_type": "qwen2", "hidden_size": 896, "num_hidden_layers": 24,
    "num_attention_heads": 14, "num_key_value_heads": 2, "intermediate_size": 4864, "vocab_size": 151936,
    "max_position_embeddings": 32768, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768,
    "use_sliding_window": false, "max_window_layers": 21, "tie_word_embeddings": true,
    "bos_token_id": 151643, "eos_token_id": 151645, "hidden_act": "silu"})");
  c = parse(q);
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->sliding_window, 32768);
  EXPECT_FALSE(c->use_sliding_window);
  EXPECT_TRUE(c->attention_bias);
  q["use_sliding_window"] = true;
  c = parse(q);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->use_sliding_window);
}

TEST(ModelConfig, LlamaAttentionBiasCoversO) {
  json j = base_llama();
  j["attention_bias"] = true;
  auto c = parse(j);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->attention_bias);
  EXPECT_TRUE(c->o_proj_bias);
}

TEST(ModelConfig, ExplicitHeadDimAndDefaults) {
  json j = base_llama();
  j["head_dim"] = 256;  // hidden != heads * head_dim is fine when given
  auto c = parse(j);
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(c->head_dim, 256);
  EXPECT_EQ(c->q_dim(), 8192);
  j = base_llama();
  j.erase("num_key_value_heads");
  j.erase("rope_theta");
  j.erase("bos_token_id");
  j["eos_token_id"] = 5;
  c = parse(j);
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(c->num_kv_heads, 32);
  EXPECT_FLOAT_EQ(c->rope_theta, 10000.0f);
  EXPECT_TRUE(c->bos_token_ids.empty());
  EXPECT_EQ(c->eos_token_ids, std::vector<int64_t>{5});
}

TEST(ModelConfigHostile, ErrorsNameFieldAndValue) {
  struct Case {
    const char* field;
    json value;
    ErrorCode code;
    std::vector<std::string> needles;
  };
  const std::vector<Case> cases = {
      {"model_type", "gpt2", ErrorCode::kUnsupported, {"model_type", "gpt2"}},
      {"hidden_size", 0, ErrorCode::kBadFile, {"hidden_size", "= 0"}},
      {"hidden_size", -64, ErrorCode::kBadFile, {"hidden_size", "-64"}},
      {"hidden_size", 4096.5, ErrorCode::kBadFile, {"hidden_size", "4096.5", "not an integer"}},
      {"hidden_size", "4096", ErrorCode::kBadFile, {"hidden_size", "\"4096\""}},
      {"hidden_size", 4100, ErrorCode::kBadFile, {"hidden_size", "4100", "num_attention_heads"}},
      {"num_hidden_layers", 100000, ErrorCode::kBadFile, {"num_hidden_layers", "100000", "out of range"}},
      {"num_key_value_heads", 5, ErrorCode::kBadFile, {"num_key_value_heads", "= 5", "32"}},
      {"num_key_value_heads", 0, ErrorCode::kBadFile, {"num_key_value_heads", "= 0"}},
      {"vocab_size", 0, ErrorCode::kBadFile, {"vocab_size", "= 0"}},
      {"vocab_size", 1e30, ErrorCode::kBadFile, {"vocab_size"}},
      {"intermediate_size", nullptr, ErrorCode::kBadFile, {"intermediate_size", "missing"}},
      {"rms_norm_eps", 0, ErrorCode::kBadFile, {"rms_norm_eps", "[1e-30, 1)"}},
      {"rms_norm_eps", 1e-50, ErrorCode::kBadFile, {"rms_norm_eps"}},  // would be 0 as a float
      {"rms_norm_eps", -1e-6, ErrorCode::kBadFile, {"rms_norm_eps"}},
      {"rope_theta", 0, ErrorCode::kBadFile, {"rope_theta"}},
      {"rope_scaling", "llama3", ErrorCode::kBadFile, {"rope_scaling", "not an object"}},
      {"head_dim", 7, ErrorCode::kBadFile, {"head_dim", "7", "even"}},
      {"max_position_embeddings", -1, ErrorCode::kBadFile, {"max_position_embeddings", "-1"}},
      {"tie_word_embeddings", "yes", ErrorCode::kBadFile, {"tie_word_embeddings", "\"yes\"", "boolean"}},
      {"eos_token_id", 128256, ErrorCode::kBadFile, {"eos_token_id", "128256"}},
      {"eos_token_id", json::array({1, -2}), ErrorCode::kBadFile, {"eos_token_id", "-2"}},
      {"bos_token_id", "x", ErrorCode::kBadFile, {"bos_token_id"}},
      {"hidden_act", "gelu", ErrorCode::kUnsupported, {"hidden_act", "gelu"}},
      {"mlp_bias", true, ErrorCode::kUnsupported, {"mlp_bias"}},
      {"partial_rotary_factor", 0.5, ErrorCode::kUnsupported, {"partial_rotary_factor", "0.5"}},
  };
  for (const Case& c : cases) {
    json j = base_llama();
    j[c.field] = c.value;
    SCOPED_TRACE(std::string(c.field) + " = " + c.value.dump());
    auto r = parse(j);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, c.code) << r.error().to_string();
    EXPECT_NE(r.error().message.find("/m/config.json"), std::string::npos) << r.error().message;
    for (const auto& n : c.needles) EXPECT_NE(r.error().message.find(n), std::string::npos) << r.error().message;
  }
}

TEST(ModelConfigHostile, NotJsonOrNotAnObject) {
  expect_error(parse_model_config("{\"model_type\": ", "/m/config.json"), ErrorCode::kBadFile, {"not valid JSON"});
  expect_error(parse_model_config("[1]", "/m/config.json"), ErrorCode::kBadFile, {"not a JSON object"});
  expect_error(parse_model_config("{}", "/m/config.json"), ErrorCode::kBadFile, {"model_type", "missing"});
  const std::string deep = "{\"model_type\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  expect_error(parse_model_config(deep, "/m/config.json"), ErrorCode::kBadFile, {"nested deeper than 64"});
  auto g = parse_generation_config(deep, "/m/generation_config.json");
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.error().message.find("nested"), std::string::npos);
}

TEST(GenerationConfig, ParsesAndValidates) {
  auto g = parse_generation_config(R"({"bos_token_id": 1, "eos_token_id": [2, 7], "temperature": 0.6,
                                      "top_p": 0.9, "top_k": 40, "do_sample": true})",
                                   "/m/generation_config.json");
  ASSERT_TRUE(g.ok()) << g.error().to_string();
  EXPECT_EQ(g->bos_token_id, 1);
  EXPECT_EQ(g->eos_token_ids, (std::vector<int64_t>{2, 7}));
  EXPECT_FLOAT_EQ(*g->temperature, 0.6f);
  EXPECT_FLOAT_EQ(*g->top_p, 0.9f);
  EXPECT_EQ(g->top_k, 40);
  EXPECT_FALSE(g->repetition_penalty.has_value());
  auto bad = parse_generation_config(R"({"top_p": 1.5})", "/m/generation_config.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("top_p"), std::string::npos);
  EXPECT_NE(bad.error().message.find("/m/generation_config.json"), std::string::npos);
  bad = parse_generation_config(R"({"eos_token_id": ["a"]})", "/m/generation_config.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("eos_token_id"), std::string::npos);
  auto none = load_generation_config(fixtures_dir() + "/no-such-model");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->eos_token_ids.empty());
}

}  // namespace
}  // namespace myriad
