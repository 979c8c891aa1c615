#include "json_body.h"

#include <algorithm>
#include <string>

namespace myriad::openai {

namespace {

using nlohmann::json;

// nlohmann's own DOM builder (with exceptions off, its parse_error returns
// false instead of throwing) plus a depth bound and a record of the error.
class BoundedDomSax {
 public:
  BoundedDomSax(json& root, int max_depth) : dom_(root, /*allow_exceptions=*/false), max_depth_(max_depth) {}

  bool null() { return dom_.null(); }
  bool boolean(bool v) { return dom_.boolean(v); }
  bool number_integer(json::number_integer_t v) { return dom_.number_integer(v); }
  bool number_unsigned(json::number_unsigned_t v) { return dom_.number_unsigned(v); }
  bool number_float(json::number_float_t v, const json::string_t& s) { return dom_.number_float(v, s); }
  bool string(json::string_t& v) { return dom_.string(v); }
  bool binary(json::binary_t& v) { return dom_.binary(v); }
  bool start_object(std::size_t n) { return enter() && dom_.start_object(n); }
  bool key(json::string_t& k) { return dom_.key(k); }
  bool end_object() {
    --depth_;
    return dom_.end_object();
  }
  bool start_array(std::size_t n) { return enter() && dom_.start_array(n); }
  bool end_array() {
    --depth_;
    return dom_.end_array();
  }
  bool parse_error(std::size_t position, const std::string& /*last_token*/,
                   const nlohmann::detail::exception& ex) {
    error_position = position;
    error_what = ex.what();
    return false;
  }

  bool too_deep = false;
  std::size_t error_position = 0;  // characters read when the error was found
  std::string error_what;

 private:
  bool enter() {
    if (++depth_ > max_depth_) {
      too_deep = true;
      return false;
    }
    return true;
  }
  nlohmann::detail::json_sax_dom_parser<json> dom_;
  int max_depth_;
  int depth_ = 0;
};

// nlohmann's reason without its "[json.exception...] parse error at line L,
// column C: " prefix (we print our own position).
std::string reason_of(const std::string& what) {
  std::string_view w = what;
  if (const size_t col = w.find("column "); col != std::string_view::npos) {
    if (const size_t colon = w.find(": ", col); colon != std::string_view::npos)
      return std::string(w.substr(colon + 2));
  }
  if (!w.empty() && w.front() == '[') {
    if (const size_t close = w.find("] "); close != std::string_view::npos)
      return std::string(w.substr(close + 2));
  }
  return what;
}

}  // namespace

ApiResult<json> parse_json_body(std::string_view body, const ProtocolLimits& limits) {
  if (limits.max_body_bytes != 0 && body.size() > limits.max_body_bytes)
    return body_too_large(body.size(), limits.max_body_bytes);
  json root;
  BoundedDomSax sax(root, limits.max_json_depth);
  const bool ok = json::sax_parse(body.begin(), body.end(), &sax);
  if (sax.too_deep)
    return invalid_request(
        "malformed JSON: nested deeper than " + std::to_string(limits.max_json_depth) + " levels", {},
        "invalid_json");
  if (!ok) {
    // The error is at the last character read (position counts them from 1).
    const size_t at = std::min(sax.error_position == 0 ? 0 : sax.error_position - 1, body.size());
    const std::string_view before = body.substr(0, at);
    const size_t line = 1 + size_t(std::count(before.begin(), before.end(), '\n'));
    const size_t line_start = before.rfind('\n') == std::string_view::npos ? 0 : before.rfind('\n') + 1;
    std::string m = "malformed JSON at line ";
    m += std::to_string(line);
    m += ", column ";
    m += std::to_string(at - line_start + 1);
    m += " (byte ";
    m += std::to_string(at);
    m += "): ";
    m += reason_of(sax.error_what);
    return invalid_request(std::move(m), {}, "invalid_json");
  }
  if (!root.is_object()) {
    std::string m = "request body: expected a JSON object, got ";
    m += root.type_name();
    return invalid_request(std::move(m), {}, "invalid_type");
  }
  return root;
}

}  // namespace myriad::openai
