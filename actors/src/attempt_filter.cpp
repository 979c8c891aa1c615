#include "actors/attempt_filter.h"

#include <algorithm>

namespace myriad::actors {

bool AttemptFilter::pass(uint64_t id, uint32_t attempt, bool is_final, bool is_token, uint32_t index,
                         int32_t token) {
  State& s = states_[id];
  if (attempt < s.attempt) return false;  // a lost attempt's late event
  s.attempt = attempt;
  if (is_final) {
    states_.erase(id);
    return true;
  }
  if (is_token) {
    if (index < s.delivered.size()) return false;  // the client has it from an earlier attempt
    // Indices come in order within an attempt, and a new attempt starts at
    // or before the client's position; a gap would be a worker's bug.
    if (index > s.delivered.size()) s.delivered.resize(index, -1);
    s.delivered.push_back(token);
  }
  return true;
}

std::vector<int32_t> AttemptFilter::resume_point(uint64_t id, uint32_t attempt) {
  // Kept also when none of its events came yet, so the lost attempt's late
  // ones are dropped; the new attempt's final event forgets it.
  State& s = states_[id];
  s.attempt = std::max(s.attempt, attempt);
  // Up to a gap (none in practice), so a resumed request never holds a hole.
  const auto gap = std::find(s.delivered.begin(), s.delivered.end(), -1);
  return std::vector<int32_t>(s.delivered.begin(), gap);
}

}  // namespace myriad::actors
