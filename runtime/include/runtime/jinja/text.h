// Python str semantics over UTF-8 for the Jinja evaluator: code points
// (len, indexing and slicing count code points, not bytes), str.isspace()
// whitespace, case mapping (via utf8proc, simple one-to-one mappings) and the
// strip/split/title/capitalize helpers Jinja templates call.
// Invariant: inputs are UTF-8; invalid bytes decode as U+FFFD.
// Owner: runtime/jinja. Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace myriad::jinja {

std::u32string utf8_decode(std::string_view s);
std::string utf8_encode(std::u32string_view s);
void utf8_append(std::string& out, char32_t cp);
bool is_ascii(std::string_view s);
// `s` if it is valid UTF-8, else a copy with each invalid byte replaced by
// U+FFFD (so errors and output can always go into JSON).
std::string valid_utf8(std::string s);
std::size_t utf8_length(std::string_view s);  // in code points

bool is_python_space(char32_t c);  // str.isspace()
char32_t to_upper(char32_t c);
char32_t to_lower(char32_t c);
bool is_cased_letter(char32_t c);  // has upper or lower case (for title())

std::string str_upper(std::string_view s);
std::string str_lower(std::string_view s);
std::string str_capitalize(std::string_view s);  // str.capitalize()
std::string str_title(std::string_view s);       // str.title()
std::string jinja_title(std::string_view s);     // the `title` filter (word beginnings)

enum class StripSide { kLeft, kRight, kBoth };
// str.strip(chars): chars == nullptr strips whitespace.
std::string str_strip(std::string_view s, const std::string* chars, StripSide side);
// str.split(sep, maxsplit): sep == nullptr splits on whitespace runs.
std::vector<std::string> str_split(std::string_view s, const std::string* sep, std::int64_t maxsplit);
// str.replace(old, new, count); count < 0 = all.
std::string str_replace(std::string_view s, std::string_view from, std::string_view to, std::int64_t count);

}  // namespace myriad::jinja
