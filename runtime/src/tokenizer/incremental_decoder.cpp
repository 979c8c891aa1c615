#include "runtime/incremental_decoder.h"

#include "text_util.h"

namespace myriad {

IncrementalDecoder::IncrementalDecoder(std::shared_ptr<const Tokenizer> tokenizer, bool skip_special_tokens)
    : tok_(std::move(tokenizer)), skip_special_(skip_special_tokens) {}

std::string IncrementalDecoder::push(int32_t id) {
  const int32_t one[1] = {id};
  pending_ += tok_->decode_bytes(one, skip_special_, at_start_);
  if (tok_->id_to_token(id) && !(skip_special_ && tok_->is_special(id))) at_start_ = false;
  return take_final(false);
}

std::string IncrementalDecoder::flush() { return take_final(true); }

std::string IncrementalDecoder::take_final(bool at_end) {
  // 1. Hold back the bytes of a character that is not complete yet.
  size_t cut = pending_.size() - (at_end ? 0 : tok::utf8_incomplete_tail(pending_));
  std::string text = repair_utf8(std::string_view(pending_).substr(0, cut));
  std::string rest = pending_.substr(cut);
  if (tok_->cleans_up_spaces() && !at_end) {
    // 2. Every clean-up rule starts with a space and is at most 4 characters
    // long, and rules only delete spaces. So text up to p is final unless one
    // of the last 3 characters before p is a space that begins a (prefix of
    // a) rule: then hold back from that space, and look again.
    static constexpr std::string_view kRules[] = {" .", " ?", " !", " ,", " ' ", " n't", " 'm", " 's", " 've", " 're"};
    auto rule_prefix = [](std::string_view s) {
      for (auto r : kRules)
        if (s.size() <= r.size() && r.compare(0, s.size(), s) == 0) return true;
      return false;
    };
    size_t p = text.size();
    for (bool moved = true; moved;) {
      moved = false;
      size_t q = p;
      for (int k = 0; k < 3 && q > 0; ++k) {
        do --q;
        while (q > 0 && (uint8_t(text[q]) & 0xC0) == 0x80);
        if (text[q] == ' ' && rule_prefix(std::string_view(text).substr(q, p - q))) {
          p = q;
          moved = true;
          break;
        }
      }
    }
    rest = text.substr(p) + rest;
    text.resize(p);
  }
  pending_ = std::move(rest);
  if (tok_->cleans_up_spaces()) text = clean_up_tokenization_spaces(text);
  return text;
}

}  // namespace myriad
