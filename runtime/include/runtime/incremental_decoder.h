// IncrementalDecoder: streams text for ids pushed one at a time (token
// streaming). Each delta is valid UTF-8 and never ends inside a character:
// bytes of an incomplete character (byte-fallback <0xNN> tokens, byte-level
// bytes) are held back until it completes, and text that the space clean-up
// could still change is held back too. Invariant:
//   push(id_1) + ... + push(id_n) + flush() == tokenizer.decode({id_1..id_n}, skip)
// One instance per stream; not thread-safe (the Tokenizer it uses is shared).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "runtime/tokenizer.h"

namespace myriad {

class IncrementalDecoder {
 public:
  IncrementalDecoder(std::shared_ptr<const Tokenizer> tokenizer, bool skip_special_tokens = false);

  // Text that became final with this id (may be empty).
  std::string push(int32_t id);
  // End of stream: the rest, with an incomplete trailing character as U+FFFD.
  std::string flush();

 private:
  std::string take_final(bool at_end);

  std::shared_ptr<const Tokenizer> tok_;
  bool skip_special_;
  bool at_start_ = true;  // no non-skipped token pushed yet
  std::string pending_;   // decoded bytes not yet returned
};

}  // namespace myriad
