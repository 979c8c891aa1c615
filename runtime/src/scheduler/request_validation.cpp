#include "runtime/request_validation.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "runtime/plan_validation.h"
#include "runtime/step_plan.h"

namespace myriad {

RequestLimits request_limits(const SchedulerConfig& c) {
  return RequestLimits{c.vocab_size, c.max_seq_len, c.kv_block_size, c.num_kv_blocks, c.num_slots};
}

namespace {

Status check_adapters(const Request& request, const RequestLimits& limits) {
  const auto& ads = request.adapters;
  if (ads.empty()) return ok_status();
  if (limits.num_slots == 0)
    return make_error(ErrorCode::kUnsupported, "adapter " + ads[0].id.to_string() +
                                                   " requested but this engine has no adapter slots (base model only)");
  if (ads.size() > size_t(kMaxAdaptersPerRow))
    return make_error(ErrorCode::kInvalidArgument, "a mixture of " + std::to_string(ads.size()) +
                                                       " adapters; at most " + std::to_string(kMaxAdaptersPerRow));
  if (ads.size() > size_t(limits.num_slots))
    return make_error(ErrorCode::kInvalidArgument, "a mixture of " + std::to_string(ads.size()) +
                                                       " adapters needs as many slots; this engine has " +
                                                       std::to_string(limits.num_slots));
  for (size_t i = 0; i < ads.size(); ++i) {
    const AdapterUse& a = ads[i];
    MYRIAD_TRY(check_tenant(a.id.tenant));
    MYRIAD_TRY(check_adapter_name(a.id.name));
    if (a.id.version == 0)
      return make_error(ErrorCode::kInvalidArgument, "adapter " + a.id.qualified_name() +
                                                         " has no version: resolve it before submitting");
    if (!std::isfinite(a.weight))
      return make_error(ErrorCode::kInvalidArgument, "adapter " + a.id.to_string() + ": weight is not finite");
    for (size_t j = 0; j < i; ++j)
      if (ads[j].id == a.id)
        return make_error(ErrorCode::kInvalidArgument, "adapter " + a.id.to_string() + " is listed twice");
  }
  return ok_status();
}

Status check_prefill_router(const Request& request) {
  const PrefillRouter* r = request.prefill_router.get();
  if (r == nullptr) return ok_status();
  auto bad = [](std::string msg) { return make_error(ErrorCode::kInvalidArgument, "prefill router: " + std::move(msg)); };
  if (r->dim <= 0) return bad("dim " + std::to_string(r->dim) + " is not positive");
  if (r->centroids.empty() || r->centroids.size() % size_t(r->dim) != 0)
    return bad(std::to_string(r->centroids.size()) + " centroid values are not a whole number of rows of " +
               std::to_string(r->dim));
  if (size_t(r->num_experts()) != request.adapters.size())
    return bad(std::to_string(r->num_experts()) + " centroids for " + std::to_string(request.adapters.size()) +
               " adapters (one expert each)");
  for (float v : r->centroids)
    if (!std::isfinite(v)) return bad("a centroid value is not finite");
  if (r->top_k < 1 || r->top_k > r->num_experts())
    return bad("top_k " + std::to_string(r->top_k) + " outside [1, " + std::to_string(r->num_experts()) + "]");
  if (!(r->temperature > 0) || !std::isfinite(r->temperature))
    return bad("temperature " + std::to_string(r->temperature) + " must be > 0");
  if (r->layer < 0) return bad("layer " + std::to_string(r->layer) + " is negative");
  return ok_status();
}

}  // namespace

Status check_prefill_router_fits(const Request& request, const ExecutorInfo& info) {
  const PrefillRouter* r = request.prefill_router.get();
  if (r == nullptr) return ok_status();
  if (!info.routes_in_prefill)
    return make_error(ErrorCode::kUnsupported,
                      "executor '" + info.device + "' does not route a mixture of experts in the prefill");
  if (r->dim != info.hidden_size)
    return make_error(ErrorCode::kInvalidArgument, "prefill router: centroids of width " + std::to_string(r->dim) +
                                                       " but the model's hidden size is " +
                                                       std::to_string(info.hidden_size));
  if (r->layer > info.num_layers)
    return make_error(ErrorCode::kInvalidArgument, "prefill router: layer " + std::to_string(r->layer) +
                                                       " but the model has " + std::to_string(info.num_layers));
  return ok_status();
}

Status check_top_logprobs_fit(const Request& request, const ExecutorInfo& info) {
  const uint32_t asked = request.sampling.top_logprobs;
  if (asked <= uint32_t(std::max(info.max_top_logprobs, 0))) return ok_status();
  return make_error(ErrorCode::kUnsupported, "top_logprobs " + std::to_string(asked) + ": executor '" + info.device +
                                                 "' reports at most " + std::to_string(info.max_top_logprobs) +
                                                 " alternatives per token");
}

Status check_logit_bias_fits(const Request& request, const ExecutorInfo& info) {
  if (info.applies_logit_bias) return ok_status();
  if (!request.logit_bias.empty())
    return make_error(ErrorCode::kUnsupported, "logit_bias: executor '" + info.device + "' does not apply one yet");
  if (request.min_tokens > 0 && !request.stop_token_ids.empty())
    return make_error(ErrorCode::kUnsupported, "min_tokens: executor '" + info.device +
                                                   "' cannot keep the stop tokens from being sampled yet (it "
                                                   "applies no logit bias)");
  return ok_status();
}

Status check_fits_executor(const Request& request, const ExecutorInfo& info) {
  MYRIAD_TRY(check_prefill_router_fits(request, info));
  MYRIAD_TRY(check_top_logprobs_fit(request, info));
  return check_logit_bias_fits(request, info);
}

namespace {

Status check_logit_bias(const Request& request, const RequestLimits& limits) {
  const std::vector<LogitBias>& biases = request.logit_bias;
  if (biases.size() > kMaxLogitBias)
    return make_error(ErrorCode::kInvalidArgument, "logit_bias has " + std::to_string(biases.size()) +
                                                       " tokens; at most " + std::to_string(kMaxLogitBias));
  for (const LogitBias& b : biases) {
    const std::string name = "logit_bias of token " + std::to_string(b.token);
    if (b.token < 0) return make_error(ErrorCode::kInvalidArgument, name + ": a token id is >= 0");
    if (limits.vocab_size > 0 && b.token >= limits.vocab_size)
      return make_error(ErrorCode::kInvalidArgument,
                        name + ": outside the vocabulary [0, " + std::to_string(limits.vocab_size) + ")");
    if (!(std::fabs(b.bias) <= kMaxLogitBiasValue)) {
      char shown[32];
      std::snprintf(shown, sizeof shown, "%g", double(b.bias));
      return make_error(ErrorCode::kInvalidArgument, name + " = " + shown + ": must be in [-100, 100]");
    }
  }
  std::vector<int32_t> tokens(biases.size());
  for (size_t i = 0; i < biases.size(); ++i) tokens[i] = biases[i].token;
  std::sort(tokens.begin(), tokens.end());
  if (auto dup = std::adjacent_find(tokens.begin(), tokens.end()); dup != tokens.end())
    return make_error(ErrorCode::kInvalidArgument, "logit_bias lists token " + std::to_string(*dup) + " twice");
  return ok_status();
}

}  // namespace

Status validate_request(const Request& request, const RequestLimits& limits) {
  auto bad = [](std::string msg) { return make_error(ErrorCode::kInvalidArgument, std::move(msg)); };
  if (request.id == 0) return bad("request id 0: the caller assigns ids, never 0");
  if (!(request.timeout_ms >= 0.0)) return bad("timeout_ms = " + std::to_string(request.timeout_ms) + ": must be >= 0");
  const size_t prompt_len = request.prompt.size();
  if (prompt_len == 0) return bad("request has an empty prompt");
  if (request.max_tokens < 1 && request.prompt_logits == LogitsRequest::kNone)
    return bad("max_tokens = 0: must be >= 1 (or ask for prompt_logits)");
  if (request.stop_token_ids.size() > kMaxStopTokenIds)
    return bad("stop_token_ids has " + std::to_string(request.stop_token_ids.size()) + " ids; at most " +
               std::to_string(kMaxStopTokenIds));
  if (request.min_tokens > request.max_tokens)
    return bad("min_tokens = " + std::to_string(request.min_tokens) + " exceeds max_tokens = " +
               std::to_string(request.max_tokens));
  if (request.prompt_logits != LogitsRequest::kNone && limits.vocab_size <= 0)
    return bad("prompt_logits needs the scheduler's vocab_size");
  for (size_t i = 0; i < prompt_len; ++i) {
    const int32_t t = request.prompt[i];
    if (t < 0 || (limits.vocab_size > 0 && t >= limits.vocab_size))
      return bad("prompt token " + std::to_string(i) + ": token id " + std::to_string(t) +
                 " is outside the vocabulary [0, " + std::to_string(limits.vocab_size) + ")");
  }
  for (size_t i = 0; i < request.resume_output.size(); ++i) {
    const int32_t t = request.resume_output[i];
    if (t < 0 || (limits.vocab_size > 0 && t >= limits.vocab_size))
      return bad("resumed output token " + std::to_string(i) + ": token id " + std::to_string(t) +
                 " is outside the vocabulary [0, " + std::to_string(limits.vocab_size) + ")");
  }
  MYRIAD_TRY(check_sampling_params(request.sampling));
  MYRIAD_TRY(check_logit_bias(request, limits));
  const int64_t total = int64_t(prompt_len) + request.max_tokens;
  if (limits.max_seq_len > 0 && total > limits.max_seq_len)
    return bad("prompt (" + std::to_string(prompt_len) + ") + max_tokens (" + std::to_string(request.max_tokens) +
               ") exceeds max_seq_len " + std::to_string(limits.max_seq_len));
  const int64_t blocks = (total + limits.kv_block_size - 1) / limits.kv_block_size;
  if (blocks > limits.num_kv_blocks)
    return make_error(ErrorCode::kResourceExhausted,
                      "prompt (" + std::to_string(prompt_len) + ") + max_tokens (" + std::to_string(request.max_tokens) +
                          ") needs " + std::to_string(blocks) + " KV blocks; the pool has " +
                          std::to_string(limits.num_kv_blocks));
  MYRIAD_TRY(check_adapters(request, limits));
  return check_prefill_router(request);
}

}  // namespace myriad
