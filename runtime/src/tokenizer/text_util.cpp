#include "text_util.h"

#include <array>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <utf8proc.h>

#include "runtime/tokenizer.h"

namespace myriad::tok {

size_t utf8_seq_len(std::string_view s, size_t i) {
  const auto b = static_cast<uint8_t>(s[i]);
  if (b < 0x80) return 1;
  size_t need = 0;
  uint8_t lo = 0x80, hi = 0xBF;
  if (b >= 0xC2 && b <= 0xDF) {
    need = 1;
  } else if (b == 0xE0) {
    need = 2, lo = 0xA0;
  } else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) {
    need = 2;
  } else if (b == 0xED) {
    need = 2, hi = 0x9F;
  } else if (b == 0xF0) {
    need = 3, lo = 0x90;
  } else if (b >= 0xF1 && b <= 0xF3) {
    need = 3;
  } else if (b == 0xF4) {
    need = 3, hi = 0x8F;
  } else {
    return 0;
  }
  for (size_t k = 1; k <= need; ++k) {
    if (i + k >= s.size()) return 0;
    const auto c = static_cast<uint8_t>(s[i + k]);
    if (c < lo || c > hi) return 0;
    lo = 0x80, hi = 0xBF;
  }
  return need + 1;
}

char32_t utf8_decode_at(std::string_view s, size_t i, size_t len) {
  const auto b0 = static_cast<uint8_t>(s[i]);
  if (len == 1) return b0;
  char32_t cp = b0 & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
  for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<uint8_t>(s[i + k]) & 0x3F);
  return cp;
}

void utf8_append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

bool is_valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const size_t n = utf8_seq_len(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

size_t utf8_incomplete_tail(std::string_view s) {
  // Walk back over at most 3 continuation bytes to the lead byte.
  const size_t n = s.size();
  for (size_t back = 1; back <= 4 && back <= n; ++back) {
    const auto b = static_cast<uint8_t>(s[n - back]);
    if (b < 0x80) return 0;
    if (b >= 0xC0) {  // a lead byte: is s[n-back..] a proper prefix of a valid sequence?
      size_t need = 0;
      uint8_t lo = 0x80, hi = 0xBF;
      if (b >= 0xC2 && b <= 0xDF) need = 1;
      else if (b == 0xE0) need = 2, lo = 0xA0;
      else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) need = 2;
      else if (b == 0xED) need = 2, hi = 0x9F;
      else if (b == 0xF0) need = 3, lo = 0x90;
      else if (b >= 0xF1 && b <= 0xF3) need = 3;
      else if (b == 0xF4) need = 3, hi = 0x8F;
      else return 0;
      if (back - 1 >= need) return 0;  // complete (or over-long run): nothing to wait for
      for (size_t k = 1; k < back; ++k) {
        const auto c = static_cast<uint8_t>(s[n - back + k]);
        if (c < lo || c > hi) return 0;
        lo = 0x80, hi = 0xBF;
      }
      return back;
    }
  }
  return 0;
}

namespace {

struct ByteMap {
  std::array<char32_t, 256> to_char{};
  std::array<int16_t, 324> to_byte{};
  ByteMap() {
    to_byte.fill(-1);
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      to_char[b] = printable ? char32_t(b) : char32_t(256 + extra++);
      to_byte[to_char[b]] = static_cast<int16_t>(b);
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

std::string utf8proc_transform(std::string_view s, int options) {
  utf8proc_uint8_t* out = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                          static_cast<utf8proc_ssize_t>(s.size()), &out,
                                          static_cast<utf8proc_option_t>(options));
  if (n < 0) {  // only for invalid UTF-8, which callers exclude
    std::free(out);
    return std::string(s);
  }
  std::string r(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
  std::free(out);
  return r;
}

bool is_ascii(std::string_view s) {
  for (char c : s)
    if (static_cast<uint8_t>(c) >= 0x80) return false;
  return true;
}

}  // namespace

char32_t byte_to_char(uint8_t b) { return byte_map().to_char[b]; }

int char_to_byte(char32_t cp) { return cp < 324 ? byte_map().to_byte[cp] : -1; }

std::string normalize_unicode(std::string_view s, NormalForm form) {
  if (is_ascii(s)) return std::string(s);  // every form is the identity on ASCII
  int opt = UTF8PROC_STABLE;
  switch (form) {
    case NormalForm::kNFC: opt |= UTF8PROC_COMPOSE; break;
    case NormalForm::kNFD: opt |= UTF8PROC_DECOMPOSE; break;
    case NormalForm::kNFKC: opt |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    case NormalForm::kNFKD: opt |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
  }
  return utf8proc_transform(s, opt);
}

std::string lowercase_unicode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_seq_len(s, i);
    if (n == 0) {  // callers pass valid UTF-8; keep the byte if not
      out += s[i++];
      continue;
    }
    utf8_append(out, static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(utf8_decode_at(s, i, n)))));
    i += n;
  }
  return out;
}

