// The front end's side of re-placement. When a worker is lost, the gateway
// places its requests again (attempt + 1), and the new worker starts each
// from its prompt with the same sampling seed, so a greedy or seeded request
// produces the same tokens again. Events of the lost attempt may still be in
// flight, and the client may already have some of its tokens: this filter,
// kept by whoever streams to the client, lets each token index through once
// and ignores attempts older than the newest seen, so the client's stream is
// the one it would have had without the failure, answered exactly once.
// Not thread-safe (one per sink actor).
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>

namespace myriad::actors {

class AttemptFilter {
 public:
  // Whether an event of request `id` from `attempt` goes to the client: a
  // token with output index `index`, or (is_final) the final event, after
  // which the request is forgotten.
  bool pass(uint64_t id, uint32_t attempt, bool is_final, bool is_token, uint32_t index);
  size_t tracked() const { return states_.size(); }

 private:
  struct State {
    uint32_t attempt = 0;
    uint32_t delivered = 0;  // tokens the client has: indices [0, delivered)
  };
  std::unordered_map<uint64_t, State> states_;
};

}  // namespace myriad::actors
