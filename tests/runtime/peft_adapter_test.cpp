// PEFT adapters: the fixtures load with the right ranks, scales and values;
// PEFT's module selection rules (list, regex, layers_to_transform,
// rank/alpha patterns); and one test per hostile adapter, each asserting a
// clear message and that nothing is returned.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>

#include "runtime/peft_adapter.h"
#include "runtime/safetensors.h"
#include "test_fixtures.h"

using myriad::testing::fixtures_dir;

namespace myriad {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;


ModelConfig llama_config() {
  auto c = load_model_config(fixtures_dir() + "/tiny-llama");
  EXPECT_TRUE(c.ok()) << c.error().to_string();
  return c.value();
}

// A scratch copy of a fixture adapter that a test may damage.
class AdapterDir {
 public:
  explicit AdapterDir(const std::string& fixture) {
    static int n = 0;
    path_ = (fs::temp_directory_path() / ("myriad_peft_" + std::to_string(::getpid()) + "_" + std::to_string(n++))).string();
    fs::remove_all(path_);
    fs::create_directories(path_);
    const std::string src = fixtures_dir() + "/tiny-llama/adapters/" + fixture;
    fs::copy_file(src + "/adapter_config.json", path_ + "/adapter_config.json");
    fs::copy_file(src + "/adapter_model.safetensors", path_ + "/adapter_model.safetensors");
  }
  ~AdapterDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }

  json config() const {
    std::ifstream f(path_ + "/adapter_config.json");
    return json::parse(f);
  }
  void set_config(const json& j) const {
    std::ofstream f(path_ + "/adapter_config.json", std::ios::trunc);
    f << j.dump(2);
  }
  template <class F>
  void edit_config(F&& f) const {
    json j = config();
    f(j);
    set_config(j);
  }
  // Rewrites the tensors: `f(name, shape, values)` may edit each; `extra` adds tensors.
  template <class F>
  void edit_tensors(F&& f, std::vector<std::pair<std::string, std::vector<int64_t>>> extra = {}) const {
    auto st = SafetensorsFile::open(path_ + "/adapter_model.safetensors");
    ASSERT_TRUE(st.ok());
    std::vector<std::string> names;
    std::vector<std::vector<int64_t>> shapes;
    std::vector<std::vector<float>> data;
    for (const TensorView& t : (*st)->tensors()) {
      names.push_back(t.name);
      shapes.push_back(t.shape);
      std::vector<float> v(size_t(t.numel()));
      for (size_t i = 0; i < v.size(); ++i) v[i] = t.at(i);
      f(names.back(), shapes.back(), v);
      data.push_back(std::move(v));
    }
    for (auto& [n, s] : extra) {
      names.push_back(n);
      shapes.push_back(s);
      int64_t numel = 1;
      for (int64_t d : s) numel *= d;
      data.emplace_back(size_t(numel), 0.5f);
    }
    std::vector<TensorToWrite> w;
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i].empty()) continue;  // dropped
      w.push_back({names[i], DType::kF32, shapes[i], std::as_bytes(std::span(data[i]))});
    }
    st = Result<std::shared_ptr<SafetensorsFile>>(make_error(ErrorCode::kInternal, "closed"));
    ASSERT_TRUE(write_safetensors(path_ + "/adapter_model.safetensors", w).ok());
  }

 private:
  std::string path_;
};

// Asserts a rejection with `code` whose message contains every fragment.
void expect_rejected(const Result<std::shared_ptr<const LoraWeights>>& r, ErrorCode code,
                     std::initializer_list<const char*> fragments) {
  ASSERT_FALSE(r.ok()) << "hostile adapter was accepted";
  EXPECT_EQ(r.error().code, code) << r.error().to_string();
  for (const char* f : fragments) {
    EXPECT_NE(r.error().message.find(f), std::string::npos) << "'" << f << "' not in: " << r.error().message;
  }
}

