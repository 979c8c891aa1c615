// Adapter slot bookkeeping (see runtime/slot_pool.h).
#include "runtime/slot_pool.h"

namespace myriad {

SlotPool::SlotPool(int32_t num_slots) : slots_(size_t(num_slots < 0 ? 0 : num_slots)) {}

std::optional<int32_t> SlotPool::find(const AdapterKey& key) const {
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].key && *slots_[i].key == key) return int32_t(i);
  }
  return std::nullopt;
}

bool SlotPool::reusable(const Slot& s) const {
  if (s.state == State::kEmpty) return true;
  return s.state == State::kReady && s.refs == 0 && !pinned_.count(*s.key);
}

Result<SlotPool::Grant> SlotPool::acquire(const AdapterKey& key) {
  if (auto s = find(key)) {
    Slot& slot = slots_[size_t(*s)];
    ++slot.refs;
    slot.last_use = ++clock_;
    return Grant{*s, false, std::nullopt};
  }
  int32_t best = -1;
  for (size_t i = 0; i < slots_.size(); ++i) {
    const Slot& s = slots_[i];
    if (!reusable(s)) continue;
    if (best < 0) {
      best = int32_t(i);
      continue;
    }
    const Slot& b = slots_[size_t(best)];
    const bool better = (s.state == State::kEmpty && b.state != State::kEmpty) ||
                        (s.state == b.state && s.last_use < b.last_use);
    if (better) best = int32_t(i);
  }
  if (best < 0) {
    return make_error(ErrorCode::kResourceExhausted,
                      "no free adapter slot for " + key.to_string() + ": all " + std::to_string(slots_.size()) +
                          " slots are in use by running sequences, pinned or loading");
  }
  Slot& slot = slots_[size_t(best)];
  Grant g{best, true, slot.key};
  slot.key = key;
  slot.state = State::kLoading;
  slot.refs = 1;
  slot.last_use = ++clock_;
  return g;
}

void SlotPool::release(int32_t slot) {
  Slot& s = slots_[size_t(slot)];
  MYRIAD_CHECK(s.refs > 0, "release of slot " + std::to_string(slot) + " with no references");
  --s.refs;
  s.last_use = ++clock_;
}

void SlotPool::mark_ready(int32_t slot) {
  Slot& s = slots_[size_t(slot)];
  MYRIAD_CHECK(s.state == State::kLoading, "mark_ready of slot " + std::to_string(slot) + " that is not loading");
  s.state = State::kReady;
}

void SlotPool::mark_failed(int32_t slot) {
  Slot& s = slots_[size_t(slot)];
  s.key.reset();
  s.state = State::kEmpty;
  s.refs = 0;
}

void SlotPool::pin(const AdapterKey& key) { pinned_.insert(key); }
void SlotPool::unpin(const AdapterKey& key) { pinned_.erase(key); }

}  // namespace myriad
