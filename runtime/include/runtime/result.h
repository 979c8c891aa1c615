// Result<T>: the one error policy for expected failures (bad file, unknown
// adapter, out of range, out of memory). Our own bugs are assertions, not
// Results. Business logic does not throw or catch.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <variant>

namespace myriad {

struct Error;
[[noreturn]] void assertion_failed(const char* file, int line, const char* cond, const std::string& msg);

enum class ErrorCode {
  kInvalidArgument,  // a request or CLI argument out of range
  kBadFile,          // malformed / hostile / truncated file
  kNotFound,         // unknown adapter, missing file
  kUnsupported,      // valid input Myriad does not implement (e.g. DoRA)
  kResourceExhausted,  // no free slot / KV block / memory
  kIo,               // an OS call failed
  kCancelled,
  kDeadlineExceeded,
  kInternal,
  kOverloaded,   // a bounded queue is full: retry shortly (HTTP 429)
  kUnavailable,  // shutting down or not ready: try another node (HTTP 503)
};

const char* error_code_name(ErrorCode code);

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;  // names what is wrong (file, tensor, field, value)

  std::string to_string() const { return std::string(error_code_name(code)) + ": " + message; }
};

inline Error make_error(ErrorCode code, std::string message) { return Error{code, std::move(message)}; }

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  // Reading the value of an error is our bug: abort naming the error.
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
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const { return std::get<1>(v_); }

 private:
  void check_ok() const {
    if (!ok()) assertion_failed(__FILE__, __LINE__, "Result::ok()", "value() of an error: " + error().to_string());
  }
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;
inline Status ok_status() { return {}; }

// Assertion for our own bugs: prints the condition and a message, aborts.
[[noreturn]] void assertion_failed(const char* file, int line, const char* cond, const std::string& msg);

}  // namespace myriad

#define MYRIAD_CHECK(cond, msg)                                              \
  do {                                                                       \
    if (!(cond)) ::myriad::assertion_failed(__FILE__, __LINE__, #cond, msg); \
  } while (0)

// Propagates an Error from an expression returning Result<...>/Status.
#define MYRIAD_TRY(expr)                      \
  do {                                        \
    auto&& _myriad_r = (expr);                \
    if (!_myriad_r.ok()) return _myriad_r.error(); \
  } while (0)