TEST(PeftAdapter, FixturesLoadWithPeftRanksAndScales) {
  const ModelConfig c = llama_config();
  struct Case {
    const char* name;
    int32_t rank;
    float scale;
    std::vector<LinearModule> modules;
  };
  const std::vector<Case> cases = {
      {"r4-qv", 4, 4.0f, {LinearModule::kQ, LinearModule::kV}},
      {"r8-all", 8, 2.0f, {LinearModule::kQ, LinearModule::kK, LinearModule::kV, LinearModule::kO, LinearModule::kGate, LinearModule::kUp, LinearModule::kDown}},
      {"r16-rslora-o-down", 16, 4.0f, {LinearModule::kO, LinearModule::kDown}},
  };
  for (const auto& k : cases) {
    const std::string dir = fixtures_dir() + "/tiny-llama/adapters/" + k.name;
    auto w = load_peft_adapter(dir, c);
    ASSERT_TRUE(w.ok()) << w.error().to_string();
    EXPECT_EQ((*w)->num_layers, 2);
    EXPECT_EQ((*w)->max_rank(), k.rank);
    auto st = SafetensorsFile::open(dir + "/adapter_model.safetensors");
    ASSERT_TRUE(st.ok());
    for (int l = 0; l < 2; ++l) {
      for (int mi = 0; mi < kNumLinearModules; ++mi) {
        const auto m = LinearModule(mi);
        const LoraModuleWeights& mw = (*w)->at(l, m);
        const bool on = std::find(k.modules.begin(), k.modules.end(), m) != k.modules.end();
        if (!on) {
          EXPECT_EQ(mw.rank, 0) << k.name << " " << peft_module_path(l, m);
          continue;
        }
        ASSERT_EQ(mw.rank, k.rank);
        EXPECT_FLOAT_EQ(mw.scale, k.scale);
        const auto [out, in] = linear_module_shape(c, m);
        ASSERT_EQ(mw.a.size(), size_t(k.rank * in));
        ASSERT_EQ(mw.b.size(), size_t(out * k.rank));
        const TensorView* b = (*st)->find(peft_tensor_name(l, m, true));
        ASSERT_NE(b, nullptr);
        for (size_t i = 0; i < mw.b.size(); i += 37) EXPECT_EQ(mw.b[i], b->at(i));
      }
    }
  }
}

