#include "actors/attempt_filter.h"

namespace myriad::actors {

bool AttemptFilter::pass(uint64_t id, uint32_t attempt, bool is_final, bool is_token, uint32_t index) {
  State& s = states_[id];
  if (attempt < s.attempt) return false;  // a lost attempt's late event
  s.attempt = attempt;
  if (is_final) {
    states_.erase(id);
    return true;
  }
  if (is_token) {
    if (index < s.delivered) return false;  // the client has it from an earlier attempt
    s.delivered = index + 1;
  }
  return true;
}

}  // namespace myriad::actors
