// AddedVocab: the "added_tokens" of tokenizer.json (special or not) and the
// matcher that finds them in text before the rest of the pipeline runs:
// leftmost-longest over a byte trie, honouring lstrip/rstrip (absorb adjacent
// ASCII whitespace) and single_word (no word character on either side).
// Tokens with normalized=false are matched in the raw text, those with
// normalized=true in each normalized segment, as Hugging Face does.
// Immutable after build(); thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace myriad::tok {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = false;
};

// A piece of text: either an added token (id >= 0) or plain text [begin, end).
struct Segment {
  size_t begin = 0, end = 0;
  int32_t id = -1;
};

class AddedTokenMatcher {
 public:
  // Tokens to match (empty content is ignored).
  explicit AddedTokenMatcher(const std::vector<const AddedToken*>& tokens);
  bool empty() const { return tokens_.empty(); }
  void split(std::string_view text, std::vector<Segment>& out) const;

 private:
  struct Node {
    int32_t token = -1;  // index into tokens_ ending here
    std::vector<std::pair<uint8_t, int32_t>> kids;
  };
  int32_t child(int32_t node, uint8_t b) const;
  std::vector<const AddedToken*> tokens_;
  std::vector<Node> nodes_;  // nodes_[0] is the root
  std::array<int32_t, 256> root_kids_{};
};

}  // namespace myriad::tok
