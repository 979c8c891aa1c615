// A generation request as the engine accepts it: which adapter versions (a
// weighted list, already resolved to AdapterIds by the caller), the prompt
// ids, how to sample and when to stop. A value type; validated by
// validate_request (request_validation.h) at Scheduler::submit, and by a
// gateway before it places the request. Owned by the caller until
// submitted, then by the scheduler.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "runtime/adapter_id.h"
#include "runtime/logit_bias.h"
#include "runtime/sampling_params.h"
#include "runtime/step_plan.h"

namespace myriad {

// Assigned by the caller, never 0: a gateway makes them unique across its
// workers and restarts; an engine refuses one already in flight. Also the
// request's sequence id in step plans (one sequence per request).
using RequestId = SeqId;

inline constexpr double kNoDeadline = std::numeric_limits<double>::infinity();

// One adapter of a request and its weight in the mixture (1 for a plain
// adapter request). The output adds weight * scale * B A x per adapter.
struct AdapterUse {
  AdapterId id;
  float weight = 1.0f;
};

struct Request {
  RequestId id = 0;                  // the caller's (see RequestId); 0 is refused
  // Empty = the base model. Otherwise 1..kMaxAdaptersPerRow distinct
  // published versions, made resident in slots together before the request
  // runs (a mixture of experts names several).
  std::vector<AdapterUse> adapters;
  std::vector<int32_t> prompt;       // token ids, at least one
  SamplingParams sampling;
  // Added to these tokens' logits before each sample (distinct tokens, at
  // most kMaxLogitBias; an executor with ExecutorInfo::applies_logit_bias).
  std::vector<LogitBias> logit_bias;
  uint32_t max_tokens = 16;          // output tokens at most (>= 1; 0 with prompt_logits: score the prompt only)
  // Logits of the prompt's last position (kLast) or of every prompt position
  // (kAll), as kLogits events while the prompt is computed.
  LogitsRequest prompt_logits = LogitsRequest::kNone;
  std::vector<int32_t> stop_token_ids;  // sampling one ends the request (reason kStop); the token is emitted
  // vLLM's min_tokens: until this many tokens are out, the stop tokens are
  // not sampled (their logits get -inf: an executor with applies_logit_bias)
  // and no stop string ends in their text. At most max_tokens.
  uint32_t min_tokens = 0;
  // Stop strings (needs an engine with a tokenizer): the request ends (reason
  // kStop) at the token whose text completes one; the text ends before it.
  std::vector<std::string> stop;
  // Relative to submission, so it means the same on every machine's clock:
  // unfinished this long after submit() => kDeadline.
  double timeout_ms = kNoDeadline;
  // Resuming on another worker: the output tokens an earlier attempt already
  // sent to the client. They are computed with the prompt (one prefill) and
  // not emitted again; the output goes on at index resume_output.size(), with
  // the sampler's counter there, so a greedy or seeded request continues as
  // it would have. Cut back to the first token that would have ended the
  // request (a stop token, max_tokens, a stop string): that token is then
  // computed again and ends it.
  std::vector<int32_t> resume_output;
  // A mixture of experts routed by hidden state from this request's own
  // prefill: `adapters` are the router's experts (their weights unused), and
  // the executor picks among them after router->layer layers (an executor
  // with routes_in_prefill only). Null: the adapters apply as weighted.
  std::shared_ptr<const PrefillRouter> prefill_router;
};

// Why a request finished normally (failures are Errors, not reasons).
enum class FinishReason : uint8_t {
  kStop,       // sampled one of stop_token_ids
  kLength,     // produced max_tokens
  kCancelled,  // cancel() before it finished
  kDeadline,   // timeout_ms passed before it finished
};
const char* finish_reason_name(FinishReason r);  // "stop", "length", "cancelled", "deadline"

}  // namespace myriad
