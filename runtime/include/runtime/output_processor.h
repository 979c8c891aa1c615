// What one request's caller shows, as its tokens arrive: incremental
// detokenizing (every delta is valid UTF-8) and stop strings. The engine
// runs one per request when it has a tokenizer, so every caller (CLI, node,
// benches) gets the same text; it can also be used on its own.
//
// Stop strings follow OpenAI/vLLM: the text ends right before the earliest
// stop string (the string itself is not shown), the id that completed it is
// the request's last id, and text that could still turn into a stop string
// is held back until it cannot. Stop *tokens* (eos) are the scheduler's: the
// engine does not push them here, so they never reach the text.
//
// Invariant: without stop strings, the concatenation of push(id_1) ...
// push(id_n) + finish() == tokenizer.decode({id_1..id_n}, skip_special).
// One per request; not thread-safe (the Tokenizer is shared, read-only).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/incremental_decoder.h"
#include "runtime/tokenizer.h"

namespace myriad {

struct OutputOptions {
  std::vector<std::string> stop;    // stop strings; empty ones are ignored
  bool skip_special_tokens = true;  // special tokens (BOS, chat markers) add no text
  // vLLM's min_tokens: a stop string matches only where it ends in the text
  // of a token after the first min_tokens (none ends the output earlier).
  uint32_t min_tokens = 0;
};

class OutputProcessor {
 public:
  OutputProcessor(std::shared_ptr<const Tokenizer> tokenizer, OutputOptions options);

  // The text that id `id` releases (may be empty). After stopped(), returns "".
  std::string push(int32_t id);
  // The end of the output (length, stop token, cancel): whatever was held
  // back; "" after a stop string.
  std::string finish();

  bool stopped() const { return stopped_; }  // a stop string matched
  const std::string& text() const { return text_; }  // everything released so far

 private:
  std::string release(size_t upto);
  std::string scan(const std::string& piece);

  IncrementalDecoder decoder_;
  std::vector<std::string> stops_;
  size_t hold_ = 0;      // longest stop string - 1: text that may still start one
  std::string text_;     // decoded text kept (cut at a stop string)
  size_t released_ = 0;  // bytes of text_ returned so far
  uint32_t min_tokens_ = 0;
  uint32_t pushed_ = 0;  // ids pushed
  size_t match_after_ = 0;  // a stop string counts only if it ends past this byte of text_ (npos: none yet)
  bool stopped_ = false;
  bool finished_ = false;
};

}  // namespace myriad
