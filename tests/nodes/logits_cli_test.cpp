// `myriad logits` end to end against the Hugging Face goldens of the tiny
// fixtures: last position by default, every position with --all-positions.
#include <gtest/gtest.h>

#include "nodes/cli_run.h"
#include <sys/wait.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

namespace myriad {
namespace {

using testing_cli::CliRun;
using testing_cli::fixtures_dir;
using testing_cli::id_list;
using testing_cli::run_cli;

nlohmann::json golden(const std::string& model) {
  std::ifstream f(fixtures_dir() + "/" + model + "/golden.json");
  return nlohmann::json::parse(f);
}

double max_diff(const nlohmann::json& got, const nlohmann::json& want) {
  EXPECT_EQ(got.size(), want.size());
  double m = 0;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i)
    m = std::max(m, std::fabs(got[i].get<double>() - want[i].get<double>()));
  return m;
}

TEST(LogitsCli, LastPositionMatchesGoldenForEveryPrompt) {
  for (const char* model : {"tiny-llama", "tiny-qwen2"}) {
    const auto g = golden(model);
    for (const auto& [name, prompt] : g["prompts"].items()) {
      const auto r = run_cli("logits --model " + fixtures_dir() + "/" + model + " --ids " + id_list(prompt));
      ASSERT_EQ(r.code, 0) << r.out;
      const auto j = nlohmann::json::parse(r.out);
      ASSERT_EQ(j["logits"].size(), 1u);
      EXPECT_LE(max_diff(j["logits"][0], g["results"]["base"][name]["last_logits"]), 1e-4) << model << " " << name;
    }
  }
}

TEST(LogitsCli, AllPositionsMatchGolden) {
  for (const char* model : {"tiny-llama", "tiny-qwen2"}) {
    const auto g = golden(model);
    const auto r = run_cli("logits --model " + fixtures_dir() + "/" + model + " --all-positions --ids " + id_list(g["prompts"]["p7"]));
    ASSERT_EQ(r.code, 0) << r.out;
    const auto j = nlohmann::json::parse(r.out);
    const auto& want = g["results"]["base"]["p7"]["all_logits"];
    ASSERT_EQ(j["logits"].size(), want.size());
    for (size_t p = 0; p < want.size(); ++p) EXPECT_LE(max_diff(j["logits"][p], want[p]), 1e-4) << model << " " << p;
  }
}

TEST(LogitsCli, BadArgumentsNameTheProblem) {
  const std::string m = fixtures_dir() + "/tiny-llama";
  auto r = run_cli("logits --model " + m + " --ids 1,512", true);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("token id 512"), std::string::npos) << r.out;
  r = run_cli("logits --model " + m + " --ids 1,x", true);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("'x'"), std::string::npos) << r.out;
  r = run_cli("logits --model " + m + " --ids 1 --kv-cache-dtype fp8", true);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("--kv-cache-dtype"), std::string::npos) << r.out;
  r = run_cli("logits --model /nonexistent --ids 1", true);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("/nonexistent"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace myriad
