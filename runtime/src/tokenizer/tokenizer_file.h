// Reading tokenizer.json fast: "model.vocab" and "model.merges" are ~95% of
// a large tokenizer.json (128k-152k tokens, 150k-280k merges). A SAX parser
// streams them into flat lists instead of nlohmann DOM nodes (a std::map
// node per token), and builds the DOM for everything else. The same lists
// can be collected from a DOM (Tokenizer::from_json). Stateless functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/result.h"

namespace myriad::tok {

struct VocabEntry {
  std::string token;
  int64_t id = -1;  // -1: the value was not a non-negative integer
};
struct MergeEntry {
  std::string a, b;  // "a b" strings are split at load
  bool ok = true;    // false: neither "a b" nor ["a", "b"]
  std::string raw;   // for error messages when !ok or split fails
};

struct TokenizerFile {
  nlohmann::json json;  // the file without model.vocab / model.merges when those were streamed
  std::optional<std::vector<VocabEntry>> vocab;
  std::optional<std::vector<MergeEntry>> merges;
};

Result<TokenizerFile> load_tokenizer_file(const std::string& path);

// From a DOM: fills vocab/merges from j["model"] when present there.
TokenizerFile tokenizer_file_from_json(const nlohmann::json& j);

}  // namespace myriad::tok
