// Text helpers shared by the tokenizer pipeline: strict UTF-8 walking, lossy
// repair (maximal-subpart U+FFFD, as Rust's from_utf8_lossy and the WHATWG
// TextDecoder do), the GPT-2 byte<->char map, Unicode normalization forms
// (utf8proc), and JSON file loading without exceptions. Stateless, thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "runtime/result.h"

namespace myriad::tok {

// Length of the valid UTF-8 sequence starting at s[i], or 0 if it is invalid
// or truncated there.
size_t utf8_seq_len(std::string_view s, size_t i);

// Decodes the valid sequence at s[i] (utf8_seq_len(s, i) bytes).
char32_t utf8_decode_at(std::string_view s, size_t i, size_t len);

void utf8_append(std::string& out, char32_t cp);

bool is_valid_utf8(std::string_view s);

// Number of trailing bytes that form a valid but incomplete UTF-8 sequence
// (they may still become a character when more bytes arrive); 0..3.
size_t utf8_incomplete_tail(std::string_view s);

// GPT-2 byte-level alphabet: every byte maps to one printable code point.
char32_t byte_to_char(uint8_t b);
// Inverse; -1 for a code point outside the alphabet.
int char_to_byte(char32_t cp);

enum class NormalForm { kNFC, kNFD, kNFKC, kNFKD };
std::string normalize_unicode(std::string_view s, NormalForm form);  // s must be valid UTF-8
std::string lowercase_unicode(std::string_view s);                   // simple case mapping

// Type-checked JSON field access that never throws: nullptr / nullopt /
// `fallback` when `j` is not an object, the key is absent or has another type.
const nlohmann::json* json_field(const nlohmann::json& j, const char* key);
std::optional<std::string> json_string(const nlohmann::json& j, const char* key);
bool json_bool(const nlohmann::json& j, const char* key, bool fallback);
// A non-negative integer (parsed JSON has them unsigned, built JSON signed).
inline bool is_index(const nlohmann::json& v) {
  return v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0);
}

// Reads and parses a JSON file; errors name the file (and the parse position).
Result<nlohmann::json> load_json_file(const std::string& path);

}  // namespace myriad::tok
