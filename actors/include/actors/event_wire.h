// runtime RequestEvent <-> schema RequestEvent (messages.capnp). A worker
// writes one per engine event; the gateway reads it back. Each kind carries
// the fields the runtime defines for it (engine_events.h): token (index,
// token, logprob, text), logits (start, count, values), finished (reason,
// text, counts, queue time), failed (error, counts, queue time); the fields
// a kind leaves unset are not sent.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "actors/messages.h"
#include "runtime/engine_events.h"

namespace myriad::actors {

void write_event(const RequestEvent& event, uint32_t attempt, schema::RequestEvent::Builder out);
EventWire encode_event(const RequestEvent& event, uint32_t attempt = 0);

// A RequestEvent read from a message, owning the text, logits and
// alternatives its views point into (a runtime RequestEvent only views its
// engine's buffers).
class OwnedEvent {
 public:
  // The event, its views on this object's storage: valid while this lives
  // and is not moved.
  RequestEvent view() const {
    RequestEvent e = event_;
    e.text = text_;
    e.logits = logits_;
    e.top = top_.view();
    return e;
  }
  uint32_t attempt() const { return attempt_; }

 private:
  friend Result<OwnedEvent> read_event(schema::RequestEvent::Reader in);
  RequestEvent event_;  // views left empty; view() fills them
  std::string text_;
  std::vector<float> logits_;
  TopLogprobs top_;
  uint32_t attempt_ = 0;
};

// kInvalidArgument for a kind or finish reason this build does not know, or
// logits whose size is not a multiple of their position count.
Result<OwnedEvent> read_event(schema::RequestEvent::Reader in);

}  // namespace myriad::actors
