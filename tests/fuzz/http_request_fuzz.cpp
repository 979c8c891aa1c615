// Fuzzes what a node does with the bytes of an HTTP request before any
// engine sees it: Beast's request parser (with the node's body limit), then
// the body as the route would read it: an OpenAI completion or chat body, a
// multipart adapter upload, and the API-keys file parser (a file the
// operator writes, but untrusted input all the same). Nothing may crash,
// hang or read out of bounds; errors are values.
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "multipart.h"
#include "nodes/openai/requests.h"
#include "tenants.h"

namespace http = boost::beast::http;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  http::request_parser<http::string_body> parser;
  parser.body_limit(1 << 20);
  parser.header_limit(16 << 10);
  parser.eager(true);
  boost::beast::error_code ec;
  size_t used = 0;
  while (used < bytes.size() && !parser.is_done()) {
    const size_t n = parser.put(boost::asio::buffer(bytes.data() + used, bytes.size() - used), ec);
    if (ec || n == 0) break;
    used += n;
  }
  if (!ec && parser.is_header_done()) {
    const auto& req = parser.get();
    const std::string_view body(req.body());
    const std::string_view target(req.target().data(), req.target().size());
    myriad::openai::ProtocolLimits limits;
    if (target.find("chat") != std::string_view::npos) {
      (void)myriad::openai::parse_chat_request(body, limits);
    } else {
      (void)myriad::openai::parse_completion_request(body, limits);
    }
    auto ct = req.find(http::field::content_type);
    if (ct != req.end()) {
      auto parts = myriad::node::parse_multipart(std::string_view(ct->value().data(), ct->value().size()), body);
      if (parts.ok())
        for (const auto& p : parts.value()) (void)p.data.size();
    }
  }
  (void)myriad::node::Tenants::parse(bytes, "fuzz");
  return 0;
}
