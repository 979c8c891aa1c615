// End-to-end tests of `myriad tokenize` / `myriad detokenize` against the
// tokenizer goldens (the exact interface outside checks use).
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include "test_fixtures.h"

using myriad::testing::fixtures_dir;

extern char** environ;

namespace {

using nlohmann::json;

struct Run {
  int rc = -1;
  std::string out, err;
};

std::string read_fd(int fd) {
  std::string s;
  char buf[65536];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) s.append(buf, size_t(n));
  return s;
}

// Runs the CLI with exact argv (no shell: texts with quotes/newlines pass as is).
Run run_cli(const std::vector<std::string>& args) {
  std::vector<std::string> all{MYRIAD_CLI};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  const auto dir = std::filesystem::temp_directory_path();
  const std::string err_path = (dir / ("myriad_cli_err_" + std::to_string(getpid()))).string();
  int out_pipe[2];
  EXPECT_EQ(pipe(out_pipe), 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
  posix_spawn_file_actions_addclose(&fa, out_pipe[0]);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  pid_t pid = 0;
  Run r;
  const int sp = posix_spawn(&pid, all[0].c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(out_pipe[1]);
  if (sp != 0) {
    close(out_pipe[0]);
    ADD_FAILURE() << "cannot run " << all[0];
    return r;
  }
  r.out = read_fd(out_pipe[0]);
  close(out_pipe[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream ef(err_path);
  std::stringstream ss;
  ss << ef.rdbuf();
  r.err = ss.str();
  std::filesystem::remove(err_path);
  return r;
}


std::string tok_dir(const std::string& name) { return fixtures_dir() + "/tokenizers/" + name; }

json golden(const std::string& name) {
  std::ifstream f(tok_dir(name) + "/golden.json");
  std::stringstream ss;
  ss << f.rdbuf();
  return json::parse(ss.str(), nullptr, false);
}

json parse_out(const Run& r) {
  EXPECT_EQ(r.rc, 0) << r.err;
  json j = json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << "not JSON: " << r.out;
  return j.is_discarded() ? json::object() : j;
}

class TokenizeCli : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizeCli, TextIdsMatchGolden) {
  const json g = golden(GetParam());
  // A spread of cases (every CLI run loads the tokenizer; the library tests
  // cover all cases).
  for (const char* id : {"special_mixed_literals"}) {
    for (const auto& c : g["cases"]) {
      if (c["id"] != id) continue;
      const auto with = parse_out(run_cli({"tokenize", "--tokenizer", tok_dir(GetParam()), "--text", c["text"]}));
      EXPECT_EQ(with["ids"], c["ids"]) << id;
      if (GetParam() == "mistral") {  // the only one whose post_processor adds a token
        const auto without =
            parse_out(run_cli({"tokenize", "--tokenizer", tok_dir(GetParam()), "--text", c["text"], "--no-special"}));
        EXPECT_EQ(without["ids"], c["ids_no_special"]) << id;
      }
      std::string ids;
      for (const auto& i : c["ids"]) {
        if (!ids.empty()) ids += ',';
        ids += std::to_string(i.get<int>());
      }
      if (ids.empty()) continue;
      const auto text = parse_out(run_cli({"detokenize", "--tokenizer", tok_dir(GetParam()), "--ids", ids, "--skip-special"}));
      EXPECT_EQ(text["text"], c["decoded"]) << id;
    }
  }
}

TEST_P(TokenizeCli, ChatMatchesGolden) {
  const json g = golden(GetParam());
  const auto tmp = std::filesystem::temp_directory_path() / ("myriad_chat_" + std::to_string(getpid()));
  std::filesystem::create_directories(tmp);
  std::vector<std::string> extra;
  if (g["chat"].contains("template")) {  // mistral: no chat_template in its config
    std::ofstream(tmp / "template.jinja") << g["chat"]["template"].get<std::string>();
    extra = {"--chat-template", (tmp / "template.jinja").string()};
  }
  for (const auto& c : g["chat"]["cases"]) {
    std::ofstream(tmp / "messages.json") << c["messages"].dump();
    std::vector<std::string> args{"tokenize", "--tokenizer", tok_dir(GetParam()), "--chat", (tmp / "messages.json").string()};
    args.insert(args.end(), extra.begin(), extra.end());
    const auto out = parse_out(run_cli(args));
    EXPECT_EQ(out["text"], c["rendered"]) << c["name"];
    EXPECT_EQ(out["ids"], c["ids"]) << c["name"];
  }
  std::filesystem::remove_all(tmp);
}

INSTANTIATE_TEST_SUITE_P(All, TokenizeCli, ::testing::Values("mistral", "llama3", "qwen3"),
                         [](const auto& info) { return info.param; });

TEST(TokenizeCliErrors, BadArgumentsAreReported) {
  const std::string dir = tok_dir("mistral");
  auto r = run_cli({"tokenize", "--tokenizer", dir});
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("--text"), std::string::npos) << r.err;
  r = run_cli({"tokenize", "--tokenizer", "/nonexistent/tok", "--text", "x"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("/nonexistent/tok"), std::string::npos) << r.err;
  r = run_cli({"detokenize", "--tokenizer", dir, "--ids", "1,x"});
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("'x'"), std::string::npos) << r.err;
  r = run_cli({"tokenize", "--tokenizer", dir, "--chat", "/nonexistent/chat.json"});
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("/nonexistent/chat.json"), std::string::npos) << r.err;
  // mistral's config has no chat_template
  const auto tmp = std::filesystem::temp_directory_path() / ("myriad_msgs_" + std::to_string(getpid()) + ".json");
  std::ofstream(tmp) << R"([{"role": "user", "content": "hi"}])";
  r = run_cli({"tokenize", "--tokenizer", dir, "--chat", tmp.string()});
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("chat_template"), std::string::npos) << r.err;
  std::filesystem::remove(tmp);
}

TEST(TokenizeCliErrors, DetokenizeInvalidUtf8DoesNotFail) {
  // <0xE4> alone (mistral byte fallback) is half a character: U+FFFD, exit 0.
  const auto out = parse_out(run_cli({"detokenize", "--tokenizer", tok_dir("mistral"), "--ids", "231"}));
  EXPECT_EQ(out["text"], "\xEF\xBF\xBD");
}

}  // namespace
