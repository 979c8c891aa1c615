// The OpenAI error object, the one shape every HTTP error of Myriad's
// OpenAI-compatible API takes: {"error": {"message", "type", "param", "code"}}
// with the matching HTTP status. The message names the field and the limit,
// so a user can act on it ("temperature 3 is out of range [0, 2]").
//
// Types and codes follow what OpenAI sends and documents (checked against
// the error-codes guide, https://platform.openai.com/docs/guides/error-codes,
// and bodies quoted from it):
//   400/404/413 "invalid_request_error"; 404 for a model that does not exist
//     or is not the caller's, code "model_not_found" (OpenAI answers both
//     the same way on purpose, and so does Myriad: no tenant learns which
//     adapters another tenant has);
//   401 "authentication_error", code "invalid_api_key";
//   429 "rate_limit_exceeded", code "rate_limit_exceeded";
//   500 "server_error"; 503 "server_error", code "server_is_overloaded".
// The official SDKs pick their exception class from the status alone
// (BadRequestError, AuthenticationError, NotFoundError, RateLimitError...),
// so the status is what matters most; type and code are for programs that
// branch on them. A value type; thread-safe as any value.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "runtime/result.h"

namespace myriad::openai {

struct ApiError {
  int status = 400;     // HTTP status
  std::string message;  // names the field and the limit
  std::string type;     // "invalid_request_error", ...
  std::string param;    // the request field at fault ("messages[1].content"); empty -> null
  std::string code;     // machine-readable ("model_not_found"); empty -> null
};

// {"error":{"message":...,"type":...,"param":...|null,"code":...|null}}
std::string to_json(const ApiError& e);

// 400 invalid_request_error. `code` is one of Myriad's request codes:
// "invalid_json", "invalid_type", "invalid_value", "missing_required_parameter",
// "unsupported_parameter", "unsupported_value" (docs/api.md lists them).
ApiError invalid_request(std::string message, std::string param = {}, std::string code = {});
// 404 model_not_found: the message says "does not exist or you do not have
// access to it" for an unknown name and another tenant's adapter alike.
ApiError model_not_found(std::string_view model, std::string_view detail = {});
ApiError invalid_api_key(std::string message = "Incorrect or missing API key");  // 401
ApiError rate_limited(std::string message);                                      // 429
ApiError body_too_large(size_t size, size_t limit);                              // 413
ApiError overloaded(std::string message);                                        // 503
ApiError internal_error(std::string message);                                    // 500
ApiError not_found_route(std::string_view method, std::string_view path);        // 404 unknown URL

// A parse or validation outcome of the protocol layer: the value, or the
// ApiError to answer with. Mirrors runtime's Result (value() of an error is
// our bug and aborts); no exceptions.
template <class T>
class [[nodiscard]] ApiResult {
 public:
  ApiResult(T value) : v_(std::move(value)) {}         // NOLINT: implicit by design
  ApiResult(ApiError error) : v_(std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & {
    check_ok();
    return std::get<0>(v_);
  }
  const T& value() const& {
    check_ok();
    return std::get<0>(v_);
  }
  T&& value() && {
    check_ok();
    return std::get<0>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const ApiError& error() const { return std::get<1>(v_); }

 private:
  void check_ok() const {
    if (!ok())
      assertion_failed(__FILE__, __LINE__, "ApiResult::ok()", "value() of an error: " + error().message);
  }
  std::variant<T, ApiError> v_;
};

}  // namespace myriad::openai
