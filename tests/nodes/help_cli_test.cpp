// `myriad --help` and `myriad <command> --help`: usage on stdout, exit 0;
// no command at all is a usage error (exit 2).
#include <gtest/gtest.h>

#include "nodes/cli_run.h"

namespace myriad {
namespace {

using testing_cli::run_cli;

TEST(HelpCli, EveryCommandPrintsItsUsageAndExitsZero) {
  const std::pair<const char*, const char*> commands[] = {
      {"selfcheck", "no flags"},       {"tokenize", "--tokenizer"}, {"detokenize", "--skip-special"},
      {"make-model", "--shape"},       {"logits", "--kv-cache-dtype"}, {"generate", "--threads"},
  };
  for (const auto& [cmd, flag] : commands) {
    for (const char* h : {"--help", "-h"}) {
      // --help wins wherever it stands, before any flag is checked.
      const auto r = run_cli(std::string(cmd) + " --model /nonexistent " + h);
      EXPECT_EQ(r.code, 0) << cmd << " " << h;
      EXPECT_NE(r.out.find(std::string("usage: myriad ") + cmd), std::string::npos) << r.out;
      EXPECT_NE(r.out.find(flag), std::string::npos) << cmd << ": " << r.out;
    }
  }
}

#ifdef MYRIAD_NODE
// The full build's client commands (a node's RPC API) follow the same
// conventions, nested ones (`adapters add`) included.
TEST(HelpCli, ClientCommandsPrintTheirUsageAndNeedAServer) {
  const std::pair<const char*, const char*> commands[] = {
      {"complete", "--server HOST:PORT (required)"}, {"chat", "--api-key K"}, {"adapters", "add"},
      {"adapters add", "--path DIR (required)"},       {"adapters ls", "--json"}, {"adapters rm", "--name NAME (required)"},
  };
  for (const auto& [cmd, flag] : commands) {
    const auto r = run_cli(std::string(cmd) + " --model /nonexistent --help");
    EXPECT_EQ(r.code, 0) << cmd;
    EXPECT_NE(r.out.find(std::string("usage: myriad ") + cmd), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(flag), std::string::npos) << cmd << ": " << r.out;
    EXPECT_NE(r.out.find("--log-level LEVEL"), std::string::npos) << cmd << ": " << r.out;
  }
  for (const char* cmd : {"adapters ls", "complete --model tiny --prompt hi"}) {
    const auto r = run_cli(cmd, /*with_stderr=*/true);
    EXPECT_EQ(r.code, 2) << cmd;
    EXPECT_NE(r.out.find("--server is required"), std::string::npos) << r.out;
  }
  EXPECT_EQ(run_cli("adapters").code, 2);  // a subcommand is required
}
#endif

TEST(HelpCli, TopLevelHelpListsCommandsAndNoCommandIsAUsageError) {
  const auto r = run_cli("--help");
  EXPECT_EQ(r.code, 0);
  for (const char* cmd : {"selfcheck", "tokenize", "detokenize", "make-model", "logits", "generate"})
    EXPECT_NE(r.out.find(cmd), std::string::npos) << r.out;
  EXPECT_EQ(run_cli("").code, 2);
  const auto bad = run_cli("frobnicate", /*with_stderr=*/true);
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.out.find("unknown command 'frobnicate'"), std::string::npos) << bad.out;
}

}  // namespace
}  // namespace myriad