namespace {

// Records the first parse error of nlohmann's SAX parser (so that parsing
// needs no try/catch).
struct ErrorSax : nlohmann::json_sax<nlohmann::json> {
  std::string message;
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return true; }
  bool key(string_t&) override { return true; }
  bool end_object() override { return true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) override {
    message = ex.what();
    return false;
  }
};

}  // namespace

const nlohmann::json* json_field(const nlohmann::json& j, const char* key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

std::optional<std::string> json_string(const nlohmann::json& j, const char* key) {
  const auto* f = json_field(j, key);
  if (!f || !f->is_string()) return std::nullopt;
  return f->get<std::string>();
}

bool json_bool(const nlohmann::json& j, const char* key, bool fallback) {
  const auto* f = json_field(j, key);
  return f && f->is_boolean() ? f->get<bool>() : fallback;
}

Result<nlohmann::json> load_json_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return make_error(ErrorCode::kNotFound, "cannot open " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) return make_error(ErrorCode::kIo, "cannot read " + path);
  const std::string text = ss.str();
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    ErrorSax sax;
    nlohmann::json::sax_parse(text, &sax);
    return make_error(ErrorCode::kBadFile, path + " is not valid JSON: " +
                                               (sax.message.empty() ? std::string("parse error") : sax.message));
  }
  return j;
}

}  // namespace myriad::tok

namespace myriad {

std::string repair_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<uint8_t>(s[i]);
    if (b < 0x80) {
      out += s[i++];
      continue;
    }
    const size_t n = tok::utf8_seq_len(s, i);
    if (n) {
      out.append(s.substr(i, n));
      i += n;
      continue;
    }
    // Maximal subpart: skip the lead byte plus the continuation bytes that
    // were still valid for it, emit one U+FFFD.
    size_t j = i + 1;
    size_t need = 0;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) need = 1;
    else if (b == 0xE0) need = 2, lo = 0xA0;
    else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) need = 2;
    else if (b == 0xED) need = 2, hi = 0x9F;
    else if (b == 0xF0) need = 3, lo = 0x90;
    else if (b >= 0xF1 && b <= 0xF3) need = 3;
    else if (b == 0xF4) need = 3, hi = 0x8F;
    for (size_t k = 0; k < need && j < s.size(); ++k, ++j) {
      const auto c = static_cast<uint8_t>(s[j]);
      if (c < lo || c > hi) break;
      lo = 0x80, hi = 0xBF;
    }
    out += "\xEF\xBF\xBD";
    i = j;
  }
  return out;
}

std::string clean_up_tokenization_spaces(std::string_view text) {
  static const std::pair<std::string_view, std::string_view> kRules[] = {
      {" .", "."},     {" ?", "?"},     {" !", "!"},     {" ,", ","},     {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"},   {" 's", "'s"},   {" 've", "'ve"}, {" 're", "'re"},
  };
  std::string s(text);
  for (const auto& [from, to] : kRules) {  // sequential replace-all, as transformers does
    if (s.find(from) == std::string::npos) continue;
    std::string out;
    out.reserve(s.size());
    size_t pos = 0;
    for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
      out.append(s, pos, hit - pos);
      out.append(to);
    }
    out.append(s, pos, std::string::npos);
    s = std::move(out);
  }
  return s;
}

}  // namespace myriad
