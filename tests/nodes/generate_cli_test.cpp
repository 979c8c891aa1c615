// `myriad generate` end to end: greedy tokens of the Hugging Face goldens
// (eos not special: --ignore-eos), streamed text == --json text, stop
// strings, --chat, seeded sampling reproducible, bad arguments.
#include <gtest/gtest.h>

#include "nodes/cli_run.h"
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

namespace myriad {
namespace {

namespace fs = std::filesystem;

using testing_cli::CliRun;
using testing_cli::fixtures_dir;
using testing_cli::id_list;
using testing_cli::run_cli;

// Single-quoted for the shell.
std::string q(const std::string& s) {
  std::string out;
  out.push_back('\'');
  for (char c : s) {
    if (c == '\'') {
      out.append("'\\''");
    } else {
      out.push_back(c);
    }
  }
  out.push_back('\'');
  return out;
}

TEST(GenerateCli, GreedyTokensMatchGoldensWithIgnoreEos) {
  for (const char* model : {"tiny-llama", "tiny-qwen2"}) {
    std::ifstream f(fixtures_dir() + "/" + model + "/golden.json");
    const auto g = nlohmann::json::parse(f);
    for (const auto& [name, prompt] : g["prompts"].items()) {
      const auto r = run_cli("generate --model " + fixtures_dir() + "/" + model + " --ids " + id_list(prompt) +
                             " --max-tokens 24 --temperature 0 --ignore-eos --json");
      ASSERT_EQ(r.code, 0) << r.out;
      const auto j = nlohmann::json::parse(r.out);
      EXPECT_EQ(j["ids"], g["results"]["base"][name]["greedy_tokens"]) << model << " " << name;
      EXPECT_EQ(j["text"], "");  // no tokenizer in the fixture
    }
  }
}

TEST(GenerateCli, StopsAtEosUnlessIgnored) {
  // tiny-llama p100 greedily emits eos (id 2) within its 24 goldens.
  std::ifstream f(fixtures_dir() + "/tiny-llama/golden.json");
  const auto g = nlohmann::json::parse(f);
  const auto want = g["results"]["base"]["p100"]["greedy_tokens"].get<std::vector<int>>();
  const auto eos_at = std::find(want.begin(), want.end(), 2);
  ASSERT_NE(eos_at, want.end());
  const auto r = run_cli("generate --model " + fixtures_dir() + "/tiny-llama --ids " + id_list(g["prompts"]["p100"]) +
                         " --max-tokens 24 --temperature 0 --json");
  ASSERT_EQ(r.code, 0) << r.out;
  const std::vector<int> expect(want.begin(), eos_at + 1);  // eos kept as the last id
  EXPECT_EQ(nlohmann::json::parse(r.out)["ids"].get<std::vector<int>>(), expect);
}

class GenerateTextCli : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    dir_ = fs::temp_directory_path() / ("myriad_gen_" + std::to_string(rd()) + std::to_string(rd()));
    const auto r = run_cli("make-model --shape tiny --seed 7 --dtype bf16 --out " + dir_.string());
    ASSERT_EQ(r.code, 0) << r.out;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string gen(const std::string& args) { return "generate --model " + dir_.string() + " " + args; }
  fs::path dir_;
};

TEST_F(GenerateTextCli, StreamedTextEqualsJsonTextAndDetokenizedIds) {
  const auto j = run_cli(gen("--prompt " + q("Hello, world") + " --max-tokens 12 --temperature 0.9 --seed 4 --ignore-eos --json"));
  ASSERT_EQ(j.code, 0) << j.out;
  const auto parsed = nlohmann::json::parse(j.out);
  ASSERT_EQ(parsed["ids"].size(), 12u);
  const auto s = run_cli(gen("--prompt " + q("Hello, world") + " --max-tokens 12 --temperature 0.9 --seed 4 --ignore-eos"));
  ASSERT_EQ(s.code, 0);
  EXPECT_EQ(s.out, parsed["text"].get<std::string>() + "\n");
  const auto d = run_cli("detokenize --tokenizer " + dir_.string() + " --skip-special --ids " + id_list(parsed["ids"]));
  ASSERT_EQ(d.code, 0) << d.out;
  EXPECT_EQ(nlohmann::json::parse(d.out)["text"], parsed["text"]);
  // Same seed, same tokens; another seed, (almost surely) other tokens.
  const auto again = nlohmann::json::parse(run_cli(gen("--prompt " + q("Hello, world") + " --max-tokens 12 --temperature 0.9 --seed 4 --ignore-eos --json")).out);
  EXPECT_EQ(again["ids"], parsed["ids"]);
  const auto other = nlohmann::json::parse(run_cli(gen("--prompt " + q("Hello, world") + " --max-tokens 12 --temperature 0.9 --seed 5 --ignore-eos --json")).out);
  EXPECT_NE(other["ids"], parsed["ids"]);
}

TEST_F(GenerateTextCli, StopStringCutsTheText) {
  // Bytes of the built-in tokenizer: ids 0-255 are bytes; generate greedy text,
  // then stop at a piece of it.
  const auto full = nlohmann::json::parse(run_cli(gen("--prompt " + q("abc") + " --max-tokens 16 --temperature 0 --ignore-eos --json")).out);
  const std::string text = full["text"];
  ASSERT_GE(text.size(), 6u);
  const std::string stop = text.substr(3, 2);
  const size_t cut = text.find(stop);
  const auto r = run_cli(gen("--prompt " + q("abc") + " --max-tokens 16 --temperature 0 --ignore-eos --json --stop " + q(stop)));
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["text"], text.substr(0, cut));
  EXPECT_LT(j["ids"].size(), full["ids"].size());
  // Streaming agrees.
  const auto s = run_cli(gen("--prompt " + q("abc") + " --max-tokens 16 --temperature 0 --ignore-eos --stop " + q(stop)));
  EXPECT_EQ(s.out, text.substr(0, cut) + "\n");
}

