#include "runtime/jinja/lexer.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <cstdlib>

#include "runtime/jinja/text.h"

namespace myriad::jinja {

Error template_error(ErrorCode code, Pos pos, const std::string& message) {
  return make_error(code, "chat template line " + std::to_string(pos.line) + ", column " +
                              std::to_string(pos.column) + ": " + message);
}

namespace {

bool is_name_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool is_name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }
bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

class Lexer {
 public:
  explicit Lexer(std::string src) : src_(std::move(src)) {
    line_starts_.push_back(0);
    for (std::size_t i = 0; i < src_.size(); ++i) {
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  Result<std::vector<Token>> run() {
    std::size_t pos = 0;
    bool strip_next = false;  // `-%}`: strip all leading whitespace of the next text
    bool trim_next = false;   // trim_blocks: drop one leading '\n' of the next text
    while (pos <= src_.size()) {
      std::size_t tag = find_tag(pos);
      std::string_view text(src_.data() + pos, (tag == std::string::npos ? src_.size() : tag) - pos);
      std::size_t text_begin = pos;
      if (strip_next) {
        std::size_t n = 0;
        while (n < text.size() && is_ascii_space(text[n])) ++n;
        text.remove_prefix(n);
        text_begin += n;
      } else if (trim_next && !text.empty() && text[0] == '\n') {
        text.remove_prefix(1);
        text_begin += 1;
      }
      strip_next = trim_next = false;
      if (tag == std::string::npos) {
        emit_text(text, text_begin);
        break;
      }
      char kind = src_[tag + 1];
      char mod = tag + 2 < src_.size() ? src_[tag + 2] : '\0';
      if (mod == '-') {
        while (!text.empty() && is_ascii_space(text.back())) text.remove_suffix(1);
      } else if (mod != '+' && kind != '{') {
        // lstrip_blocks: spaces/tabs between a line start and a block/comment tag.
        std::size_t nl = text.rfind('\n');
        std::size_t line_begin = nl == std::string_view::npos ? 0 : nl + 1;
        bool line_starting = nl != std::string_view::npos || text_begin == 0 || src_[text_begin - 1] == '\n';
        if (line_starting &&
            std::all_of(text.begin() + static_cast<std::ptrdiff_t>(line_begin), text.end(),
                        [](char c) { return c == ' ' || c == '\t'; })) {
          text = text.substr(0, line_begin);
        }
      }
      emit_text(text, text_begin);
      std::size_t after = tag + 2 + ((mod == '-' || mod == '+') ? 1 : 0);
      if (kind == '#') {
        std::size_t end = src_.find("#}", after);
        if (end == std::string::npos) return template_error(ErrorCode::kBadFile, pos_of(tag), "unclosed comment '{#'");
        char close_mod = end > after ? src_[end - 1] : '\0';
        pos = end + 2;
        if (close_mod == '-') strip_next = true;
        else if (close_mod != '+') trim_next = true;
        continue;
      }
      bool is_block = kind == '%';
      std::size_t first_token = tokens_.size();
      tokens_.push_back(Token{is_block ? TokenKind::kBlockBegin : TokenKind::kVarBegin, pos_of(tag), {}, 0, 0.0});
      char close_mod = '\0';
      auto r = lex_tag(after, is_block, &pos, &close_mod);
      if (!r.ok()) return r.error();
      if (close_mod == '-') strip_next = true;
      else if (is_block && close_mod != '+') trim_next = true;
      if (is_block && tokens_.size() == first_token + 3 && tokens_[first_token + 1].kind == TokenKind::kName &&
          tokens_[first_token + 1].text == "raw") {
        Pos raw_pos = tokens_[first_token].pos;
        tokens_.resize(first_token);
        auto raw = lex_raw(pos, raw_pos, strip_next, &pos, &strip_next, &trim_next);
        if (!raw.ok()) return raw.error();
      }
    }
    tokens_.push_back(Token{TokenKind::kEof, pos_of(src_.size()), {}, 0, 0.0});
    return std::move(tokens_);
  }

 private:
  Pos pos_of(std::size_t offset) const {
    auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
    std::size_t line = static_cast<std::size_t>(it - line_starts_.begin());
    std::size_t col = offset - line_starts_[line - 1] + 1;
    return Pos{static_cast<int>(line), static_cast<int>(col)};
  }

  std::size_t find_tag(std::size_t from) const {
    while (true) {
      std::size_t p = src_.find('{', from);
      if (p == std::string::npos || p + 1 >= src_.size()) return std::string::npos;
      char c = src_[p + 1];
      if (c == '{' || c == '%' || c == '#') return p;
      from = p + 1;
    }
  }

  void emit_text(std::string_view text, std::size_t offset) {
    if (text.empty()) return;
    if (!tokens_.empty() && tokens_.back().kind == TokenKind::kText) {
      tokens_.back().text.append(text);
      return;
    }
    tokens_.push_back(Token{TokenKind::kText, pos_of(offset), std::string(text), 0, 0.0});
  }

  // Lexes the inside of {{ }} or {% %} from `p`; sets *next past the closing
  // delimiter and *close_mod to '-', '+' or '\0'.
  Status lex_tag(std::size_t p, bool is_block, std::size_t* next, char* close_mod) {
    int depth = 0;
    const char close = is_block ? '%' : '}';
    while (true) {
      while (p < src_.size() && is_ascii_space(src_[p])) ++p;
      if (p >= src_.size()) {
        return template_error(ErrorCode::kBadFile, pos_of(p),
                              std::string("unexpected end of template, expected '") + (is_block ? "%}" : "}}") + "'");
      }
      if (depth == 0) {
        auto closes_at = [&](std::size_t q) { return q + 1 < src_.size() && src_[q] == close && src_[q + 1] == '}'; };
        if (closes_at(p)) {
          tokens_.push_back(Token{is_block ? TokenKind::kBlockEnd : TokenKind::kVarEnd, pos_of(p), {}, 0, 0.0});
          *next = p + 2;
          *close_mod = '\0';
          return ok_status();
        }
        if ((src_[p] == '-' || src_[p] == '+') && closes_at(p + 1)) {
          tokens_.push_back(Token{is_block ? TokenKind::kBlockEnd : TokenKind::kVarEnd, pos_of(p), {}, 0, 0.0});
          *next = p + 3;
          *close_mod = src_[p];
          return ok_status();
        }
      }
      Pos at = pos_of(p);
      char c = src_[p];
      if (is_name_start(c)) {
        std::size_t e = p;
        while (e < src_.size() && is_name_char(src_[e])) ++e;
        tokens_.push_back(Token{TokenKind::kName, at, src_.substr(p, e - p), 0, 0.0});
        p = e;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        MYRIAD_TRY(lex_number(&p, at));
      } else if (c == '\'' || c == '"') {
        MYRIAD_TRY(lex_string(&p, at));
      } else {
        char c2 = p + 1 < src_.size() ? src_[p + 1] : '\0';
        std::string op;
        if ((c == '/' && c2 == '/') || (c == '*' && c2 == '*') ||
            (c2 == '=' && (c == '=' || c == '!' || c == '<' || c == '>'))) {
          op = {c, c2};
        } else {
          if (std::string_view("+-*/%~<>=()[]{},.:|").find(c) == std::string_view::npos) {
            char hex[8];
            std::snprintf(hex, sizeof(hex), "0x%02x", static_cast<unsigned>(static_cast<unsigned char>(c)));
            return template_error(ErrorCode::kBadFile, at, std::string("unexpected character ") +
                                                               (c >= 0x20 && c < 0x7f ? std::string("'") + c + "'" : hex));
          }
          op = std::string(1, c);
          if (c == '(' || c == '[' || c == '{') ++depth;
          if (c == ')' || c == ']' || c == '}') {
            if (depth == 0) return template_error(ErrorCode::kBadFile, at, std::string("unexpected '") + c + "'");
            --depth;
          }
        }
        tokens_.push_back(Token{TokenKind::kOp, at, op, 0, 0.0});
        p += op.size();
      }
    }
  }

  Status lex_number(std::size_t* pp, Pos at) {
    std::size_t p = *pp;
    std::string digits;
    auto take_digits = [&] {
      while (p < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[p])) || src_[p] == '_')) {
        if (src_[p] != '_') digits.push_back(src_[p]);
        ++p;
      }
    };
    take_digits();
    bool is_float = false;
    if (p + 1 < src_.size() && src_[p] == '.' && std::isdigit(static_cast<unsigned char>(src_[p + 1]))) {
      is_float = true;
      digits.push_back('.');
      ++p;
      take_digits();
    }
    if (p < src_.size() && (src_[p] == 'e' || src_[p] == 'E')) {
      std::size_t q = p + 1;
      if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
      if (q < src_.size() && std::isdigit(static_cast<unsigned char>(src_[q]))) {
        is_float = true;
        digits.append(src_, p, q - p);
        p = q;
        take_digits();
      }
    }
    Token t{is_float ? TokenKind::kFloat : TokenKind::kInt, at, digits, 0, 0.0};
    if (is_float) {
      t.float_value = std::strtod(digits.c_str(), nullptr);
    } else {
      auto r = std::from_chars(digits.data(), digits.data() + digits.size(), t.int_value);
      if (r.ec != std::errc()) return template_error(ErrorCode::kBadFile, at, "integer literal " + digits + " too large");
    }
    tokens_.push_back(std::move(t));
    *pp = p;
    return ok_status();
  }

