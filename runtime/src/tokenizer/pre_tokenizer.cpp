// Pre-tokenizers of tokenizer.json: Split (regex or string, all five
// delimiter behaviours, invert), ByteLevel (add_prefix_space, use_regex),
// Metaspace, Whitespace, WhitespaceSplit, Digits, Sequence.
#include <algorithm>

#include "pipeline.h"
#include "text_util.h"

namespace myriad::tok {

namespace {

using nlohmann::json;

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// Splits `p` at the matches of `re` following Hugging Face's
// SplitDelimiterBehavior; appends the resulting non-empty pieces to `out`.
void split_piece(const Piece& p, const Regex& re, Behavior behavior, bool invert, std::vector<Piece>& out) {
  std::vector<std::pair<size_t, size_t>> m;
  re.find_all(p.text, m);
  // (begin, end, is_match) covering the whole piece
  struct Span {
    size_t b, e;
    bool match;
  };
  std::vector<Span> spans;
  size_t pos = 0;
  for (const auto& [b, e] : m) {
    if (b > pos) spans.push_back({pos, b, invert});
    spans.push_back({b, e, !invert});
    pos = e;
  }
  if (pos < p.text.size()) spans.push_back({pos, p.text.size(), invert});

  if (behavior == Behavior::kIsolated) {
    for (const auto& sp : spans) out.push_back(Piece{p.text.substr(sp.b, sp.e - sp.b), p.at_text_start && sp.b == 0});
    return;
  }
  std::vector<Span> merged;
  switch (behavior) {
    case Behavior::kIsolated: break;
    case Behavior::kRemoved:
      for (const auto& s : spans)
        if (!s.match) merged.push_back(s);
      break;
    case Behavior::kMergedWithPrevious: {
      bool prev_match = false;
      for (const auto& s : spans) {
        if (s.match && !prev_match && !merged.empty()) merged.back().e = s.e;
        else merged.push_back(s);
        prev_match = s.match;
      }
      break;
    }
    case Behavior::kMergedWithNext: {
      bool prev_match = false;
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->match && !prev_match && !merged.empty()) merged.back().b = it->b;
        else merged.push_back(*it);
        prev_match = it->match;
      }
      std::reverse(merged.begin(), merged.end());
      break;
    }
    case Behavior::kContiguous: {
      bool prev_match = false;
      for (const auto& s : spans) {
        if (s.match == prev_match && !merged.empty()) merged.back().e = s.e;
        else merged.push_back(s);
        prev_match = s.match;
      }
      break;
    }
  }
  for (const auto& s : merged)
    if (s.e > s.b) out.push_back(Piece{p.text.substr(s.b, s.e - s.b), p.at_text_start && s.b == 0});
}

class RegexSplit final : public PreTokenizer {
 public:
  RegexSplit(std::shared_ptr<const Regex> re, Behavior b, bool invert) : re_(std::move(re)), behavior_(b), invert_(invert) {}
  void apply(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    out.reserve(pieces.size() * 4);
    for (const auto& p : pieces) split_piece(p, *re_, behavior_, invert_, out);
    pieces = std::move(out);
  }

 private:
  std::shared_ptr<const Regex> re_;
  Behavior behavior_;
  bool invert_;
};

// ByteLevel: optional leading space, optional GPT-2 regex split. The byte to
// character mapping itself happens in the model (see PreTokenizerChain).
class ByteLevel final : public PreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, std::shared_ptr<const Regex> re) : add_prefix_space_(add_prefix_space), re_(std::move(re)) {}
  void apply(std::vector<Piece>& pieces) const override {
    if (add_prefix_space_)
      for (auto& p : pieces)
        if (p.text.empty() || p.text[0] != ' ') p.text.insert(0, 1, ' ');
    if (!re_) return;
    std::vector<Piece> out;
    for (const auto& p : pieces) split_piece(p, *re_, Behavior::kIsolated, false, out);
    pieces = std::move(out);
  }

 private:
  bool add_prefix_space_;
  std::shared_ptr<const Regex> re_;
};

class Metaspace final : public PreTokenizer {
 public:
  enum class Prepend { kAlways, kFirst, kNever };
  Metaspace(std::string replacement, Prepend prepend, bool split, std::shared_ptr<const Regex> split_re)
      : rep_(std::move(replacement)), prepend_(prepend), split_(split), split_re_(std::move(split_re)) {}
  void apply(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    for (auto& p : pieces) {
      std::string s;
      for (char c : p.text) {
        if (c == ' ') s += rep_;
        else s += c;
      }
      const bool starts = s.compare(0, rep_.size(), rep_) == 0;
      if (!starts && (prepend_ == Prepend::kAlways || (prepend_ == Prepend::kFirst && p.at_text_start))) s = rep_ + s;
      Piece q{std::move(s), p.at_text_start};
      if (split_) split_piece(q, *split_re_, Behavior::kMergedWithNext, false, out);
      else if (!q.text.empty()) out.push_back(std::move(q));
    }
    pieces = std::move(out);
  }

