#include "tokenizer_file.h"

#include <fstream>
#include <sstream>

#include "text_util.h"

namespace myriad::tok {

namespace {

using nlohmann::json;

MergeEntry merge_from_string(const std::string& s) {
  MergeEntry m;
  const size_t sp = s.find(' ');
  if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
    m.ok = false;
    m.raw = s;
    return m;
  }
  m.a = s.substr(0, sp);
  m.b = s.substr(sp + 1);
  return m;
}

// Builds a DOM like nlohmann's own SAX DOM parser, except under
// model.vocab / model.merges, whose entries go to flat lists.
class Sax : public nlohmann::json_sax<json> {
 public:
  json root;
  std::optional<std::vector<VocabEntry>> vocab;
  std::optional<std::vector<MergeEntry>> merges;
  std::string error;

  bool null() override { return value(json(nullptr)); }
  bool boolean(bool v) override { return value(json(v)); }
  bool number_integer(number_integer_t v) override { return value(json(v)); }
  bool number_unsigned(number_unsigned_t v) override { return value(json(v)); }
  bool number_float(number_float_t v, const string_t&) override { return value(json(v)); }
  bool string(string_t& v) override {
    if (mode_ == Mode::kMerges) {
      merges->push_back(merge_from_string(v));
      return true;
    }
    if (mode_ == Mode::kMergePair) {
      pair_.push_back(std::move(v));
      return true;
    }
    return value(json(std::move(v)));  // (vocab mode: not an id)
  }
  bool binary(binary_t&) override { return fail("binary values are not JSON"); }
  bool start_object(std::size_t) override {
    if (mode_ != Mode::kNone) return fail("unexpected object inside model.vocab/model.merges");
    if (stack_.size() == 2 && container_keys_[1] == "model" && key_ == "vocab") {
      mode_ = Mode::kVocab;
      vocab.emplace();
      vocab->reserve(1 << 17);
      return true;
    }
    return open(json::object());
  }
  bool key(string_t& k) override {
    key_ = std::move(k);
    return true;
  }
  bool end_object() override {
    if (mode_ == Mode::kVocab) {
      mode_ = Mode::kNone;
      return true;
    }
    stack_.pop_back();
    container_keys_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override {
    if (mode_ == Mode::kMerges) {
      mode_ = Mode::kMergePair;
      pair_.clear();
      pair_bad_ = false;
      return true;
    }
    if (mode_ != Mode::kNone) return fail("unexpected list inside model.vocab/model.merges");
    if (stack_.size() == 2 && container_keys_[1] == "model" && key_ == "merges") {
      mode_ = Mode::kMerges;
      merges.emplace();
      merges->reserve(1 << 18);
      return true;
    }
    return open(json::array());
  }
  bool end_array() override {
    if (mode_ == Mode::kMergePair) {
      MergeEntry m;
      if (pair_.size() == 2 && !pair_bad_) {
        m.a = std::move(pair_[0]);
        m.b = std::move(pair_[1]);
      } else {
        m.ok = false;
        m.raw = "a list of " + std::to_string(pair_.size()) + (pair_bad_ ? " values" : " strings");
      }
      merges->push_back(std::move(m));
      mode_ = Mode::kMerges;
      return true;
    }
    if (mode_ == Mode::kMerges) {
      mode_ = Mode::kNone;
      return true;
    }
    stack_.pop_back();
    container_keys_.pop_back();
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) override {
    if (error.empty()) error = ex.what();
    return false;
  }

 private:
  enum class Mode { kNone, kVocab, kMerges, kMergePair };

  bool fail(const std::string& msg) {
    if (error.empty()) error = msg;
    return false;
  }
  // A scalar: into the vocab list, a merge pair (must be strings), or the DOM.
  bool value(json v) {
    if (mode_ == Mode::kVocab) {
      const bool ok = is_index(v) && v.get<uint64_t>() <= uint64_t(INT32_MAX);
      vocab->push_back(VocabEntry{key_, ok ? v.get<int64_t>() : -1});
      return true;
    }
    if (mode_ == Mode::kMerges) {
      merges->push_back(MergeEntry{"", "", false, v.dump()});
      return true;
    }
    if (mode_ == Mode::kMergePair) {  // a non-string inside ["a", "b"]
      pair_.emplace_back();
      pair_bad_ = true;
      return true;
    }
    insert(std::move(v));
    return true;
  }
  json* insert(json v) {
    if (stack_.empty()) {
      root = std::move(v);
      return &root;
    }
    json& top = *stack_.back();
    if (top.is_object()) {
      json& slot = top[key_];
      slot = std::move(v);
      return &slot;
    }
    top.push_back(std::move(v));
    return &top.back();
  }
  bool open(json container) {
    const std::string k = stack_.empty() || !stack_.back()->is_object() ? std::string() : key_;
    stack_.push_back(insert(std::move(container)));
    container_keys_.push_back(k);
    return true;
  }

  Mode mode_ = Mode::kNone;
  std::vector<json*> stack_;
  std::vector<std::string> container_keys_;  // key under which each open container sits
  std::string key_;
  std::vector<std::string> pair_;
  bool pair_bad_ = false;
};

}  // namespace

Result<TokenizerFile> load_tokenizer_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return make_error(ErrorCode::kNotFound, "cannot open " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) return make_error(ErrorCode::kIo, "cannot read " + path);
  const std::string text = ss.str();
  Sax sax;
  const bool ok = json::sax_parse(text, &sax);
  if (!ok || !sax.error.empty())
    return make_error(ErrorCode::kBadFile,
                      path + " is not valid JSON: " + (sax.error.empty() ? std::string("parse error") : sax.error));
  TokenizerFile out{std::move(sax.root), std::move(sax.vocab), std::move(sax.merges)};
  return out;
}

TokenizerFile tokenizer_file_from_json(const json& j) {
  TokenizerFile out;
  out.json = j;
  const json* model = json_field(j, "model");
  if (!model) return out;
  if (const json* v = json_field(*model, "vocab"); v && v->is_object()) {
    out.vocab.emplace();
    out.vocab->reserve(v->size());
    for (auto it = v->begin(); it != v->end(); ++it) {
      const bool ok = is_index(it.value()) && it.value().get<uint64_t>() <= uint64_t(INT32_MAX);
      out.vocab->push_back(VocabEntry{it.key(), ok ? it.value().get<int64_t>() : -1});
    }
    out.json["model"].erase("vocab");
  }
  if (const json* m = json_field(*model, "merges"); m && m->is_array()) {
    out.merges.emplace();
    out.merges->reserve(m->size());
    for (const auto& e : *m) {
      if (e.is_string()) {
        out.merges->push_back(merge_from_string(e.get<std::string>()));
      } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
        out.merges->push_back(MergeEntry{e[0].get<std::string>(), e[1].get<std::string>(), true, ""});
      } else {
        out.merges->push_back(MergeEntry{"", "", false, e.dump()});
      }
    }
    out.json["model"].erase("merges");
  }
  return out;
}

}  // namespace myriad::tok
