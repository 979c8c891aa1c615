// A generation request as the engine accepts it: which adapter, the prompt
// ids, how to sample and when to stop. A value type; validated at
// admission (Scheduler::submit), where its adapter is pinned to a version.
// Owned by the caller until submitted, then by the scheduler.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "runtime/sampling_params.h"
#include "runtime/step_plan.h"

namespace myriad {

// Assigned by the caller, never 0: a gateway makes them unique across its
// workers and restarts; an engine refuses one already in flight. Also the
// request's sequence id in step plans (one sequence per request).
using RequestId = SeqId;

inline constexpr double kNoDeadline = std::numeric_limits<double>::infinity();

struct Request {
  RequestId id = 0;                  // the caller's (see RequestId); 0 is refused
  std::string adapter;               // adapter name ("tenant/name" or "tenant/name@N"); "" = base model
  std::vector<int32_t> prompt;       // token ids, at least one
  SamplingParams sampling;
  uint32_t max_tokens = 16;          // output tokens at most (>= 1; 0 with prompt_logits: score the prompt only)
  // Logits of the prompt's last position (kLast) or of every prompt position
  // (kAll), as kLogits events while the prompt is computed.
  LogitsRequest prompt_logits = LogitsRequest::kNone;
  std::vector<int32_t> stop_token_ids;  // sampling one ends the request (reason kStop); the token is emitted
  // Stop strings (needs an engine with a tokenizer): the request ends (reason
  // kStop) at the token whose text completes one; the text ends before it.
  std::vector<std::string> stop;
  // Relative to submission, so it means the same on every machine's clock:
  // unfinished this long after submit() => kDeadline.
  double timeout_ms = kNoDeadline;
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
