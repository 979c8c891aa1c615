#include "runtime/jinja/text.h"

#include <utf8proc.h>

namespace myriad::jinja {

std::u32string utf8_decode(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
  utf8proc_ssize_t left = static_cast<utf8proc_ssize_t>(s.size());
  while (left > 0) {
    utf8proc_int32_t cp = 0;
    utf8proc_ssize_t n = utf8proc_iterate(p, left, &cp);
    if (n <= 0) {  // invalid byte: U+FFFD, skip one byte
      out.push_back(0xFFFD);
      n = 1;
    } else {
      out.push_back(static_cast<char32_t>(cp));
    }
    p += n;
    left -= n;
  }
  return out;
}

void utf8_append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string utf8_encode(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) utf8_append(out, c);
  return out;
}

bool is_ascii(std::string_view s) {
  for (unsigned char c : s) {
    if (c >= 0x80) return false;
  }
  return true;
}

std::string valid_utf8(std::string s) {
  if (is_ascii(s)) return s;
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
  utf8proc_ssize_t left = static_cast<utf8proc_ssize_t>(s.size());
  bool valid = true;
  while (left > 0 && valid) {
    utf8proc_int32_t cp = 0;
    utf8proc_ssize_t n = utf8proc_iterate(p, left, &cp);
    if (n <= 0) valid = false;
    else {
      p += n;
      left -= n;
    }
  }
  if (valid) return s;
  return utf8_encode(utf8_decode(s));  // decode maps each invalid byte to U+FFFD
}

std::size_t utf8_length(std::string_view s) {
  std::size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;  // count lead bytes
  return n;
}

bool is_python_space(char32_t c) {
  switch (c) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D:
    case 0x1C: case 0x1D: case 0x1E: case 0x1F: case 0x20:
    case 0x85: case 0xA0: case 0x1680:
    case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

char32_t to_upper(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') ? c - 32 : c;
  return static_cast<char32_t>(utf8proc_toupper(static_cast<utf8proc_int32_t>(c)));
}

char32_t to_lower(char32_t c) {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
  return static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c)));
}

bool is_cased_letter(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  return to_upper(c) != c || to_lower(c) != c ||
         utf8proc_category(static_cast<utf8proc_int32_t>(c)) == UTF8PROC_CATEGORY_LT;
}

namespace {
template <class F>
std::string map_chars(std::string_view s, F f) {
  if (is_ascii(s)) {
    std::string out(s);
    for (char& ch : out) ch = static_cast<char>(f(static_cast<char32_t>(static_cast<unsigned char>(ch))));
    return out;
  }
  std::u32string u = utf8_decode(s);
  for (char32_t& c : u) c = f(c);
  return utf8_encode(u);
}

bool is_word_char(char32_t c) {  // Python str.title() treats cased letters as word characters
  return is_cased_letter(c);
}
}  // namespace

// Python's full case mappings that are not one-to-one (SpecialCasing.txt,
// the common Latin ones); the rest map one code point to one.
std::string str_upper(std::string_view s) {
  if (is_ascii(s)) return map_chars(s, to_upper);
  std::string out;
  out.reserve(s.size());
  for (char32_t c : utf8_decode(s)) {
    switch (c) {
      case 0x00DF: out += "SS"; break;   // ß
      case 0xFB00: out += "FF"; break;   // ﬀ
      case 0xFB01: out += "FI"; break;   // ﬁ
      case 0xFB02: out += "FL"; break;   // ﬂ
      case 0xFB03: out += "FFI"; break;  // ﬃ
      case 0xFB04: out += "FFL"; break;  // ﬄ
      case 0xFB05: case 0xFB06: out += "ST"; break;
      case 0x0149: out += "\u02BCN"; break;  // ŉ
      default: utf8_append(out, to_upper(c));
    }
  }
  return out;
}

std::string str_lower(std::string_view s) {
  if (is_ascii(s)) return map_chars(s, to_lower);
  std::string out;
  out.reserve(s.size());
  for (char32_t c : utf8_decode(s)) {
    if (c == 0x0130) {  // İ -> i + combining dot above
      out += "i\u0307";
    } else {
      utf8_append(out, to_lower(c));
    }
  }
  return out;
}

