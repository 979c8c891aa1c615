#include "runtime/output_processor.h"

#include <algorithm>
#include <utility>

namespace myriad {

OutputProcessor::OutputProcessor(std::shared_ptr<const Tokenizer> tokenizer, OutputOptions options)
    : decoder_(std::move(tokenizer), options.skip_special_tokens),
      min_tokens_(options.min_tokens),
      match_after_(options.min_tokens > 0 ? std::string::npos : 0) {
  for (std::string& s : options.stop) {
    if (s.empty()) continue;
    hold_ = std::max(hold_, s.size() - 1);
    stops_.push_back(std::move(s));
  }
}

std::string OutputProcessor::release(size_t upto) {
  if (upto <= released_) return {};
  std::string out = text_.substr(released_, upto - released_);
  released_ = upto;
  return out;
}

// Appends decoded text, cuts it at the earliest stop string, and returns what
// can no longer become part of one. A stop string may straddle the released
// boundary only by its own length, so the search starts that far back.
std::string OutputProcessor::scan(const std::string& piece) {
  text_ += piece;
  size_t cut = std::string::npos;
  for (const std::string& s : stops_) {
    if (match_after_ == std::string::npos) break;  // min_tokens not reached
    size_t from = released_ > s.size() ? released_ - s.size() : 0;
    if (match_after_ >= s.size()) from = std::max(from, match_after_ - s.size() + 1);  // ends past match_after_
    const size_t at = text_.find(s, from);
    if (at != std::string::npos && at < cut) cut = at;
  }
  if (cut != std::string::npos) {
    stopped_ = true;
    text_.resize(std::max(cut, released_));
    return release(text_.size());
  }
  // Hold back the last hold_ bytes, but never split a UTF-8 character: a
  // caller may print each delta as it comes.
  size_t upto = text_.size() > hold_ ? text_.size() - hold_ : 0;
  while (upto > released_ && upto < text_.size() && (uint8_t(text_[upto]) & 0xC0) == 0x80) --upto;
  return release(upto);
}

std::string OutputProcessor::push(int32_t id) {
  if (stopped_ || finished_) return {};
  // The id after the first min_tokens: stop strings may end in its text on
  // (vLLM's: none is checked while the output has min_tokens or fewer).
  if (++pushed_ == min_tokens_ + 1 && min_tokens_ > 0) match_after_ = text_.size();
  return scan(decoder_.push(id));
}

std::string OutputProcessor::finish() {
  if (finished_) return {};
  finished_ = true;
  if (stopped_) return {};
  std::string out = scan(decoder_.flush());
  if (stopped_) return out;
  return out + release(text_.size());
}

}  // namespace myriad
