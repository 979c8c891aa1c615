// What the engine tells the owner of a request: each sampled token (with
// its text, when the engine has a tokenizer), then exactly one final event
// (finished with a reason, or failed with an error). Delivered in order per request, on the engine thread, through an
// EventSink the engine's owner implements (an actor forwards them as
// messages; tests record them).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string_view>

#include "runtime/request.h"
#include "runtime/result.h"
#include "runtime/top_logprobs.h"

namespace myriad {

enum class EventKind : uint8_t {
  kToken,     // a sampled token
  kLogits,    // logits of prompt positions (a request with prompt_logits)
  kFinished,  // final
  kFailed,    // final
};

struct RequestEvent {
  RequestId id = 0;
  EventKind kind = EventKind::kToken;
  double time_ms = 0.0;          // engine clock
  // kToken
  int32_t token = -1;
  float logprob = 0.0f;
  uint32_t index = 0;            // output index of this token (0 = first)
  // The request's sampling.top_logprobs most likely tokens here; valid
  // during on_event only (it views the step's result).
  std::span<const TopLogprobs::Entry> top;
  // kToken and kFinished, from an engine with a tokenizer: the text this
  // token released (the output processor holds back partial characters and
  // what may become a stop string); on kFinished, whatever was held back.
  // Valid during on_event only (it views the engine's buffer).
  std::string_view text;
  // kLogits: prompt positions [logits_start, logits_start + logits_count),
  // row-major [logits_count, vocab]; the span is valid during on_event only.
  uint32_t logits_start = 0;
  uint32_t logits_count = 0;
  std::span<const float> logits;
  // kFinished / kFailed
  FinishReason reason = FinishReason::kStop;  // kFinished only
  uint32_t num_output_tokens = 0;  // tokens emitted before this event
  double queue_ms = -1.0;          // submit -> first admission into the batch; -1 if never admitted
  Error error;                     // kFailed only
  // A request with a prefill_router, on every event once it has routed: the
  // weight each of its adapters got (0: not chosen), in Request::adapters order.
  uint8_t num_expert_weights = 0;
  std::array<float, kMaxAdaptersPerRow> expert_weights{};

  bool is_final() const { return kind == EventKind::kFinished || kind == EventKind::kFailed; }
};

class EventSink {
 public:
  virtual ~EventSink() = default;
  // Must not call back into the engine (submit/cancel/step).
  virtual void on_event(const RequestEvent& e) = 0;
};

}  // namespace myriad
