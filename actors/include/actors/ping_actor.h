// The ping actor: answers a Cap'n Proto Ping with a Pong echoing its seq,
// payload and timestamp. It exists to prove the actor + schema plumbing
// (local and across actor systems through CAF's middleman); later actors
// (adapter, worker, scheduler) follow the same shape: a typed interface
// whose messages are schema bytes.
//
// State: a count of pings answered (owned by the actor; CAF runs one message
// at a time per actor, so no locking). Stops on an exit message.
#pragma once

#include <caf/all.hpp>
#include <string>

#include "actors/capnp_bytes.h"

namespace myriad::actors {

using ping_atom = caf::atom_constant<caf::atom("ping")>;

// ping(Ping bytes) -> Pong bytes. Malformed Ping bytes get a caf::error
// (sec::invalid_argument) naming the problem; the actor keeps running.
using ping_actor = caf::typed_actor<caf::replies_to<ping_atom, WireBytes>::with<WireBytes>>;

struct PingState {
  std::string name;
  uint64_t answered = 0;
};

ping_actor::behavior_type ping_behavior(ping_actor::stateful_pointer<PingState> self, std::string name);

// Helpers for callers: build a Ping, read a Pong.
WireBytes make_ping(uint64_t seq, const std::string& payload, int64_t sent_at_ns);
struct PongView {
  uint64_t seq = 0;
  std::string payload;
  int64_t sent_at_ns = 0;
  std::string responder;
  uint64_t count = 0;
};
Result<PongView> read_pong(const WireBytes& bytes);

}  // namespace myriad::actors