  static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  // A Python string literal with unicode-escape semantics.
  Status lex_string(std::size_t* pp, Pos at) {
    const char quote = src_[*pp];
    std::size_t p = *pp + 1;
    std::string out;
    while (true) {
      if (p >= src_.size()) return template_error(ErrorCode::kBadFile, at, "unterminated string literal");
      char c = src_[p];
      if (c == quote) break;
      if (c != '\\') {
        out.push_back(c);
        ++p;
        continue;
      }
      if (p + 1 >= src_.size()) return template_error(ErrorCode::kBadFile, at, "unterminated string literal");
      char e = src_[p + 1];
      p += 2;
      switch (e) {
        case '\n': break;  // line continuation
        case '\\': out.push_back('\\'); break;
        case '\'': out.push_back('\''); break;
        case '"': out.push_back('"'); break;
        case 'a': out.push_back('\a'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'v': out.push_back('\v'); break;
        case 'x': case 'u': case 'U': {
          int n = e == 'x' ? 2 : (e == 'u' ? 4 : 8);
          std::uint32_t cp = 0;
          for (int i = 0; i < n; ++i) {
            int h = p < src_.size() ? hex_value(src_[p]) : -1;
            if (h < 0) return template_error(ErrorCode::kBadFile, pos_of(p), std::string("truncated \\") + e + " escape");
            cp = cp * 16 + static_cast<std::uint32_t>(h);
            ++p;
          }
          if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            return template_error(ErrorCode::kBadFile, pos_of(p), "escape names no Unicode scalar value");
          }
          utf8_append(out, static_cast<char32_t>(cp));
          break;
        }
        case 'N': return template_error(ErrorCode::kUnsupported, pos_of(p), "\\N{...} escapes are not supported");
        default:
          if (e >= '0' && e <= '7') {
            std::uint32_t cp = static_cast<std::uint32_t>(e - '0');
            for (int i = 0; i < 2 && p < src_.size() && src_[p] >= '0' && src_[p] <= '7'; ++i, ++p) {
              cp = cp * 8 + static_cast<std::uint32_t>(src_[p] - '0');
            }
            utf8_append(out, static_cast<char32_t>(cp));
          } else {  // unknown escapes stay as written
            out.push_back('\\');
            out.push_back(e);
          }
      }
    }
    tokens_.push_back(Token{TokenKind::kString, at, std::move(out), 0, 0.0});
    *pp = p + 1;
    return ok_status();
  }

