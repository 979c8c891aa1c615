// Which adapter version occupies each of an executor's N adapter slots, and
// who uses it. Pure bookkeeping: the engine asks for a slot, and when told
// `needs_load` calls Executor::begin_load_adapter itself.
//
//   empty --acquire(miss)--> loading --mark_ready--> ready
//     ^                        |  \--mark_failed--> empty
//     |                        v
//     +---- reassigned by acquire(other key) when refs == 0, not pinned, not loading
//
// Invariants: a slot with refs > 0 (a running sequence pinned this version at
// admission) is never reassigned; a pinned adapter's slot is never
// reassigned; a loading slot is never reassigned; one key occupies at most
// one slot. Among reusable slots, empty ones go first, then the least
// recently released.
//
// Not thread-safe: owned by the engine thread.
#pragma once

#include <cstdint>
#include <optional>
#include <unordered_set>
#include <vector>

#include "runtime/adapter_cache.h"
#include "runtime/result.h"

namespace myriad {

class SlotPool {
 public:
  enum class State : uint8_t { kEmpty, kLoading, kReady };
  struct Grant {
    int32_t slot = -1;
    bool needs_load = false;             // caller must load the adapter into `slot`
    std::optional<AdapterKey> evicted;   // the version that held `slot` before, if any
  };

  explicit SlotPool(int32_t num_slots);

  // Takes one reference on `key`'s slot, assigning one if it has none.
  // kResourceExhausted (changing nothing) when every slot is in use, pinned or loading.
  Result<Grant> acquire(const AdapterKey& key);
  // Drops one reference taken by acquire().
  void release(int32_t slot);
  void mark_ready(int32_t slot);
  // A failed load: the slot becomes empty; its references must be dropped by
  // the caller (the sequences that wanted it fail).
  void mark_failed(int32_t slot);

  // Pinned adapters keep their slot (now or once loaded) until unpinned.
  void pin(const AdapterKey& key);
  void unpin(const AdapterKey& key);
  bool pinned(const AdapterKey& key) const { return pinned_.count(key) > 0; }

  std::optional<int32_t> find(const AdapterKey& key) const;
  int32_t num_slots() const { return int32_t(slots_.size()); }
  State state(int32_t slot) const { return slots_[size_t(slot)].state; }
  int32_t refs(int32_t slot) const { return slots_[size_t(slot)].refs; }
  const std::optional<AdapterKey>& occupant(int32_t slot) const { return slots_[size_t(slot)].key; }

 private:
  struct Slot {
    std::optional<AdapterKey> key;
    State state = State::kEmpty;
    int32_t refs = 0;
    uint64_t last_use = 0;
  };
  bool reusable(const Slot& s) const;

  std::vector<Slot> slots_;
  std::unordered_set<AdapterKey, AdapterKeyHash> pinned_;
  uint64_t clock_ = 0;
};

}  // namespace myriad
