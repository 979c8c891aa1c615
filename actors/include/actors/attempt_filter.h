// The front end's side of re-placement. When a worker is lost, the gateway
// places its requests again (attempt + 1). Before it does, it asks the front
// end's sink where the client is (resume_point): the output tokens passed on
// so far, which the new worker prefills with the prompt and does not send
// again, and from then on every event of the lost attempt is dropped. Events
// of the lost attempt may still be in flight, and a new attempt may send an
// index the client has (a resumed request cut back to the token that ended
// it, or one restarted from its prompt when the sink was not asked): this
// filter, kept by whoever streams to the client, lets each token index
// through once and ignores attempts older than the newest seen, so the
// client's stream is the one it would have had without the failure,
// answered exactly once.
// Not thread-safe (one per sink actor).
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

namespace myriad::actors {

class AttemptFilter {
 public:
  // Whether an event of request `id` from `attempt` goes to the client: a
  // token (`token` at output index `index`), or (is_final) the final event,
  // after which the request is forgotten.
  bool pass(uint64_t id, uint32_t attempt, bool is_final, bool is_token, uint32_t index, int32_t token = 0);
  // The tokens the client has of request `id` (indices [0, n)), for placing
  // it again as `attempt`; older attempts' events are dropped from now on.
  // Empty for a request none of whose tokens came (or that ended).
  std::vector<int32_t> resume_point(uint64_t id, uint32_t attempt);
  size_t tracked() const { return states_.size(); }

 private:
  struct State {
    uint32_t attempt = 0;
    std::vector<int32_t> delivered;  // the tokens the client has: indices [0, delivered.size())
  };
  std::unordered_map<uint64_t, State> states_;
};

}  // namespace myriad::actors
