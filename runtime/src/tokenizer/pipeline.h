// The string-level stages of a Hugging Face tokenizer pipeline, built from the
// "normalizer", "pre_tokenizer", "post_processor" and "decoder" objects of
// tokenizer.json. Each builder returns kUnsupported naming any component type
// it does not implement. All stages are immutable after construction and
// thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "regex.h"
#include "runtime/result.h"

namespace myriad::tok {

// ---- normalizers: text -> text ------------------------------------------
class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string apply(std::string s) const = 0;  // s is valid UTF-8
};
// nullptr for a JSON null (no normalizer).
Result<std::unique_ptr<Normalizer>> make_normalizer(const nlohmann::json& j, const std::string& source);

// ---- pre-tokenizers: one segment -> words ---------------------------------
struct Piece {
  std::string text;
  bool at_text_start = false;  // begins at offset 0 of the original text (Metaspace "first")
};
class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual void apply(std::vector<Piece>& pieces) const = 0;
};
struct PreTokenizerChain {
  std::vector<std::unique_ptr<PreTokenizer>> steps;
  // A ByteLevel pre-tokenizer ends the chain: the model then maps each byte
  // of a word to its GPT-2 alphabet character (done inside the model, which
  // keys its byte-level vocabulary by raw bytes).
  bool byte_level = false;
};
Result<PreTokenizerChain> make_pre_tokenizer(const nlohmann::json& j, const std::string& source);

// ---- post-processor: ids -> ids with special tokens -----------------------
struct PostProcessor {
  // TemplateProcessing "single": a list of items; -1 marks the sequence ($A).
  // Empty with has_template false: add nothing.
  bool has_template = false;
  std::vector<std::vector<int32_t>> single;  // each item: the ids of a special token, or {} for $A
  std::vector<bool> is_sequence;
  void apply(std::vector<int32_t>& ids) const;
};
Result<PostProcessor> make_post_processor(const nlohmann::json& j, const std::string& source);

// ---- decoders: token strings -> text pieces -------------------------------
struct DecodeState {
  bool at_start = true;  // the first token is the first of the whole text
  bool fused = false;    // Fuse ran: tokens[0] is the whole text so far
};
class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void apply(std::vector<std::string>& tokens, DecodeState& st) const = 0;
};
// nullptr for a JSON null (tokens are then joined with spaces).
Result<std::unique_ptr<Decoder>> make_decoder(const nlohmann::json& j, const std::string& source);

// "String" or "Regex" pattern of Split/Replace, as a compiled regex.
Result<std::shared_ptr<const Regex>> make_pattern(const nlohmann::json& pattern, const std::string& what);

}  // namespace myriad::tok
