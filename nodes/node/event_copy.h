// An engine event copied out of its callback for another thread (a
// server's session) to handle: it owns its text and alternatives, which a
// RequestEvent only views while on_event runs. Logits are not copied; a
// caller that asked for them reduces them in the callback.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/engine_events.h"
#include "runtime/result.h"
#include "runtime/top_logprobs.h"

namespace myriad::node {

struct EventCopy {
  EventKind kind = EventKind::kToken;
  int32_t token = 0;
  float logprob = 0.0f;
  uint32_t index = 0;
  std::string text;
  std::vector<TopLogprobs::Entry> top;  // kToken: the alternatives asked for
  FinishReason reason = FinishReason::kStop;
  uint32_t num_output_tokens = 0;
  double queue_ms = -1.0;
  Error error;
  std::vector<float> expert_weights;  // routed in the prefill: each expert's weight

  static EventCopy of(const RequestEvent& e) {
    EventCopy c;
    c.kind = e.kind;
    c.token = e.token;
    c.logprob = e.logprob;
    c.index = e.index;
    c.text = std::string(e.text);
    c.top.assign(e.top.begin(), e.top.end());
    c.reason = e.reason;
    c.num_output_tokens = e.num_output_tokens;
    c.queue_ms = e.queue_ms;
    c.error = e.error;
    c.expert_weights.assign(e.expert_weights.begin(), e.expert_weights.begin() + e.num_expert_weights);
    return c;
  }
};

}  // namespace myriad::node
