#include "added_vocab.h"

#include <utf8proc.h>

#include "text_util.h"

namespace myriad::tok {

AddedTokenMatcher::AddedTokenMatcher(const std::vector<const AddedToken*>& tokens) {
  root_kids_.fill(-1);
  nodes_.emplace_back();
  for (const AddedToken* t : tokens) {
    if (t->content.empty()) continue;
    const auto index = int32_t(tokens_.size());
    tokens_.push_back(t);
    int32_t node = 0;
    for (char c : t->content) {
      const auto b = uint8_t(c);
      int32_t next = child(node, b);
      if (next < 0) {
        next = int32_t(nodes_.size());
        nodes_.emplace_back();
        if (node == 0) root_kids_[b] = next;
        else nodes_[size_t(node)].kids.emplace_back(b, next);
      }
      node = next;
    }
    nodes_[size_t(node)].token = index;  // a duplicate content: the later token wins
  }
}

int32_t AddedTokenMatcher::child(int32_t node, uint8_t b) const {
  if (node == 0) return root_kids_[b];
  for (const auto& [k, n] : nodes_[size_t(node)].kids)
    if (k == b) return n;
  return -1;
}

namespace {

bool ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Word character for single_word: letter, number or underscore.
bool word_char_before(std::string_view s, size_t pos) {
  if (pos == 0) return false;
  size_t i = pos - 1;
  while (i > 0 && (uint8_t(s[i]) & 0xC0) == 0x80) --i;
  const size_t n = utf8_seq_len(s, i);
  if (!n) return false;
  const char32_t cp = utf8_decode_at(s, i, n);
  if (cp == '_') return true;
  const auto cat = utf8proc_category(utf8proc_int32_t(cp));
  return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
         (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO);
}

bool word_char_at(std::string_view s, size_t pos) {
  if (pos >= s.size()) return false;
  const size_t n = utf8_seq_len(s, pos);
  if (!n) return false;
  const char32_t cp = utf8_decode_at(s, pos, n);
  if (cp == '_') return true;
  const auto cat = utf8proc_category(utf8proc_int32_t(cp));
  return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
         (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO);
}

}  // namespace

void AddedTokenMatcher::split(std::string_view text, std::vector<Segment>& out) const {
  size_t seg_start = 0;
  size_t i = 0;
  const size_t n = text.size();
  while (i < n) {
    int32_t node = root_kids_[uint8_t(text[i])];
    if (node < 0) {
      ++i;
      continue;
    }
    int32_t best = -1;
    size_t best_end = 0;
    size_t j = i + 1;
    for (;;) {
      if (nodes_[size_t(node)].token >= 0) best = nodes_[size_t(node)].token, best_end = j;
      if (j >= n) break;
      node = child(node, uint8_t(text[j]));
      if (node < 0) break;
      ++j;
    }
    if (best < 0) {
      ++i;
      continue;
    }
    const AddedToken& t = *tokens_[size_t(best)];
    if (t.single_word && (word_char_before(text, i) || word_char_at(text, best_end))) {
      ++i;
      continue;
    }
    size_t mb = i, me = best_end;
    if (t.lstrip)
      while (mb > seg_start && ascii_space(text[mb - 1])) --mb;
    if (t.rstrip)
      while (me < n && ascii_space(text[me])) ++me;
    if (mb > seg_start) out.push_back(Segment{seg_start, mb, -1});
    out.push_back(Segment{mb, me, t.id});
    seg_start = i = me;
  }
  if (seg_start < n) out.push_back(Segment{seg_start, n, -1});
}

}  // namespace myriad::tok
