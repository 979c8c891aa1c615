// Internal: how the protocol layer turns JSON into wire text, in one place.
// - Compact, keys in insertion order (ordered_json), as OpenAI sends them.
// - Never throws: text that is not valid UTF-8 (a token's text may be part of
//   a character) is replaced by U+FFFD instead of dump()'s type_error 316;
//   chat logprobs carry the exact bytes in "bytes".
// - Non-ASCII stays raw UTF-8 (valid JSON; what vLLM sends).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace myriad::openai {

inline std::string dump_json(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace myriad::openai
