// Tokenizer: a Hugging Face tokenizer (tokenizer.json + tokenizer_config.json)
// reimplemented in C++: added tokens, normalizers, pre-tokenizers, BPE
// (byte-level, or SentencePiece-style with byte fallback), post-processor and
// decoders. Encodes/decodes exactly as Hugging Face `tokenizers` does for the
// supported components; load() rejects any other component naming it.
// Immutable after load() (shared as shared_ptr<const>); encode/decode are
// thread-safe (the word cache is internally locked).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/result.h"
#include "runtime/tokenizer_config.h"

namespace myriad {

namespace tok {
struct TokenizerFile;
}

class Tokenizer {
 public:
  // `dir` holds tokenizer.json and (optionally) tokenizer_config.json.
  static Result<std::shared_ptr<const Tokenizer>> load(const std::string& dir);
  // From already-read files; `source` names them in errors.
  static Result<std::shared_ptr<const Tokenizer>> from_json(const nlohmann::json& tokenizer_json,
                                                            TokenizerConfig config, const std::string& source);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Added tokens in `text` are matched first (longest match); invalid UTF-8 in
  // `text` is replaced by U+FFFD first. add_special_tokens applies the
  // post_processor's template (e.g. <s> for Llama 2 / Mistral).
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const;
  // Unknown ids are skipped; applies clean_up_tokenization_spaces when the
  // config says so. Always valid UTF-8.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  // Decoder output as raw bytes, before UTF-8 repair and space clean-up.
  // Concatenation property (what IncrementalDecoder relies on):
  //   decode_bytes(a ++ b, s, true) == decode_bytes(a, s, true) + decode_bytes(b, s, false)
  // where `at_start` false means "continues earlier output" (no start-of-text
  // stripping, no leading join space). a must contain a non-skipped token.
  std::string decode_bytes(std::span<const int32_t> ids, bool skip_special_tokens, bool at_start) const;
  bool cleans_up_spaces() const;

  size_t vocab_size() const;  // max id + 1 over the model vocabulary and added tokens
  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::optional<std::string> id_to_token(int32_t id) const;  // the vocabulary string
  bool is_special(int32_t id) const;                          // an added token marked special
  std::optional<int32_t> bos_id() const;                      // config bos_token, if in vocab
  std::vector<int32_t> eos_ids() const;                       // config eos_token, if in vocab
  const TokenizerConfig& config() const;

  struct Impl;

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  static Result<std::shared_ptr<const Tokenizer>> build(const tok::TokenizerFile& file, TokenizerConfig config,
                                                        const std::string& source);
  std::unique_ptr<Impl> impl_;
};

// Lossy UTF-8 repair: each maximal invalid subpart becomes one U+FFFD (as
// Rust's String::from_utf8_lossy and the WHATWG TextDecoder).
std::string repair_utf8(std::string_view bytes);
// transformers' clean_up_tokenization: " ." -> ".", " n't" -> "n't", ...
std::string clean_up_tokenization_spaces(std::string_view text);

}  // namespace myriad
