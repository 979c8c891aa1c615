// `myriad logits` with adapters, end to end through the CLI binary:
// --batch FILE.json (rows with their own adapters / mixtures, one batched
// step) against the PEFT goldens, --adapter DIR[:w], and a hostile adapter
// refused with a clear message and a non-zero exit; generate --adapter
// against the greedy golden.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include "test_fixtures.h"

using myriad::testing::fixtures_dir;

namespace {

namespace fs = std::filesystem;
using nlohmann::json;


struct AdapterCliRun {
  int code = -1;
  std::string out, err;
};

AdapterCliRun run_adapter_cli(const std::string& args) {
  static int n = 0;
  const std::string err_path = (fs::temp_directory_path() / ("myriad_cli_err_" + std::to_string(::getpid()) + "_" + std::to_string(n++))).string();
  const std::string cmd = std::string(MYRIAD_CLI) + " " + args + " 2>" + err_path;
  AdapterCliRun r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 65536> buf;
  size_t got;
  while ((got = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), got);
  const int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream f(err_path);
  r.err.assign(std::istreambuf_iterator<char>(f), {});
  fs::remove(err_path);
  return r;
}

std::string write_temp(const std::string& name, const std::string& text) {
  const std::string p = (fs::temp_directory_path() / (name + "_" + std::to_string(::getpid()))).string();
  std::ofstream(p) << text;
  return p;
}

double max_diff(const json& a, const json& b) {
  double d = a.size() == b.size() ? 0 : 1e9;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) d = std::max(d, std::abs(a[i].get<double>() - b[i].get<double>()));
  return d;
}

TEST(AdapterCli, BatchRowsWithOwnAdaptersMatchPeftGoldensInOneStep) {
  const std::string model = fixtures_dir() + "/tiny-llama";
  std::ifstream gf(model + "/golden.json");
  const json g = json::parse(gf);
  const std::string ad = model + "/adapters/";
  json batch = {{"rows", json::array()}};
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"p7", "base"}, {"p7", "r4-qv"}, {"p33", "r8-all"}, {"p100", "r16-rslora-o-down"}, {"p1", "r8-all"}};
  for (const auto& [p, v] : cases) {
    json row = {{"ids", g["prompts"][p]}, {"adapters", json::array()}};
    if (v != "base") row["adapters"].push_back({{"path", ad + v}, {"weight", 1.0}});
    batch["rows"].push_back(row);
  }
  // A mixture row.
  batch["rows"].push_back({{"ids", g["prompts"]["p7"]},
                           {"adapters", {{{"path", ad + "r8-all"}, {"weight", 0.5}}, {{"path", ad + "r4-qv"}, {"weight", 0.5}}}}});
  const std::string file = write_temp("myriad_batch.json", batch.dump());
  AdapterCliRun r = run_adapter_cli("logits --model " + model + " --batch " + file);
  ASSERT_EQ(r.code, 0) << r.err;
  const json out = json::parse(r.out);
  ASSERT_EQ(out["rows"].size(), cases.size() + 1);
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& want = g["results"][cases[i].second][cases[i].first]["last_logits"];
    EXPECT_LE(max_diff(out["rows"][i]["logits"], want), 1e-4) << cases[i].first << " " << cases[i].second;
  }
  // The mixture row alone equals itself in the batch, and differs from its parts.
  json alone = {{"rows", {batch["rows"].back()}}};
  const std::string file2 = write_temp("myriad_batch_alone.json", alone.dump());
  AdapterCliRun r2 = run_adapter_cli("logits --model " + model + " --batch " + file2);
  ASSERT_EQ(r2.code, 0) << r2.err;
  const json out2 = json::parse(r2.out);
  EXPECT_LE(max_diff(out2["rows"][0]["logits"], out["rows"].back()["logits"]), 1e-5);
  EXPECT_GT(max_diff(out["rows"].back()["logits"], out["rows"][0]["logits"]), 0.05);
  EXPECT_GT(max_diff(out["rows"].back()["logits"], out["rows"][1]["logits"]), 0.05);
  fs::remove(file);
  fs::remove(file2);
}

TEST(AdapterCli, HostileAdapterIsRefusedWithAClearMessage) {
  const std::string model = fixtures_dir() + "/tiny-llama";
  const std::string dir = (fs::temp_directory_path() / ("myriad_dora_" + std::to_string(::getpid()))).string();
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy_file(model + "/adapters/r4-qv/adapter_model.safetensors", dir + "/adapter_model.safetensors");
  std::ifstream cf(model + "/adapters/r4-qv/adapter_config.json");
  json cfg = json::parse(cf);
  cfg["use_dora"] = true;
  std::ofstream(dir + "/adapter_config.json") << cfg.dump();
  json batch = {{"rows", {{{"ids", {1, 2, 3}}, {"adapters", {{{"path", dir}}}}}}}};
  const std::string file = write_temp("myriad_batch_dora.json", batch.dump());
  AdapterCliRun r = run_adapter_cli("logits --model " + model + " --batch " + file);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("DoRA"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());
  fs::remove_all(dir);
  fs::remove(file);
}

TEST(AdapterCli, AdapterFlagMatchesGolden) {
  const std::string model = fixtures_dir() + "/tiny-llama";
  std::ifstream gf(model + "/golden.json");
  const json g = json::parse(gf);
  std::string ids;
  for (const auto& id : g["prompts"]["p7"]) {
    if (!ids.empty()) ids += ',';
    ids += std::to_string(id.get<int>());
  }
  AdapterCliRun r = run_adapter_cli("logits --model " + model + " --ids " + ids + " --adapter " + model + "/adapters/r8-all:1.0");
  ASSERT_EQ(r.code, 0) << r.err;
  const json out = json::parse(r.out);
  ASSERT_TRUE(out.contains("logits")) << r.out.substr(0, 200);
  ASSERT_EQ(out["logits"].size(), 1u);
  EXPECT_LE(max_diff(out["logits"][0], g["results"]["r8-all"]["p7"]["last_logits"]), 1e-4);
  // Two --adapter flags with weights: a mixture, different from r8-all alone.
  AdapterCliRun m = run_adapter_cli("logits --model " + model + " --ids " + ids + " --adapter " + model + "/adapters/r8-all:0.5 --adapter " +
                     model + "/adapters/r4-qv:0.5");
  ASSERT_EQ(m.code, 0) << m.err;
  EXPECT_GT(max_diff(json::parse(m.out)["logits"][0], out["logits"][0]), 0.05);
}

TEST(AdapterCli, GenerateWithAdapterMatchesGreedyGolden) {
  const std::string model = fixtures_dir() + "/tiny-llama";
  std::ifstream gf(model + "/golden.json");
  const json g = json::parse(gf);
  std::string ids;
  for (const auto& id : g["prompts"]["p33"]) {
    if (!ids.empty()) ids += ',';
    ids += std::to_string(id.get<int>());
  }
  AdapterCliRun r = run_adapter_cli("generate --model " + model + " --ids " + ids + " --adapter " + model +
                     "/adapters/r16-rslora-o-down --max-tokens 24 --temperature 0 --ignore-eos --json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["ids"], g["results"]["r16-rslora-o-down"]["p33"]["greedy_tokens"]);
}

}  // namespace