TEST(PeftAdapter, RegexTargetsLayersToTransformAndPatterns) {
  const ModelConfig c = llama_config();
  {  // regex: full match on the module path; only layer 1's v_proj
    AdapterDir d("r4-qv");
    d.edit_config([](json& j) { j["target_modules"] = R"(.*\.1\.self_attn\.(v_proj|q_proj))"; });
    d.edit_tensors([](std::string& n, auto&, auto&) {
      if (n.find("layers.0.") != std::string::npos) n.clear();
    });
    auto w = load_peft_adapter(d.path(), c);
    ASSERT_TRUE(w.ok()) << w.error().to_string();
    EXPECT_EQ((*w)->at(0, LinearModule::kQ).rank, 0);
    EXPECT_EQ((*w)->at(1, LinearModule::kV).rank, 4);
  }
  {  // a regex is a full match: "q_proj" alone matches no module path
    AdapterDir d("r4-qv");
    d.edit_config([](json& j) { j["target_modules"] = "q_proj"; });
    expect_rejected(load_peft_adapter(d.path(), c), ErrorCode::kBadFile, {"selects no module"});
  }
  {  // layers_to_transform as an int (list targets)
    AdapterDir d("r4-qv");
    d.edit_config([](json& j) { j["layers_to_transform"] = 1; });
    d.edit_tensors([](std::string& n, auto&, auto&) {
      if (n.find("layers.0.") != std::string::npos) n.clear();
    });
    auto w = load_peft_adapter(d.path(), c);
    ASSERT_TRUE(w.ok()) << w.error().to_string();
    EXPECT_EQ((*w)->at(0, LinearModule::kV).rank, 0);
    EXPECT_EQ((*w)->at(1, LinearModule::kV).rank, 4);
  }
  {  // rank_pattern / alpha_pattern: v_proj of layer 1 at rank 2, alpha 3; every q_proj alpha 32
    AdapterDir d("r4-qv");
    d.edit_config([](json& j) {
      j["rank_pattern"] = {{"layers.1.self_attn.v_proj", 2}};
      j["alpha_pattern"] = {{"q_proj", 32}, {"model.layers.1.self_attn.v_proj", 3}};
    });
    d.edit_tensors([](std::string& n, std::vector<int64_t>& s, std::vector<float>& v) {
      if (n.find("layers.1.self_attn.v_proj.lora_A") != std::string::npos) {
        s = {2, 64};
        v.resize(128);
      } else if (n.find("layers.1.self_attn.v_proj.lora_B") != std::string::npos) {
        std::vector<float> b(32 * 2);
        for (int o = 0; o < 32; ++o) b[size_t(o * 2)] = v[size_t(o * 4)], b[size_t(o * 2 + 1)] = v[size_t(o * 4 + 1)];
        s = {32, 2};
        v = b;
      }
    });
    auto w = load_peft_adapter(d.path(), c);
    ASSERT_TRUE(w.ok()) << w.error().to_string();
    EXPECT_EQ((*w)->at(1, LinearModule::kV).rank, 2);
    EXPECT_FLOAT_EQ((*w)->at(1, LinearModule::kV).scale, 1.5f);
    EXPECT_EQ((*w)->at(0, LinearModule::kV).rank, 4);
    EXPECT_FLOAT_EQ((*w)->at(0, LinearModule::kV).scale, 4.0f);
    EXPECT_FLOAT_EQ((*w)->at(0, LinearModule::kQ).scale, 8.0f);
  }
  {  // all-linear; fan_in_fan_out is ignored for nn.Linear as PEFT does
    AdapterDir d("r8-all");
    d.edit_config([](json& j) {
      j["target_modules"] = "all-linear";
      j["fan_in_fan_out"] = true;
    });
    auto w = load_peft_adapter(d.path(), c);
    ASSERT_TRUE(w.ok()) << w.error().to_string();
    EXPECT_EQ((*w)->at(1, LinearModule::kDown).rank, 8);
  }
}

TEST(PeftAdapter, SaveLoadsBackUnchanged) {
  const ModelConfig c = llama_config();
  auto w = load_peft_adapter(fixtures_dir() + "/tiny-llama/adapters/r16-rslora-o-down", c);
  ASSERT_TRUE(w.ok());
  AdapterDir d("r4-qv");
  ASSERT_TRUE(save_peft_adapter(d.path(), **w, "tiny-llama").ok());
  auto back = load_peft_adapter(d.path(), c);
  ASSERT_TRUE(back.ok()) << back.error().to_string();
  for (size_t i = 0; i < (*w)->modules.size(); ++i) {
    EXPECT_EQ((*back)->modules[i].rank, (*w)->modules[i].rank);
    EXPECT_FLOAT_EQ((*back)->modules[i].scale, (*w)->modules[i].scale);
    EXPECT_EQ((*back)->modules[i].a, (*w)->modules[i].a);
    EXPECT_EQ((*back)->modules[i].b, (*w)->modules[i].b);
  }
}

// ---- hostile adapters: one case each ----

TEST(PeftHostile, ShapeDoesNotFitBase) {
  AdapterDir d("r4-qv");
  d.edit_tensors([](std::string& n, std::vector<int64_t>& s, std::vector<float>& v) {
    if (n.find("layers.0.self_attn.q_proj.lora_A") != std::string::npos) s = {4, 32}, v.resize(128);
  });
  expect_rejected(load_peft_adapter(d.path(), llama_config()), ErrorCode::kBadFile,
                  {"layers.0.self_attn.q_proj.lora_A.weight", "[4, 32]", "expected [4, 64]"});
}

TEST(PeftHostile, RankInConfigDisagreesWithTensors) {
  AdapterDir d("r8-all");
  d.edit_config([](json& j) { j["r"] = 4; });
  expect_rejected(load_peft_adapter(d.path(), llama_config()), ErrorCode::kBadFile, {"has shape [", "rank 4"});
}