TEST_F(GenerateTextCli, ChatWrapsThePromptInTheTemplate) {
  // --chat equals generating from the ids `tokenize --chat` renders.
  const fs::path chat = dir_ / "chat.json";
  std::ofstream(chat) << R"([{"role": "user", "content": "Hi there"}])";
  const auto t = run_cli("tokenize --tokenizer " + dir_.string() + " --chat " + chat.string());
  ASSERT_EQ(t.code, 0) << t.out;
  const auto ids = nlohmann::json::parse(t.out)["ids"];
  const auto a = run_cli(gen("--prompt " + q("Hi there") + " --chat --max-tokens 6 --temperature 0 --ignore-eos --json"));
  const auto b = run_cli(gen("--ids " + id_list(ids) + " --max-tokens 6 --temperature 0 --ignore-eos --json"));
  ASSERT_EQ(a.code, 0) << a.out;
  EXPECT_EQ(nlohmann::json::parse(a.out)["ids"], nlohmann::json::parse(b.out)["ids"]);
}

// The bf16 model's KV cache is bf16 unless --kv-cache-dtype says otherwise:
// the default and "bf16" agree exactly, f32 K/V move the logits a little
// (bf16 rounding of K and V: ~1e-3 where logits reach ~0.5), never a lot.
TEST_F(GenerateTextCli, KvCacheDtypeFlag) {
  const std::string base = "logits --model " + dir_.string() + " --ids 5,17,99,3,42,7,250,11 --all-positions";
  auto run = [&](const std::string& extra) {
    const auto r = run_cli(base + extra);
    EXPECT_EQ(r.code, 0) << r.out;
    return nlohmann::json::parse(r.out)["logits"].get<std::vector<std::vector<double>>>();
  };
  const auto dflt = run(""), bf16 = run(" --kv-cache-dtype bf16"), f32 = run(" --kv-cache-dtype f32"),
             f16 = run(" --kv-cache-dtype f16");
  EXPECT_EQ(dflt, bf16);
  ASSERT_EQ(dflt.size(), f32.size());
  double diff = 0, diff16 = 0, mag = 0;
  for (size_t p = 0; p < dflt.size(); ++p)
    for (size_t i = 0; i < dflt[p].size(); ++i) {
      diff = std::max(diff, std::fabs(dflt[p][i] - f32[p][i]));
      diff16 = std::max(diff16, std::fabs(f16[p][i] - f32[p][i]));
      mag = std::max(mag, std::fabs(f32[p][i]));
    }
  EXPECT_GT(diff, 0.0) << "a bf16 cache rounds K and V";
  EXPECT_LT(diff, 0.02 * mag + 1e-3) << "largest |logit| " << mag;
  EXPECT_LT(diff16, diff) << "f16 keeps 3 more mantissa bits than bf16";
  std::printf("[ info  ] KV bf16 vs f32: max |dlogit| %.3g, f16 vs f32 %.3g, largest |logit| %.3g\n", diff, diff16, mag);
}

TEST_F(GenerateTextCli, BadArgumentsNameTheFlag) {
  auto r = run_cli(gen("--prompt x --temperature -1"), true);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("--temperature"), std::string::npos) << r.out;
  r = run_cli(gen("--prompt x --ids 1"), true);
  EXPECT_EQ(r.code, 2);
  r = run_cli(gen("--prompt x --top-p 0"), true);
  EXPECT_NE(r.out.find("--top-p"), std::string::npos) << r.out;
  r = run_cli(gen("--prompt x --kv-cache-dtype int4"), true);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("--kv-cache-dtype"), std::string::npos) << r.out;
  r = run_cli("generate --model " + fixtures_dir() + "/tiny-llama --prompt hello", true);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("tokenizer"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace myriad
