#include "multipart.h"

#include <string>

namespace myriad::node {

namespace {

Error bad(std::string what) { return make_error(ErrorCode::kInvalidArgument, "multipart body: " + std::move(what)); }

// The value of `key=` in a header's parameters (quoted or not).
std::string_view param(std::string_view header, std::string_view key) {
  size_t pos = 0;
  while ((pos = header.find(key, pos)) != std::string_view::npos) {
    const bool start = pos == 0 || header[pos - 1] == ';' || header[pos - 1] == ' ';
    const size_t eq = pos + key.size();
    if (start && eq < header.size() && header[eq] == '=') {
      std::string_view v = header.substr(eq + 1);
      if (!v.empty() && v.front() == '"') {
        const size_t end = v.find('"', 1);
        return end == std::string_view::npos ? std::string_view() : v.substr(1, end - 1);
      }
      return v.substr(0, v.find(';'));
    }
    pos = eq;
  }
  return {};
}

bool iequals_prefix(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != std::tolower(static_cast<unsigned char>(prefix[i])))
      return false;
  return true;
}

}  // namespace

Result<std::vector<FormPart>> parse_multipart(std::string_view content_type, std::string_view body) {
  if (!iequals_prefix(content_type, "multipart/form-data")) return bad("Content-Type is not multipart/form-data");
  const std::string_view boundary = param(content_type, "boundary");
  if (boundary.empty() || boundary.size() > 70) return bad("no usable boundary in the Content-Type");
  const std::string delim = "--" + std::string(boundary);
  size_t pos = body.find(delim);
  if (pos == std::string_view::npos) return bad("the boundary never appears");
  std::vector<FormPart> parts;
  for (;;) {
    pos += delim.size();
    if (body.substr(pos, 2) == "--") return parts;  // the closing boundary
    if (body.substr(pos, 2) != "\r\n") return bad("a boundary is not followed by CRLF");
    pos += 2;
    const size_t head_end = body.find("\r\n\r\n", pos);
    if (head_end == std::string_view::npos) return bad("a part's headers never end");
    const std::string_view headers = body.substr(pos, head_end - pos);
    FormPart part;
    for (size_t line = 0; line < headers.size();) {
      size_t eol = headers.find("\r\n", line);
      if (eol == std::string_view::npos) eol = headers.size();
      const std::string_view h = headers.substr(line, eol - line);
      if (iequals_prefix(h, "content-disposition:")) {
        part.name = param(h, "name");
        part.filename = param(h, "filename");
      }
      line = eol + 2;
    }
    if (part.name.empty()) return bad("part " + std::to_string(parts.size() + 1) + " has no Content-Disposition name");
    const size_t data_start = head_end + 4;
    const size_t next = body.find("\r\n" + delim, data_start);
    if (next == std::string_view::npos) return bad("part '" + std::string(part.name) + "' never ends");
    part.data = body.substr(data_start, next - data_start);
    parts.push_back(part);
    pos = next + 2;
  }
}

}  // namespace myriad::node
