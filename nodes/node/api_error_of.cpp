#include "api_error_of.h"

namespace myriad::node {

int status_for(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kUnsupported:
    case ErrorCode::kBadFile:
    case ErrorCode::kResourceExhausted: return 400;
    case ErrorCode::kNotFound: return 404;
    case ErrorCode::kCancelled:
    case ErrorCode::kUnavailable: return 503;
    case ErrorCode::kOverloaded: return 429;
    default: return 500;
  }
}

openai::ApiError api_error_of(const Error& e) {
  const int status = status_for(e.code);
  if (status == 429) return openai::rate_limited(e.message);
  if (status == 503) return openai::overloaded(e.message);
  if (status == 500) return openai::internal_error(e.message);
  openai::ApiError a = openai::invalid_request(e.message);
  a.status = status;
  return a;
}

}  // namespace myriad::node
