// Runs the built `myriad` binary (path in MYRIAD_CLI) for end-to-end CLI
// tests, capturing stdout (and stderr when asked) and the exit code.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "test_fixtures.h"

namespace myriad::testing_cli {

using myriad::testing::fixtures_dir;

struct CliRun {
  int code;
  std::string out;
};

// Runs a shell command; its stdout and exit code (-1 when it did not exit).
inline CliRun run_process(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr);
  std::string out;
  std::array<char, 1 << 16> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

inline CliRun run_cli(const std::string& args, bool with_stderr = false) {
  return run_process(std::string(MYRIAD_CLI) + " " + args + (with_stderr ? " 2>&1" : " 2>/dev/null"));
}

// Runs a shell command; returns its stdout.
inline std::string sh(const std::string& cmd) { return run_process(cmd).out; }

// A JSON array of token ids as the CLI's --ids flag takes it: "1,2,3".
inline std::string id_list(const nlohmann::json& ids) {
  std::string s;
  for (const auto& id : ids) {
    if (!s.empty()) s.push_back(',');
    s.append(std::to_string(id.get<int>()));
  }
  return s;
}

}  // namespace myriad::testing_cli
