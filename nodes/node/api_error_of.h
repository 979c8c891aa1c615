// How an engine or service Error answers over the OpenAI-compatible HTTP
// API: its status (400 bad input, 404 unknown, 429 overloaded, 503 shutting
// down or cancelled, 500 otherwise) and OpenAI's error body.
#pragma once

#include "nodes/openai/api_error.h"
#include "runtime/result.h"

namespace myriad::node {

int status_for(ErrorCode code);
openai::ApiError api_error_of(const Error& e);

}  // namespace myriad::node
