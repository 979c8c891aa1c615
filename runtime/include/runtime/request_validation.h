// Whether a request can ever run on an engine of a given shape, as a free
// function: the scheduler calls it at submit, and a gateway calls it before
// placing a request so a client hears about a bad one at once (with the
// same message). Pure; thread-safe.
#pragma once

#include <cstdint>

#include "runtime/executor.h"
#include "runtime/request.h"
#include "runtime/result.h"
#include "runtime/scheduler_config.h"

namespace myriad {

struct RequestLimits {
  int32_t vocab_size = 0;      // 0 = token ids are not range-checked
  int32_t max_seq_len = 0;     // prompt + max_tokens at most (0 = no limit)
  int32_t kv_block_size = 16;
  int32_t num_kv_blocks = 0;   // the whole pool: one request must fit in it
  int32_t num_slots = 0;       // adapters of one request must fit at once
};

RequestLimits request_limits(const SchedulerConfig& config);

// kInvalidArgument (a field out of range, named with its value),
// kResourceExhausted (it could never fit the KV pool), kUnsupported (adapters
// on an engine without slots). Does not check id uniqueness or whether the
// adapters exist: those are the scheduler's and the registry's.
Status validate_request(const Request& request, const RequestLimits& limits);

// A request's prefill_router against the executor that would run it:
// kUnsupported where the executor does not route in prefill, kInvalidArgument
// where the router's layer or width does not fit the model. (Its shape
// against the request, validate_request checks.)
Status check_prefill_router_fits(const Request& request, const ExecutorInfo& info);
// kUnsupported when the request asks for more top_logprobs than the
// executor reports (ExecutorInfo::max_top_logprobs).
Status check_top_logprobs_fit(const Request& request, const ExecutorInfo& info);
// kUnsupported when the request has a logit_bias, or a min_tokens with stop
// tokens to hold back, and the executor does not apply a bias
// (ExecutorInfo::applies_logit_bias).
Status check_logit_bias_fits(const Request& request, const ExecutorInfo& info);
// The three above in that order: what Engine::submit asks of its executor.
Status check_fits_executor(const Request& request, const ExecutorInfo& info);

}  // namespace myriad