TEST(PeftHostile, UnknownTargetModule) {
  AdapterDir d("r4-qv");
  d.edit_config([](json& j) { j["target_modules"] = {"q_proj", "v_proj", "qkv_proj"}; });
  expect_rejected(load_peft_adapter(d.path(), llama_config()), ErrorCode::kBadFile, {"'qkv_proj'", "matches no module"});
}

TEST(PeftHostile, TargetOutsideTheSevenLinears) {
  AdapterDir d("r4-qv");
  d.edit_config([](json& j) { j["target_modules"] = {"q_proj", "v_proj", "lm_head"}; });
  expect_rejected(load_peft_adapter(d.path(), llama_config()), ErrorCode::kUnsupported, {"lm_head", "does not adapt"});
}

TEST(PeftHostile, RankAboveConfiguredMaximum) {
  PeftLoadOptions o;
  o.max_rank = 8;
  expect_rejected(load_peft_adapter(fixtures_dir() + "/tiny-llama/adapters/r16-rslora-o-down", llama_config(), o),
                  ErrorCode::kUnsupported, {"rank 16", "maximum adapter rank 8"});
}

TEST(PeftHostile, NaN) {
  AdapterDir d("r4-qv");
  d.edit_tensors([](std::string& n, auto&, std::vector<float>& v) {
    if (n.find("layers.1.self_attn.v_proj.lora_B") != std::string::npos) v[5] = std::numeric_limits<float>::quiet_NaN();
  });
  expect_rejected(load_peft_adapter(d.path(), llama_config()), ErrorCode::kBadFile,
                  {"layers.1.self_attn.v_proj.lora_B.weight", "element 5", "NaN"});
}

TEST(PeftHostile, Inf) {
  AdapterDir d("r4-qv");
  d.edit_tensors([](std::string& n, auto&, std::vector<float>& v) {
    if (n.find("layers.0.self_attn.q_proj.lora_A") != std::string::npos) v[0] = -std::numeric_limits<float>::infinity();
  });
  expect_rejected(load_peft_adapter(d.path(), llama_config()), ErrorCode::kBadFile, {"element 0", "infinite"});
}

TEST(PeftHostile, DoraConfig) {
  AdapterDir d("r4-qv");
  d.edit_config([](json& j) { j["use_dora"] = true; });
  expect_rejected(load_peft_adapter(d.path(), llama_config()), ErrorCode::kUnsupported, {"use_dora", "DoRA"});
}

TEST(PeftHostile, DoraMagnitudeTensor) {
  AdapterDir d("r4-qv");
  d.edit_tensors([](auto&, auto&, auto&) {},
                 {{"base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector", {64}}});
  expect_rejected(load_peft_adapter(d.path(), llama_config()), ErrorCode::kUnsupported, {"lora_magnitude_vector", "DoRA"});
}

TEST(PeftHostile, ModulesToSave) {
  AdapterDir d("r4-qv");
  d.edit_config([](json& j) { j["modules_to_save"] = {"lm_head"}; });
  expect_rejected(load_peft_adapter(d.path(), llama_config()), ErrorCode::kUnsupported,
                  {"modules_to_save", "does not apply"});
}

TEST(PeftHostile, ModulesToSaveTensorWithoutConfig) {
  AdapterDir d("r4-qv");
  d.edit_tensors([](auto&, auto&, auto&) {}, {{"base_model.model.lm_head.modules_to_save.default.weight", {512, 64}}});
  expect_rejected(load_peft_adapter(d.path(), llama_config()), ErrorCode::kUnsupported, {"lm_head", "modules_to_save"});
}

