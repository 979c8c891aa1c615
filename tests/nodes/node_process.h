// A real myriad-node process on 127.0.0.1 for the integration tests: the
// tiny model in a fresh folder, --data beside it, any port; driven with curl.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_run.h"

namespace myriad::testing_cli {

namespace fs = std::filesystem;

inline std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class Node {
 public:
  // A fresh folder with the tiny model; or, with `reuse`, the folder of a
  // node that ran before (its model and --data): a restart.
  explicit Node(const std::vector<std::string>& extra, const std::string& reuse = "") {
    if (reuse.empty()) {
      dir_ = (fs::temp_directory_path() / ("myriad-node-http-" + std::to_string(::getpid()) + "-" +
                                           std::to_string(counter_++)))
                 .string();
      fs::remove_all(dir_);
      fs::create_directories(dir_);
      EXPECT_EQ(run_cli("make-model --shape tiny --seed 1 --dtype f32 --out " + dir_ + "/tiny").code, 0);
    } else {
      dir_ = reuse;
      keep_ = true;
    }
    pid_ = fork();
    if (pid_ == 0) {
      const std::string out = dir_ + "/node.out";
      freopen(out.c_str(), "w", stdout);
      freopen((dir_ + "/node.err").c_str(), "w", stderr);
      std::vector<std::string> args = {MYRIAD_NODE, "--model", dir_ + "/tiny", "--data", dir_ + "/data",
                                       "--http", "127.0.0.1:0", "--rpc", "127.0.0.1:0", "--threads", "1", "--log-level", "warn"};
      args.insert(args.end(), extra.begin(), extra.end());
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(MYRIAD_NODE, argv.data());
      _exit(127);
    }
    for (int i = 0; i < 200 && url_.empty(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      std::smatch m;
      const std::string out = slurp(dir_ + "/node.out");
      if (std::regex_search(out, m, std::regex("http://127\\.0\\.0\\.1:[0-9]+"))) url_ = m.str();
    }
    EXPECT_FALSE(url_.empty()) << slurp(dir_ + "/node.err");
  }
  ~Node() {
    kill_now();
    if (!keep_) fs::remove_all(dir_);
  }
  // SIGKILL, as a crash: nothing is flushed or drained.
  void kill_now() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      reaped_ = true;
    }
  }
  // The folder stays after this node is gone (for a restart over it).
  void keep() { keep_ = true; }
  // curl with a body; returns "STATUS BODY" (and headers when asked).
  std::string post(const std::string& path, const std::string& body, const std::string& opts = "") {
    const std::string file = dir_ + "/body.json";
    std::ofstream(file) << body;
    return sh("curl -s " + opts + " -w ' HTTP%{http_code}' -H 'Content-Type: application/json' --data-binary @" + file +
              " " + url_ + path);
  }
  int terminate_and_wait() {
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    reaped_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  const std::string& url() const { return url_; }
  // The RPC address (HOST:PORT) from the start line.
  std::string rpc() const {
    std::smatch m;
    const std::string out = slurp(dir_ + "/node.out");
    return std::regex_search(out, m, std::regex("rpc://(127\\.0\\.0\\.1:[0-9]+)")) ? m[1].str() : std::string();
  }
  const std::string& dir() const { return dir_; }

 private:
  static inline int counter_ = 0;
  std::string dir_, url_;
  pid_t pid_ = -1;
  bool reaped_ = false;
  bool keep_ = false;
};

// The body of a "... HTTP200" answer as JSON (discarded when it is not).
inline nlohmann::json body_of(const std::string& r) {
  const size_t at = r.rfind(" HTTP");
  return nlohmann::json::parse(r.substr(0, at), nullptr, false);
}

}  // namespace myriad::testing_cli
