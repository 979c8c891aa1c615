// Shared helpers for the tokenizer tests: fixture paths and a per-process
// cache of loaded tokenizers (llama3/qwen3 tokenizer.json are ~10 MB each).
#pragma once

#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "runtime/tokenizer.h"
#include "test_fixtures.h"

namespace myriad::testing {

inline std::string tokenizer_dir(const std::string& name) { return fixtures_dir() + "/tokenizers/" + name; }

inline nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return nlohmann::json::parse(ss.str(), nullptr, false);
}

inline std::shared_ptr<const Tokenizer> shared_tokenizer(const std::string& name) {
  static std::map<std::string, std::shared_ptr<const Tokenizer>> cache;
  auto& t = cache[name];
  if (!t) {
    auto r = Tokenizer::load(tokenizer_dir(name));
    if (!r.ok()) ADD_FAILURE() << r.error().to_string();
    else t = r.value();
  }
  return t;
}

}  // namespace myriad::testing
