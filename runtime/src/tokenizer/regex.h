// Oniguruma-backed regex (Ruby syntax, UTF-8) for the Split pre-tokenizer and
// the Replace normalizer/decoder: Hugging Face tokenizers uses Oniguruma too,
// so \s, \p{L}, (?i:...) and lookahead behave exactly as in the reference.
// Immutable after compile; find_all may run concurrently from many threads.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/result.h"

namespace myriad::tok {

class Regex {
 public:
  // `what` names the pattern's owner in error messages (e.g. "Split pre_tokenizer").
  static Result<std::shared_ptr<const Regex>> compile(const std::string& pattern, const std::string& what);
  // Pattern that matches `literal` exactly (Hugging Face {"String": ...} patterns).
  static std::string escape(std::string_view literal);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends the [begin, end) byte ranges of successive non-overlapping,
  // non-empty matches in `text` (valid UTF-8).
  void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const;

 private:
  Regex() = default;
  void* re_ = nullptr;  // regex_t*, kept opaque so that oniguruma.h stays private
};

}  // namespace myriad::tok
