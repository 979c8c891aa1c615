// Decoders (Replace, ByteFallback, Fuse, Strip, ByteLevel, Metaspace,
// Sequence) and post-processors (TemplateProcessing, ByteLevel, Bert/Roberta,
// Sequence) of tokenizer.json.
//
// Decoders keep raw bytes: ByteFallback and ByteLevel emit the bytes they
// stand for even when those are not (yet) valid UTF-8; the Tokenizer repairs
// the joined result once. That makes decoding concatenative, which token
// streaming needs, and gives the same text as transformers.js (one U+FFFD per
// maximal invalid subpart).
#include "pipeline.h"
#include "text_util.h"

namespace myriad::tok {

namespace {

using nlohmann::json;

class ReplaceDec final : public Decoder {
 public:
  ReplaceDec(std::shared_ptr<const Regex> re, std::string content) : re_(std::move(re)), content_(std::move(content)) {}
  void apply(std::vector<std::string>& tokens, DecodeState&) const override {
    std::vector<std::pair<size_t, size_t>> m;
    for (auto& t : tokens) {
      if (!is_valid_utf8(t)) continue;  // raw bytes from an earlier step: nothing to match
      m.clear();
      re_->find_all(t, m);
      if (m.empty()) continue;
      std::string out;
      size_t pos = 0;
      for (const auto& [b, e] : m) {
        out.append(t, pos, b - pos);
        out += content_;
        pos = e;
      }
      out.append(t, pos, std::string::npos);
      t = std::move(out);
    }
  }

 private:
  std::shared_ptr<const Regex> re_;
  std::string content_;
};

// "<0xNN>" -> the byte NN.
class ByteFallbackDec final : public Decoder {
 public:
  void apply(std::vector<std::string>& tokens, DecodeState&) const override {
    for (auto& t : tokens) {
      if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') continue;
      auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return -1;
      };
      const int hi = hex(t[3]), lo = hex(t[4]);
      if (hi < 0 || lo < 0) continue;
      t = std::string(1, static_cast<char>(hi * 16 + lo));
    }
  }
};

class FuseDec final : public Decoder {
 public:
  void apply(std::vector<std::string>& tokens, DecodeState& st) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
    st.fused = true;
  }
};

class StripDec final : public Decoder {
 public:
  StripDec(std::string content, size_t start, size_t stop) : content_(std::move(content)), start_(start), stop_(stop) {}
  void apply(std::vector<std::string>& tokens, DecodeState& st) const override {
    // After Fuse, tokens[0] continues earlier output unless at_start: its
    // start was already stripped there.
    const bool strip_start = !st.fused || st.at_start;
    for (auto& t : tokens) {
      size_t b = 0, e = t.size();
      if (strip_start)
        for (size_t k = 0; k < start_ && t.compare(b, content_.size(), content_) == 0 && b < e; ++k) b += content_.size();
      for (size_t k = 0; k < stop_ && e >= b + content_.size() && t.compare(e - content_.size(), content_.size(), content_) == 0; ++k)
        e -= content_.size();
      t = t.substr(b, e - b);
    }
  }

 private:
  std::string content_;
  size_t start_, stop_;
};

// GPT-2 alphabet characters -> bytes; a token with any other character is
// taken as its own UTF-8 bytes (as Hugging Face does for added tokens).
class ByteLevelDec final : public Decoder {
 public:
  void apply(std::vector<std::string>& tokens, DecodeState& st) const override {
    std::string all;
    for (const auto& t : tokens) {
      std::string bytes;
      bool ok = true;
      for (size_t i = 0; i < t.size();) {
        const size_t n = utf8_seq_len(t, i);
        const int b = n ? char_to_byte(utf8_decode_at(t, i, n)) : -1;
        if (b < 0) {
          ok = false;
          break;
        }
        bytes += static_cast<char>(b);
        i += n;
      }
      all += ok ? bytes : t;
    }
    tokens.assign(1, std::move(all));
    st.fused = true;
  }
};

