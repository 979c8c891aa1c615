// Internal: a nesting-depth pre-check for JSON from untrusted files.
// nlohmann parses iteratively, but dump() and comparisons recurse, so a
// 300k-deep "[[[[...]]]]" would overflow the stack (found by a hand-made
// input run through the fuzz target; libFuzzer's length limit kept it from
// generating one itself).
// Every parser of an untrusted file rejects text nested deeper than this
// before parsing it.
#pragma once

#include <cstddef>
#include <string_view>

namespace myriad {

inline constexpr int kMaxJsonDepth = 64;

// True if `text` has brackets nested deeper than `max_depth` outside strings.
inline bool json_too_deep(std::string_view text, int max_depth = kMaxJsonDepth) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

}  // namespace myriad
