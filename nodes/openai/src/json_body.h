// Internal: a request body to a JSON object, or the 400/413 that says where
// it went wrong. Uses nlohmann's SAX interface: a parse error is handed to
// the handler (with its byte position) instead of being thrown, and the
// handler also bounds the nesting depth, since dump() and comparisons of a
// 100k-deep "[[[[...]]]]" recurse and would overflow the stack.
#pragma once

#include <nlohmann/json.hpp>
#include <string_view>

#include "nodes/openai/api_error.h"
#include "nodes/openai/requests.h"

namespace myriad::openai {

ApiResult<nlohmann::json> parse_json_body(std::string_view body, const ProtocolLimits& limits);

}  // namespace myriad::openai
