// The command-line conventions every `myriad` command shares
// (nodes/include/nodes/cli_app.h): --log-level, --flag=value, the last of a
// repeated flag, one value per repeatable flag, and bad usage naming the flag.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "nodes/cli_run.h"

namespace myriad {
namespace {

using testing_cli::fixtures_dir;
using testing_cli::run_cli;

std::string tiny() { return fixtures_dir() + "/tiny-llama"; }

TEST(CliConventions, LogLevelInfoLogsToStderrAndLeavesStdoutAlone) {
  const std::string cmd = "logits --model " + tiny() + " --ids 1,2,3";
  const auto quiet = run_cli(cmd, /*with_stderr=*/true);  // the default (warn): nothing on stderr
  const auto info = run_cli(cmd + " --log-level info");
  const auto both = run_cli(cmd + " --log-level=info", /*with_stderr=*/true);
  ASSERT_EQ(quiet.code, 0) << quiet.out.substr(0, 300);
  ASSERT_EQ(info.code, 0);
  EXPECT_EQ(quiet.out, info.out);  // stdout: the same logits, JSON only
  EXPECT_FALSE(nlohmann::json::parse(quiet.out, nullptr, /*allow_exceptions=*/false).is_discarded());
  EXPECT_NE(both.out.find("] [info] model " + tiny()), std::string::npos) << both.out.substr(0, 400);
  EXPECT_NE(both.out.find("] [info] executor: "), std::string::npos) << both.out.substr(0, 400);
}

TEST(CliConventions, BadLogLevelIsAUsageErrorNamingTheFlag) {
  for (const char* cmd : {"selfcheck", "make-model --shape tiny --seed 1 --dtype f32 --out /nonexistent/x"}) {
    const auto r = run_cli(std::string(cmd) + " --log-level loud", /*with_stderr=*/true);
    EXPECT_EQ(r.code, 2) << cmd;
    EXPECT_NE(r.out.find("--log-level"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("'loud'"), std::string::npos) << r.out;
  }
}

TEST(CliConventions, RepeatedFlagKeepsItsLastValueAndRepeatableFlagsOneValueEach) {
  const std::string gen = "generate --model " + tiny() + " --ids 1,2,3 --temperature 0 --ignore-eos --json";
  const auto r = run_cli(gen + " --max-tokens 2 --max-tokens=5");
  ASSERT_EQ(r.code, 0);
  EXPECT_EQ(nlohmann::json::parse(r.out)["ids"].size(), 5u);
  // --adapter takes one folder per occurrence: a second word is a stray argument.
  const auto stray = run_cli(gen + " --adapter " + tiny() + "/adapters/r4-qv " + tiny() + "/adapters/r8-all",
                             /*with_stderr=*/true);
  EXPECT_EQ(stray.code, 2);
  EXPECT_NE(stray.out.find("not expected: " + tiny() + "/adapters/r8-all"), std::string::npos) << stray.out;
}

TEST(CliConventions, MalformedNumberAndMisspeltFlagAreNamed) {
  auto r = run_cli("generate --model " + tiny() + " --ids 1 --max-tokens ten", /*with_stderr=*/true);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("--max-tokens"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ten"), std::string::npos) << r.out;
  // A misspelt required flag: both the missing flag and the stray one.
  r = run_cli("logits --mdoel " + tiny() + " --ids 1", /*with_stderr=*/true);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("--model is required"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--mdoel"), std::string::npos) << r.out;
}

TEST(CliConventions, EveryCommandHelpListsLogLevelAndDefaults) {
  for (const char* cmd : {"selfcheck", "tokenize", "detokenize", "make-model", "logits", "generate"}) {
    const auto r = run_cli(std::string(cmd) + " --help");
    EXPECT_EQ(r.code, 0) << cmd;
    EXPECT_NE(r.out.find("--log-level LEVEL"), std::string::npos) << cmd << ": " << r.out;
    EXPECT_NE(r.out.find("(default warn)"), std::string::npos) << cmd << ": " << r.out;
  }
  const auto gen = run_cli("generate --help");
  EXPECT_NE(gen.out.find("--model DIR (required)"), std::string::npos) << gen.out;
  EXPECT_NE(gen.out.find("(default 16)"), std::string::npos) << gen.out;
}

}  // namespace
}  // namespace myriad