  // After `{% raw %}`: everything up to `{% endraw %}` is text.
  Status lex_raw(std::size_t p, Pos raw_pos, bool strip_content, std::size_t* next, bool* strip_next,
                 bool* trim_next) {
    std::size_t from = p;
    while (true) {
      std::size_t q = src_.find("{%", from);
      if (q == std::string::npos) return template_error(ErrorCode::kBadFile, raw_pos, "missing '{% endraw %}'");
      std::size_t r = q + 2;
      char open_mod = (r < src_.size() && (src_[r] == '-' || src_[r] == '+')) ? src_[r] : '\0';
      if (open_mod) ++r;
      while (r < src_.size() && is_ascii_space(src_[r])) ++r;
      if (src_.compare(r, 6, "endraw") != 0) {
        from = q + 2;
        continue;
      }
      r += 6;
      while (r < src_.size() && is_ascii_space(src_[r])) ++r;
      char close_mod = (r < src_.size() && (src_[r] == '-' || src_[r] == '+')) ? src_[r] : '\0';
      if (close_mod) ++r;
      if (src_.compare(r, 2, "%}") != 0) {
        from = q + 2;
        continue;
      }
      std::string_view body(src_.data() + p, q - p);
      std::size_t body_begin = p;
      if (strip_content) {
        while (!body.empty() && is_ascii_space(body.front())) {
          body.remove_prefix(1);
          ++body_begin;
        }
      }
      if (open_mod == '-') {
        while (!body.empty() && is_ascii_space(body.back())) body.remove_suffix(1);
      }
      emit_text(body, body_begin);
      *next = r + 2;
      *strip_next = close_mod == '-';
      *trim_next = close_mod != '-' && close_mod != '+';
      return ok_status();
    }
  }

  std::string src_;
  std::vector<std::size_t> line_starts_;
  std::vector<Token> tokens_;
};

}  // namespace

Result<std::vector<Token>> tokenize(std::string_view source) {
  // Jinja normalises newlines in the whole source, then drops one trailing newline.
  std::string src;
  src.reserve(source.size());
  for (std::size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      src.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      src.push_back(source[i]);
    }
  }
  if (!src.empty() && src.back() == '\n') src.pop_back();
  return Lexer(std::move(src)).run();
}

}  // namespace myriad::jinja
