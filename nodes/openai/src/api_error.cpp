#include "nodes/openai/api_error.h"

#include <nlohmann/json.hpp>

#include "json_text.h"

namespace myriad::openai {

namespace {

ApiError make(int status, std::string message, std::string type, std::string param, std::string code) {
  return ApiError{status, std::move(message), std::move(type), std::move(param), std::move(code)};
}

}  // namespace

std::string to_json(const ApiError& e) {
  nlohmann::ordered_json inner;
  inner["message"] = e.message;
  inner["type"] = e.type;
  inner["param"] = e.param.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(e.param);
  inner["code"] = e.code.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(e.code);
  nlohmann::ordered_json out;
  out["error"] = std::move(inner);
  return dump_json(out);
}

ApiError invalid_request(std::string message, std::string param, std::string code) {
  return make(400, std::move(message), "invalid_request_error", std::move(param), std::move(code));
}

ApiError model_not_found(std::string_view model, std::string_view detail) {
  // OpenAI's wording, so clients and people recognise it.
  std::string m = "The model `";
  m += model;
  m += "` does not exist or you do not have access to it.";
  if (!detail.empty()) {
    m += " (";
    m += detail;
    m += ")";
  }
  return make(404, std::move(m), "invalid_request_error", "model", "model_not_found");
}

ApiError invalid_api_key(std::string message) {
  return make(401, std::move(message), "authentication_error", {}, "invalid_api_key");
}

ApiError rate_limited(std::string message) {
  return make(429, std::move(message), "rate_limit_exceeded", {}, "rate_limit_exceeded");
}

ApiError body_too_large(size_t size, size_t limit) {
  std::string m = "request body of ";
  m += std::to_string(size);
  m += " bytes exceeds the limit of ";
  m += std::to_string(limit);
  m += " bytes";
  return make(413, std::move(m), "invalid_request_error", {}, "request_too_large");
}

ApiError overloaded(std::string message) {
  return make(503, std::move(message), "server_error", {}, "server_is_overloaded");
}

ApiError internal_error(std::string message) { return make(500, std::move(message), "server_error", {}, {}); }

ApiError not_found_route(std::string_view method, std::string_view path) {
  std::string m = "Invalid URL (";
  m += method;
  m += ' ';
  m += path;
  m += ')';
  return make(404, std::move(m), "invalid_request_error", {}, "unknown_url");
}

}  // namespace myriad::openai