 private:
  std::string rep_;
  Prepend prepend_;
  bool split_;
  std::shared_ptr<const Regex> split_re_;
};

constexpr const char* kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

Result<Behavior> parse_behavior(const json& j, const std::string& what) {
  const auto b = json_string(j, "behavior");
  if (!b) return make_error(ErrorCode::kBadFile, what + ": 'behavior' must be a string");
  if (*b == "Removed") return Behavior::kRemoved;
  if (*b == "Isolated") return Behavior::kIsolated;
  if (*b == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (*b == "MergedWithNext") return Behavior::kMergedWithNext;
  if (*b == "Contiguous") return Behavior::kContiguous;
  return make_error(ErrorCode::kUnsupported, what + ": unknown split behavior '" + *b + "'");
}

// Appends the steps of `j` to chain (flattening Sequences).
Status add_pre_tokenizer(const json& j, const std::string& source, PreTokenizerChain& chain) {
  const auto type_field = json_string(j, "type");
  if (!type_field) return make_error(ErrorCode::kBadFile, source + ": pre_tokenizer without a string 'type'");
  const std::string& type = *type_field;
  const std::string what = source + ": pre_tokenizer " + type;
  if (chain.byte_level)
    return make_error(ErrorCode::kUnsupported,
                      what + " after a ByteLevel pre_tokenizer (ByteLevel must come last)");
  if (type == "Sequence") {
    const json* list = json_field(j, "pretokenizers");
    if (!list || !list->is_array()) return make_error(ErrorCode::kBadFile, what + ": 'pretokenizers' must be a list");
    for (const auto& p : *list) MYRIAD_TRY(add_pre_tokenizer(p, source, chain));
    return ok_status();
  }
  if (type == "Split") {
    const json* pattern = json_field(j, "pattern");
    auto re = make_pattern(pattern ? *pattern : json(), what);
    if (!re.ok()) return re.error();
    auto b = parse_behavior(j, what);
    if (!b.ok()) return b.error();
    chain.steps.emplace_back(new RegexSplit(re.value(), b.value(), json_bool(j, "invert", false)));
    return ok_status();
  }
  if (type == "ByteLevel") {
    std::shared_ptr<const Regex> re;
    if (json_bool(j, "use_regex", true)) {
      auto r = Regex::compile(kGpt2Regex, what);
      if (!r.ok()) return r.error();
      re = r.value();
    }
    chain.steps.emplace_back(new ByteLevel(json_bool(j, "add_prefix_space", false), re));
    chain.byte_level = true;
    return ok_status();
  }
  if (type == "Metaspace") {
    const std::string rep = json_string(j, "replacement").value_or("\xE2\x96\x81");
    Metaspace::Prepend prepend = json_bool(j, "add_prefix_space", true) ? Metaspace::Prepend::kAlways
                                                                         : Metaspace::Prepend::kNever;
    if (const auto scheme = json_string(j, "prepend_scheme")) {
      if (*scheme == "always") prepend = Metaspace::Prepend::kAlways;
      else if (*scheme == "first") prepend = Metaspace::Prepend::kFirst;
      else if (*scheme == "never") prepend = Metaspace::Prepend::kNever;
      else return make_error(ErrorCode::kBadFile, what + ": unknown prepend_scheme '" + *scheme + "'");
    }
    auto re = Regex::compile(Regex::escape(rep), what);
    if (!re.ok()) return re.error();
    chain.steps.emplace_back(new Metaspace(rep, prepend, json_bool(j, "split", true), re.value()));
    return ok_status();
  }
  if (type == "Whitespace" || type == "WhitespaceSplit" || type == "Digits") {
    std::string pattern;
    Behavior behavior = Behavior::kIsolated;
    bool invert = false;
    if (type == "Whitespace") {
      pattern = R"(\w+|[^\w\s]+)", behavior = Behavior::kRemoved, invert = true;
    } else if (type == "WhitespaceSplit") {
      pattern = R"(\s+)", behavior = Behavior::kRemoved;
    } else {
      pattern = json_bool(j, "individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)";
    }
    auto re = Regex::compile(pattern, what);
    if (!re.ok()) return re.error();
    chain.steps.emplace_back(new RegexSplit(re.value(), behavior, invert));
    return ok_status();
  }
  return make_error(ErrorCode::kUnsupported,
                    source + ": unsupported pre_tokenizer type '" + type +
                        "' (supported: Split, ByteLevel, Metaspace, Whitespace, WhitespaceSplit, Digits, Sequence)");
}

}  // namespace

Result<PreTokenizerChain> make_pre_tokenizer(const json& j, const std::string& source) {
  PreTokenizerChain chain;
  if (j.is_null()) return chain;
  auto st = add_pre_tokenizer(j, source, chain);
  if (!st.ok()) return st.error();
  return chain;
}

}  // namespace myriad::tok