class MetaspaceDec final : public Decoder {
 public:
  MetaspaceDec(std::string rep, bool strip_first) : rep_(std::move(rep)), strip_first_(strip_first) {}
  void apply(std::vector<std::string>& tokens, DecodeState& st) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      const std::string& t = tokens[i];
      for (size_t pos = 0; pos < t.size();) {
        if (t.compare(pos, rep_.size(), rep_) == 0) {
          out += ' ';
          pos += rep_.size();
        } else {
          out += t[pos++];
        }
      }
      if (i == 0 && st.at_start && strip_first_ && !out.empty() && out[0] == ' ') out.erase(0, 1);
      tokens[i] = std::move(out);
    }
  }

 private:
  std::string rep_;
  bool strip_first_;
};

class SequenceDec final : public Decoder {
 public:
  explicit SequenceDec(std::vector<std::unique_ptr<Decoder>> steps) : steps_(std::move(steps)) {}
  void apply(std::vector<std::string>& tokens, DecodeState& st) const override {
    for (const auto& d : steps_) d->apply(tokens, st);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

Result<size_t> size_field(const json& j, const char* key, const std::string& what) {
  const json* f = json_field(j, key);
  if (!f) return size_t{0};
  if (!tok::is_index(*f)) return make_error(ErrorCode::kBadFile, what + ": '" + key + "' must be a non-negative integer");
  return f->get<size_t>();
}

}  // namespace

Result<std::unique_ptr<Decoder>> make_decoder(const json& j, const std::string& source) {
  if (j.is_null()) return std::unique_ptr<Decoder>();
  const auto type_field = json_string(j, "type");
  if (!type_field) return make_error(ErrorCode::kBadFile, source + ": decoder without a string 'type'");
  const std::string& type = *type_field;
  const std::string what = source + ": decoder " + type;
  if (type == "Replace") {
    const auto content = json_string(j, "content");
    if (!content) return make_error(ErrorCode::kBadFile, what + ": 'content' must be a string");
    const json* pattern = json_field(j, "pattern");
    auto re = make_pattern(pattern ? *pattern : json(), what);
    if (!re.ok()) return re.error();
    return std::unique_ptr<Decoder>(new ReplaceDec(re.value(), *content));
  }
  if (type == "ByteFallback") return std::unique_ptr<Decoder>(new ByteFallbackDec());
  if (type == "Fuse") return std::unique_ptr<Decoder>(new FuseDec());
  if (type == "ByteLevel") return std::unique_ptr<Decoder>(new ByteLevelDec());
  if (type == "Strip") {
    const auto content = json_string(j, "content");
    if (!content || content->empty()) return make_error(ErrorCode::kBadFile, what + ": 'content' must be a character");
    auto start = size_field(j, "start", what);
    if (!start.ok()) return start.error();
    auto stop = size_field(j, "stop", what);
    if (!stop.ok()) return stop.error();
    return std::unique_ptr<Decoder>(new StripDec(*content, start.value(), stop.value()));
  }
  if (type == "Metaspace") {
    const std::string rep = json_string(j, "replacement").value_or("\xE2\x96\x81");
    bool strip_first = json_bool(j, "add_prefix_space", true);
    if (const auto scheme = json_string(j, "prepend_scheme")) strip_first = *scheme != "never";
    return std::unique_ptr<Decoder>(new MetaspaceDec(rep, strip_first));
  }
  if (type == "Sequence") {
    const json* list = json_field(j, "decoders");
    if (!list || !list->is_array()) return make_error(ErrorCode::kBadFile, what + ": 'decoders' must be a list");
    std::vector<std::unique_ptr<Decoder>> steps;
    for (const auto& d : *list) {
      auto r = make_decoder(d, source);
      if (!r.ok()) return r.error();
      if (r.value()) steps.push_back(std::move(r.value()));
    }
    return std::unique_ptr<Decoder>(new SequenceDec(std::move(steps)));
  }
  return make_error(ErrorCode::kUnsupported,
                    source + ": unsupported decoder type '" + type +
                        "' (supported: Replace, ByteFallback, Fuse, Strip, ByteLevel, Metaspace, Sequence)");
}

void PostProcessor::apply(std::vector<int32_t>& ids) const {
  if (!has_template) return;
  std::vector<int32_t> out;
  out.reserve(ids.size() + 4);
  for (size_t i = 0; i < single.size(); ++i) {
    if (is_sequence[i]) out.insert(out.end(), ids.begin(), ids.end());
    else out.insert(out.end(), single[i].begin(), single[i].end());
  }
  ids = std::move(out);
}

namespace {

// Adds the TemplateProcessing / Bert / Roberta template of `j` to `pp`.
Status add_post_processor(const json& j, const std::string& source, PostProcessor& pp) {
  const auto type_field = json_string(j, "type");
  if (!type_field) return make_error(ErrorCode::kBadFile, source + ": post_processor without a string 'type'");
  const std::string& type = *type_field;
  const std::string what = source + ": post_processor " + type;
  if (type == "ByteLevel") return ok_status();  // offsets only
  if (type == "Sequence") {
    const json* list = json_field(j, "processors");
    if (!list || !list->is_array()) return make_error(ErrorCode::kBadFile, what + ": 'processors' must be a list");
    for (const auto& p : *list) MYRIAD_TRY(add_post_processor(p, source, pp));
    return ok_status();
  }
  if (pp.has_template) return make_error(ErrorCode::kUnsupported, what + ": more than one template post_processor");
  if (type == "TemplateProcessing") {
    const json* single = json_field(j, "single");
    const json* specials = json_field(j, "special_tokens");
    if (!single || !single->is_array()) return make_error(ErrorCode::kBadFile, what + ": 'single' must be a list");
    for (const auto& item : *single) {
      if (const json* seq = json_field(item, "Sequence")) {
        (void)seq;
        pp.single.emplace_back();
        pp.is_sequence.push_back(true);
        continue;
      }
      const json* sp = json_field(item, "SpecialToken");
      const auto name = sp ? json_string(*sp, "id") : std::nullopt;
      if (!name) return make_error(ErrorCode::kBadFile, what + ": template item is neither Sequence nor SpecialToken");
      const json* entry = specials ? json_field(*specials, name->c_str()) : nullptr;
      const json* ids = entry ? json_field(*entry, "ids") : nullptr;
      if (!ids || !ids->is_array())
        return make_error(ErrorCode::kBadFile, what + ": special token '" + *name + "' has no 'ids' in special_tokens");
      std::vector<int32_t> v;
      for (const auto& id : *ids) {
        if (!tok::is_index(id)) return make_error(ErrorCode::kBadFile, what + ": bad id for '" + *name + "'");
        v.push_back(id.get<int32_t>());
      }
      pp.single.push_back(std::move(v));
      pp.is_sequence.push_back(false);
    }
    pp.has_template = true;
    return ok_status();
  }
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    const json* cls = json_field(j, "cls");
    const json* sep = json_field(j, "sep");
    auto id_of = [](const json* p) -> std::optional<int32_t> {
      if (!p || !p->is_array() || p->size() != 2 || !tok::is_index((*p)[1])) return std::nullopt;
      return (*p)[1].get<int32_t>();
    };
    const auto c = id_of(cls), s = id_of(sep);
    if (!c || !s) return make_error(ErrorCode::kBadFile, what + ": 'cls'/'sep' must be [token, id]");
    pp.single = {{*c}, {}, {*s}};
    pp.is_sequence = {false, true, false};
    pp.has_template = true;
    return ok_status();
  }
  return make_error(ErrorCode::kUnsupported,
                    source + ": unsupported post_processor type '" + type +
                        "' (supported: TemplateProcessing, ByteLevel, BertProcessing, RobertaProcessing, Sequence)");
}

}  // namespace

Result<PostProcessor> make_post_processor(const json& j, const std::string& source) {
  PostProcessor pp;
  if (j.is_null()) return pp;
  auto st = add_post_processor(j, source, pp);
  if (!st.ok()) return st.error();
  return pp;
}

}  // namespace myriad::tok
