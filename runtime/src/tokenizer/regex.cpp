#include "regex.h"

#include <mutex>

#include <oniguruma.h>

#include "text_util.h"

namespace myriad::tok {

namespace {
void init_onig() {
  static std::once_flag once;
  std::call_once(once, [] {
    OnigEncoding encodings[] = {ONIG_ENCODING_UTF8};
    onig_initialize(encodings, 1);
  });
}
}  // namespace

Result<std::shared_ptr<const Regex>> Regex::compile(const std::string& pattern, const std::string& what) {
  init_onig();
  regex_t* re = nullptr;
  OnigErrorInfo einfo;
  const auto* p = reinterpret_cast<const OnigUChar*>(pattern.data());
  const int r = onig_new(&re, p, p + pattern.size(), ONIG_OPTION_NONE, ONIG_ENCODING_UTF8, ONIG_SYNTAX_RUBY, &einfo);
  if (r != ONIG_NORMAL) {
    OnigUChar buf[ONIG_MAX_ERROR_MESSAGE_LEN];
    onig_error_code_to_str(buf, r, &einfo);
    return make_error(ErrorCode::kBadFile, what + ": cannot compile regex '" + pattern +
                                               "': " + reinterpret_cast<const char*>(buf));
  }
  std::shared_ptr<Regex> rx(new Regex());
  rx->re_ = re;
  return std::shared_ptr<const Regex>(std::move(rx));
}

std::string Regex::escape(std::string_view literal) {
  std::string out;
  for (char c : literal) {
    if (std::string_view("\\^$.|?*+()[]{}-/#").find(c) != std::string_view::npos) out += '\\';
    if (c == '\n') { out += "\\n"; continue; }
    if (c == '\t') { out += "\\t"; continue; }
    if (c == '\r') { out += "\\r"; continue; }
    if (c == ' ') { out += "\\x20"; continue; }  // Ruby syntax ignores no spaces, but be explicit
    out += c;
  }
  return out;
}

Regex::~Regex() {
  if (re_) onig_free(static_cast<regex_t*>(re_));
}

void Regex::find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const {
  auto* re = static_cast<regex_t*>(re_);
  OnigRegion* region = onig_region_new();
  const auto* str = reinterpret_cast<const OnigUChar*>(text.data());
  const OnigUChar* end = str + text.size();
  size_t pos = 0;
  while (pos < text.size()) {
    const int r = onig_search(re, str, end, str + pos, end, region, ONIG_OPTION_NONE);
    if (r < 0) break;  // ONIG_MISMATCH (or an error: treat as no more matches)
    const auto b = static_cast<size_t>(region->beg[0]);
    const auto e = static_cast<size_t>(region->end[0]);
    if (e == b) {  // empty match: step over one character
      if (b >= text.size()) break;
      const size_t n = utf8_seq_len(text, b);
      pos = b + (n ? n : 1);
      continue;
    }
    out.emplace_back(b, e);
    pos = e;
  }
  onig_region_free(region, 1);
}

}  // namespace myriad::tok