TEST(PeftHostile, LoraBias) {
  for (const char* bias : {"all", "lora_only"}) {
    AdapterDir d("r4-qv");
    d.edit_config([&](json& j) { j["bias"] = bias; });
    expect_rejected(load_peft_adapter(d.path(), llama_config()), ErrorCode::kUnsupported,
                    {bias, "does not apply LoRA biases"});
  }
  AdapterDir d("r4-qv");
  d.edit_tensors([](auto&, auto&, auto&) {}, {{"base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias", {64}}});
  expect_rejected(load_peft_adapter(d.path(), llama_config()), ErrorCode::kUnsupported, {"lora_B.bias", "LoRA bias"});
}

TEST(PeftHostile, PickleBinInsteadOfSafetensors) {
  AdapterDir d("r4-qv");
  fs::rename(d.path() + "/adapter_model.safetensors", d.path() + "/adapter_model.bin");
  expect_rejected(load_peft_adapter(d.path(), llama_config()), ErrorCode::kUnsupported,
                  {"adapter_model.bin", "pickle", "save_file(", "torch.load("});
}

TEST(PeftHostile, TruncatedFile) {
  AdapterDir d("r8-all");
  const std::string p = d.path() + "/adapter_model.safetensors";
  fs::resize_file(p, fs::file_size(p) - 100);
  expect_rejected(load_peft_adapter(d.path(), llama_config()), ErrorCode::kBadFile, {"adapter_model.safetensors"});
  fs::resize_file(p, 6);  // shorter than the header length field
  expect_rejected(load_peft_adapter(d.path(), llama_config()), ErrorCode::kBadFile, {"adapter_model.safetensors"});
}

TEST(PeftHostile, MissingTensor) {
  AdapterDir d("r8-all");
  d.edit_tensors([](std::string& n, auto&, auto&) {
    if (n.find("layers.1.mlp.up_proj.lora_B") != std::string::npos) n.clear();
  });
  expect_rejected(load_peft_adapter(d.path(), llama_config()), ErrorCode::kBadFile,
                  {"missing tensor", "layers.1.mlp.up_proj.lora_B.weight"});
}

TEST(PeftHostile, TensorForUntargetedModule) {
  AdapterDir d("r4-qv");
  d.edit_tensors([](auto&, auto&, auto&) {},
                 {{"base_model.model.model.layers.0.mlp.up_proj.lora_A.weight", {4, 64}}});
  expect_rejected(load_peft_adapter(d.path(), llama_config()), ErrorCode::kBadFile,
                  {"unexpected tensor", "mlp.up_proj.lora_A"});
}

TEST(PeftHostile, MalformedConfig) {
  AdapterDir d("r4-qv");
  {
    std::ofstream f(d.path() + "/adapter_config.json", std::ios::trunc);
    f << "{\"r\": 4, ";
  }
  expect_rejected(load_peft_adapter(d.path(), llama_config()), ErrorCode::kBadFile, {"adapter_config.json", "not valid JSON"});
  d.set_config(json{{"r", -3}, {"target_modules", {"q_proj"}}});
  expect_rejected(load_peft_adapter(d.path(), llama_config()), ErrorCode::kBadFile, {"r must be a positive integer"});
  d.set_config(json{{"r", 4}, {"target_modules", "(q_proj"}});
  expect_rejected(load_peft_adapter(d.path(), llama_config()), ErrorCode::kBadFile, {"not a valid regular expression"});
  d.set_config(json{{"r", 4}, {"peft_type", "IA3"}});
  expect_rejected(load_peft_adapter(d.path(), llama_config()), ErrorCode::kUnsupported, {"IA3"});
}

TEST(PeftHostile, LayersToTransformOutOfRange) {
  AdapterDir d("r4-qv");
  d.edit_config([](json& j) { j["layers_to_transform"] = {0, 1, 7}; });
  expect_rejected(load_peft_adapter(d.path(), llama_config()), ErrorCode::kBadFile, {"layer 7", "2 layers"});
}

TEST(PeftHostile, MissingFolder) {
  expect_rejected(load_peft_adapter("/nonexistent/adapter", llama_config()), ErrorCode::kNotFound, {"adapter_config.json"});
}

}  // namespace
}  // namespace myriad
