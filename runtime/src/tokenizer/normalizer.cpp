// Normalizers of tokenizer.json: NFC/NFD/NFKC/NFKD, Lowercase, Prepend,
// Replace, Strip, Sequence.
#include "pipeline.h"
#include "text_util.h"

namespace myriad::tok {

namespace {

using nlohmann::json;

class UnicodeNorm final : public Normalizer {
 public:
  explicit UnicodeNorm(NormalForm f) : form_(f) {}
  std::string apply(std::string s) const override { return normalize_unicode(s, form_); }

 private:
  NormalForm form_;
};

class Lowercase final : public Normalizer {
 public:
  std::string apply(std::string s) const override { return lowercase_unicode(s); }
};

class Prepend final : public Normalizer {
 public:
  explicit Prepend(std::string p) : prepend_(std::move(p)) {}
  std::string apply(std::string s) const override { return s.empty() ? s : prepend_ + s; }

 private:
  std::string prepend_;
};

class Replace final : public Normalizer {
 public:
  Replace(std::shared_ptr<const Regex> re, std::string content) : re_(std::move(re)), content_(std::move(content)) {}
  std::string apply(std::string s) const override {
    std::vector<std::pair<size_t, size_t>> m;
    re_->find_all(s, m);
    if (m.empty()) return s;
    std::string out;
    size_t pos = 0;
    for (const auto& [b, e] : m) {
      out.append(s, pos, b - pos);
      out += content_;
      pos = e;
    }
    out.append(s, pos, std::string::npos);
    return out;
  }

 private:
  std::shared_ptr<const Regex> re_;
  std::string content_;
};

class Strip final : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  std::string apply(std::string s) const override {
    auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
    size_t b = 0, e = s.size();
    if (left_)
      while (b < e && ws(s[b])) ++b;
    if (right_)
      while (e > b && ws(s[e - 1])) --e;
    return s.substr(b, e - b);
  }

 private:
  bool left_, right_;
};

class Sequence final : public Normalizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Normalizer>> steps) : steps_(std::move(steps)) {}
  std::string apply(std::string s) const override {
    for (const auto& n : steps_) s = n->apply(std::move(s));
    return s;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

}  // namespace

Result<std::shared_ptr<const Regex>> make_pattern(const json& pattern, const std::string& what) {
  if (pattern.is_object()) {
    if (auto it = pattern.find("String"); it != pattern.end() && it->is_string())
      return Regex::compile(Regex::escape(it->get<std::string>()), what);
    if (auto it = pattern.find("Regex"); it != pattern.end() && it->is_string())
      return Regex::compile(it->get<std::string>(), what);
  }
  return make_error(ErrorCode::kBadFile, what + ": 'pattern' must be {\"String\": ...} or {\"Regex\": ...}");
}

Result<std::unique_ptr<Normalizer>> make_normalizer(const json& j, const std::string& source) {
  if (j.is_null()) return std::unique_ptr<Normalizer>();
  const auto type_field = json_string(j, "type");
  if (!type_field) return make_error(ErrorCode::kBadFile, source + ": normalizer without a string 'type'");
  const std::string& type = *type_field;
  const std::string what = source + ": normalizer " + type;
  if (type == "NFC") return std::unique_ptr<Normalizer>(new UnicodeNorm(NormalForm::kNFC));
  if (type == "NFD") return std::unique_ptr<Normalizer>(new UnicodeNorm(NormalForm::kNFD));
  if (type == "NFKC") return std::unique_ptr<Normalizer>(new UnicodeNorm(NormalForm::kNFKC));
  if (type == "NFKD") return std::unique_ptr<Normalizer>(new UnicodeNorm(NormalForm::kNFKD));
  if (type == "Lowercase") return std::unique_ptr<Normalizer>(new Lowercase());
  if (type == "Prepend") {
    const auto prepend = json_string(j, "prepend");
    if (!prepend) return make_error(ErrorCode::kBadFile, what + ": 'prepend' must be a string");
    return std::unique_ptr<Normalizer>(new Prepend(*prepend));
  }
  if (type == "Replace") {
    const auto content = json_string(j, "content");
    if (!content) return make_error(ErrorCode::kBadFile, what + ": 'content' must be a string");
    const json* pattern = json_field(j, "pattern");
    auto re = make_pattern(pattern ? *pattern : json(), what);
    if (!re.ok()) return re.error();
    return std::unique_ptr<Normalizer>(new Replace(re.value(), *content));
  }
  if (type == "Strip") return std::unique_ptr<Normalizer>(new Strip(json_bool(j, "strip_left", true), json_bool(j, "strip_right", true)));
  if (type == "Sequence") {
    const json* list = json_field(j, "normalizers");
    if (!list || !list->is_array()) return make_error(ErrorCode::kBadFile, what + ": 'normalizers' must be a list");
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (const auto& n : *list) {
      auto r = make_normalizer(n, source);
      if (!r.ok()) return r.error();
      if (r.value()) steps.push_back(std::move(r.value()));
    }
    return std::unique_ptr<Normalizer>(new Sequence(std::move(steps)));
  }
  return make_error(ErrorCode::kUnsupported, source + ": unsupported normalizer type '" + type +
                                                 "' (supported: NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, "
                                                 "Strip, Sequence)");
}

}  // namespace myriad::tok
