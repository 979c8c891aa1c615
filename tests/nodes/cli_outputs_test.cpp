// The CLI's outputs do not change when the engine underneath does:
// tests/nodes/cli_outputs.json holds what `myriad generate` and `myriad
// logits` printed for a fixed set of inputs at the commit it names (written
// by tests/nodes/record_cli_outputs.py); each is run again and must print the
// same bytes (greedy and seeded sampling, penalties, stop strings and eos,
// chat, adapters and weighted mixtures, streamed and --json, logits of the
// last and all positions, a --batch), except that a case with "atol" (a
// weighted mixture of adapters, whose sums may be ordered differently) must
// give the same JSON with every float within atol.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "nodes/cli_run.h"

namespace myriad {
namespace {

namespace fs = std::filesystem;
using testing_cli::fixtures_dir;
using testing_cli::run_cli;

// Same JSON shape, same strings and integers, floats within atol.
void expect_json_near(const nlohmann::json& got, const nlohmann::json& want, double atol, const std::string& where) {
  ASSERT_EQ(got.type(), want.type()) << where;
  if (want.is_number_float() || (want.is_number() && got.is_number_float())) {
    ASSERT_LE(std::fabs(got.get<double>() - want.get<double>()), atol) << where;
  } else if (want.is_array()) {
    ASSERT_EQ(got.size(), want.size()) << where;
    for (size_t i = 0; i < want.size(); ++i) expect_json_near(got[i], want[i], atol, where + "[" + std::to_string(i) + "]");
  } else if (want.is_object()) {
    ASSERT_EQ(got.size(), want.size()) << where;
    for (auto it = want.begin(); it != want.end(); ++it) {
      ASSERT_TRUE(got.contains(it.key())) << where << "." << it.key();
      expect_json_near(got[it.key()], it.value(), atol, where + "." + it.key());
    }
  } else {
    ASSERT_EQ(got, want) << where;
  }
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
  return s;
}

TEST(CliOutputs, GenerateAndLogitsMatchTheRecordedOutputs) {
  std::ifstream in(std::string(MYRIAD_SOURCE_DIR) + "/tests/nodes/cli_outputs.json");
  ASSERT_TRUE(in) << "tests/nodes/cli_outputs.json missing";
  const auto recorded = nlohmann::json::parse(in);
  const fs::path tiny = fs::temp_directory_path() / ("myriad_cli_outputs_" + std::to_string(std::random_device{}()));
  ASSERT_EQ(run_cli("make-model --shape tiny --seed 7 --dtype bf16 --out " + tiny.string()).code, 0);
  ASSERT_GE(recorded["cases"].size(), 10u);
  // The cases were recorded from the repository root (a --batch file names
  // its adapters relative to it).
  const fs::path cwd = fs::current_path();
  fs::current_path(MYRIAD_SOURCE_DIR);
  for (const auto& c : recorded["cases"]) {
    const std::string args =
        replace_all(replace_all(c["args"].get<std::string>(), "{TINY}", tiny.string()), "{FIXTURES}", fixtures_dir());
    SCOPED_TRACE(args);
    const auto r = run_cli(args);
    EXPECT_EQ(r.code, 0);
    if (c.contains("atol")) {
      const auto got = nlohmann::json::parse(r.out, nullptr, false);
      ASSERT_FALSE(got.is_discarded()) << r.out.substr(0, 200);
      expect_json_near(got, nlohmann::json::parse(c["stdout"].get<std::string>()), c["atol"].get<double>(), "$");
    } else {
      EXPECT_EQ(r.out, c["stdout"].get<std::string>()) << "recorded from " << recorded["recorded_from"];
    }
  }
  fs::current_path(cwd);
  std::error_code ec;
  fs::remove_all(tiny, ec);
}

}  // namespace
}  // namespace myriad