std::string str_capitalize(std::string_view s) {
  std::u32string u = utf8_decode(s);
  for (std::size_t i = 0; i < u.size(); ++i) u[i] = i == 0 ? to_upper(u[i]) : to_lower(u[i]);
  return utf8_encode(u);
}

std::string str_title(std::string_view s) {
  std::u32string u = utf8_decode(s);
  bool prev_cased = false;
  for (char32_t& c : u) {
    c = prev_cased ? to_lower(c) : to_upper(c);
    prev_cased = is_word_char(c);
  }
  return utf8_encode(u);
}

std::string jinja_title(std::string_view s) {
  // Jinja: re.split(r"([-\s({\[<]+)") then item[0].upper() + item[1:].lower().
  std::u32string u = utf8_decode(s);
  auto is_sep = [](char32_t c) {
    return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || is_python_space(c);
  };
  bool at_start = true;
  for (char32_t& c : u) {
    if (is_sep(c)) {
      at_start = true;
      continue;
    }
    c = at_start ? to_upper(c) : to_lower(c);
    at_start = false;
  }
  return utf8_encode(u);
}

std::string str_strip(std::string_view s, const std::string* chars, StripSide side) {
  std::u32string set;
  if (chars != nullptr) set = utf8_decode(*chars);
  auto strip_it = [&](char32_t c) {
    return chars == nullptr ? is_python_space(c) : set.find(c) != std::u32string::npos;
  };
  if (is_ascii(s) && (chars == nullptr || is_ascii(*chars))) {
    std::size_t b = 0, e = s.size();
    if (side != StripSide::kRight) {
      while (b < e && strip_it(static_cast<unsigned char>(s[b]))) ++b;
    }
    if (side != StripSide::kLeft) {
      while (e > b && strip_it(static_cast<unsigned char>(s[e - 1]))) --e;
    }
    return std::string(s.substr(b, e - b));
  }
  std::u32string u = utf8_decode(s);
  std::size_t b = 0, e = u.size();
  if (side != StripSide::kRight) {
    while (b < e && strip_it(u[b])) ++b;
  }
  if (side != StripSide::kLeft) {
    while (e > b && strip_it(u[e - 1])) --e;
  }
  return utf8_encode(std::u32string_view(u).substr(b, e - b));
}

std::vector<std::string> str_split(std::string_view s, const std::string* sep, std::int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep != nullptr) {
    std::size_t pos = 0;
    while (maxsplit < 0 || static_cast<std::int64_t>(out.size()) < maxsplit) {
      std::size_t hit = s.find(*sep, pos);
      if (hit == std::string_view::npos) break;
      out.emplace_back(s.substr(pos, hit - pos));
      pos = hit + sep->size();
    }
    out.emplace_back(s.substr(pos));
    return out;
  }
  // Whitespace split: runs of whitespace separate, no empty strings.
  std::u32string u = utf8_decode(s);
  std::size_t i = 0;
  while (true) {
    while (i < u.size() && is_python_space(u[i])) ++i;
    if (i >= u.size()) break;
    if (maxsplit >= 0 && static_cast<std::int64_t>(out.size()) >= maxsplit) {
      out.push_back(utf8_encode(std::u32string_view(u).substr(i)));  // remainder keeps trailing space
      break;
    }
    std::size_t j = i;
    while (j < u.size() && !is_python_space(u[j])) ++j;
    out.push_back(utf8_encode(std::u32string_view(u).substr(i, j - i)));
    i = j;
  }
  return out;
}

std::string str_replace(std::string_view s, std::string_view from, std::string_view to, std::int64_t count) {
  std::string out;
  if (from.empty()) {  // Python inserts `to` before every code point and at the end
    std::u32string u = utf8_decode(s);
    std::int64_t done = 0;
    for (char32_t c : u) {
      if (count < 0 || done < count) {
        out += to;
        ++done;
      }
      utf8_append(out, c);
    }
    if (count < 0 || done < count) out += to;
    return out;
  }
  std::size_t pos = 0;
  std::int64_t done = 0;
  while (count < 0 || done < count) {
    std::size_t hit = s.find(from, pos);
    if (hit == std::string_view::npos) break;
    out.append(s.substr(pos, hit - pos));
    out.append(to);
    pos = hit + from.size();
    ++done;
  }
  out.append(s.substr(pos));
  return out;
}

}  // namespace myriad::jinja
