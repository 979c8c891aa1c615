// `myriad make-model` end to end: the folder it writes loads as a
// checkpoint with the requested shape/dtype, is deterministic in the seed,
// and bad arguments fail with a message naming the flag.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "runtime/checkpoint.h"
#include "runtime/model_factory.h"
#include "test_fixtures.h"

using myriad::testing::fixtures_dir;

namespace myriad {
namespace {

namespace fs = std::filesystem;

struct MakeModelRun {
  int code;
  std::string out;  // stdout + stderr
};

MakeModelRun run_make_model(const std::string& args) {
  const std::string cmd = std::string(MYRIAD_CLI) + " make-model " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr);
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}


std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class MakeModelCli : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    dir_ = fs::temp_directory_path() / ("myriad_mkmodel_" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string sub(const std::string& s) const { return (dir_ / s).string(); }
  fs::path dir_;
};

TEST_F(MakeModelCli, TinyBf16LoadsAndIsDeterministic) {
  MakeModelRun r = run_make_model("--shape tiny --seed 11 --dtype bf16 --out " + sub("a"));
  ASSERT_EQ(r.code, 0) << r.out;
  const auto summary = nlohmann::json::parse(r.out);
  EXPECT_EQ(summary["parameters"], 125760);  // 2 x 260 x 64 embed/head + 2 x 46208 layer + 64 norm
  EXPECT_EQ(summary["dtype"], "BF16");
  for (const char* f : {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                        "model.safetensors"})
    EXPECT_TRUE(fs::exists(sub(std::string("a/") + f))) << f;
  auto ck = Checkpoint::load(sub("a"));
  ASSERT_TRUE(ck.ok()) << ck.error().to_string();
  EXPECT_EQ((*ck)->dtype(), DType::kBF16);
  EXPECT_EQ((*ck)->config().hidden_size, 64);
  EXPECT_EQ((*ck)->config().vocab_size, kBuiltinTokenizerVocab);
  EXPECT_EQ((*ck)->final_norm().at(3), 1.0f);
  const TensorView& q = (*ck)->layers()[1].q;
  EXPECT_EQ(q.at(17), bf16_to_f32(f32_to_bf16(random_weight(11, q.name, 17, 0.02f))));

  ASSERT_EQ(run_make_model("--shape tiny --seed 11 --dtype bf16 --out " + sub("b")).code, 0);
  ASSERT_EQ(run_make_model("--shape tiny --seed 12 --dtype bf16 --out " + sub("c")).code, 0);
  EXPECT_EQ(slurp(sub("a/model.safetensors")), slurp(sub("b/model.safetensors")));
  EXPECT_NE(slurp(sub("a/model.safetensors")), slurp(sub("c/model.safetensors")));
}

TEST_F(MakeModelCli, F32WithAGivenTokenizer) {
  MakeModelRun r = run_make_model("--shape tiny --seed 1 --dtype f32 --out " + sub("m") + " --tokenizer " + fixtures_dir() +
                  "/tokenizers/mistral");
  ASSERT_EQ(r.code, 0) << r.out;
  auto ck = Checkpoint::load(sub("m"));
  ASSERT_TRUE(ck.ok()) << ck.error().to_string();
  EXPECT_EQ((*ck)->dtype(), DType::kF32);
  EXPECT_EQ((*ck)->config().vocab_size, 32000);
  EXPECT_EQ((*ck)->config().bos_token_ids, std::vector<int64_t>{1});
  EXPECT_EQ((*ck)->config().eos_token_ids, std::vector<int64_t>{2});
  EXPECT_EQ(slurp(sub("m/tokenizer.json")), slurp(fixtures_dir() + "/tokenizers/mistral/tokenizer.json"));
}

TEST_F(MakeModelCli, BadArgumentsNameTheFlag) {
  struct Case {
    std::string args;
    std::string needle;
  };
  const std::vector<Case> cases = {
      {"--seed 1 --dtype bf16 --out X", "--shape"},
      {"--shape huge --seed 1 --dtype bf16 --out X", "huge"},
      {"--shape tiny --dtype bf16 --out X", "--seed"},
      {"--shape tiny --seed abc --dtype bf16 --out X", "abc"},
      {"--shape tiny --seed -4 --dtype bf16 --out X", "--seed"},
      {"--shape tiny --seed 1 --dtype f16 --out X", "f16"},
      {"--shape tiny --seed 1 --dtype bf16", "--out"},
      {"--shape tiny --seed 1 --dtype bf16 --out X --colour red", "--colour"},
  };
  for (const Case& c : cases) {
    MakeModelRun r = run_make_model(c.args);
    EXPECT_EQ(r.code, 2) << c.args << ": " << r.out;
    EXPECT_NE(r.out.find(c.needle), std::string::npos) << c.args << ": " << r.out;
  }
  MakeModelRun r = run_make_model("--shape tiny --seed 1 --dtype bf16 --out " + sub("t") + " --tokenizer " + sub("none"));
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find(sub("none") + "/tokenizer.json"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace myriad
