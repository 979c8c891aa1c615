// The CLI's outputs do not change when the engine underneath does:
// tests/nodes/cli_outputs.json holds what `myriad generate` printed for a
// fixed set of inputs at the commit it names (written by
// tests/nodes/record_cli_outputs.py); each is run again and must print the
// same bytes: greedy and seeded sampling, penalties, stop strings and eos,
// chat, adapters and a weighted mixture, streamed and --json.
#include <gtest/gtest.h>

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

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
  return s;
}

TEST(CliOutputs, GenerateMatchesTheRecordedOutputs) {
  std::ifstream in(std::string(MYRIAD_SOURCE_DIR) + "/tests/nodes/cli_outputs.json");
  ASSERT_TRUE(in) << "tests/nodes/cli_outputs.json missing";
  const auto recorded = nlohmann::json::parse(in);
  const fs::path tiny = fs::temp_directory_path() / ("myriad_cli_outputs_" + std::to_string(std::random_device{}()));
  ASSERT_EQ(run_cli("make-model --shape tiny --seed 7 --dtype bf16 --out " + tiny.string()).code, 0);
  ASSERT_GE(recorded["cases"].size(), 10u);
  for (const auto& c : recorded["cases"]) {
    const std::string args =
        replace_all(replace_all(c["args"].get<std::string>(), "{TINY}", tiny.string()), "{FIXTURES}", fixtures_dir());
    SCOPED_TRACE(args);
    const auto r = run_cli(args);
    EXPECT_EQ(r.code, 0);
    EXPECT_EQ(r.out, c["stdout"].get<std::string>()) << "recorded from " << recorded["recorded_from"];
  }
  std::error_code ec;
  fs::remove_all(tiny, ec);
}

}  // namespace
}  // namespace myriad
