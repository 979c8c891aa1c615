// The host-memory tier of adapters: a registry of every known adapter
// (AdapterId -> how to load it: from the store, a folder) and an LRU cache of loaded,
// validated LoraWeights under a byte budget.
//
//   registered (on disk) --get/pin--> loading --ok--> cached --evict/unload--> registered
//                                        \--error--> registered (nothing kept)
//
// Invariants: registration is not capped by the budget or by device slots;
// bytes_used() <= budget_bytes() unless pinned adapters alone exceed it;
// a pinned adapter is never evicted; an adapter whose load fails, or that
// cannot fit even after evicting every unpinned one, is not kept (get()
// still returns it to the caller, who holds it by shared_ptr). Dropping an
// entry frees its memory as soon as no in-flight slot load still holds it.
//
// Thread-safe: every method may be called from any thread. A loader runs
// outside the lock; concurrent get()s of one adapter share one load.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/adapter_id.h"
#include "runtime/executor.h"
#include "runtime/lora_weights.h"
#include "runtime/result.h"

namespace myriad {

// Reads and validates an adapter (e.g. load_peft_adapter on its folder).
using AdapterLoader = std::function<Result<std::shared_ptr<const LoraWeights>>()>;

// `load`, then `executor`'s staging (Executor::stage_adapter), so the cache
// holds the form a slot load copies (and counts its bytes). The executor
// must outlive every call (hold what owns it in `load`).
AdapterLoader staging_loader(AdapterLoader load, const Executor& executor);

class AdapterCache {
 public:
  struct Stats {
    uint64_t hits = 0, misses = 0, evictions = 0, load_failures = 0, uncached = 0;
  };

  explicit AdapterCache(size_t budget_bytes) : budget_(budget_bytes) {}

  // Registers an adapter without loading it. kInvalidArgument if already registered.
  Status add(const AdapterId& key, AdapterLoader loader);
  // Forgets an adapter and drops its host copy. kNotFound if unknown.
  Status remove(const AdapterId& key);

  // The adapter's weights: from the cache, else loaded (and cached if it fits).
  Result<std::shared_ptr<const LoraWeights>> get(const AdapterId& key);

  // Loads if needed and keeps it cached until unpin(). kNotFound if unknown.
  Status pin(const AdapterId& key);
  void unpin(const AdapterId& key);
  // Drops the host copy now (the registration stays). kInvalidArgument if pinned.
  Status unload(const AdapterId& key);

  bool registered(const AdapterId& key) const;
  bool cached(const AdapterId& key) const;
  std::vector<AdapterId> cached_ids() const;  // in host memory now, in no particular order
  size_t num_registered() const;
  size_t num_cached() const;
  size_t bytes_used() const;
  size_t budget_bytes() const { return budget_; }
  Stats stats() const;

 private:
  struct Entry {
    AdapterLoader loader;
    std::shared_ptr<const LoraWeights> weights;  // null unless cached
    size_t bytes = 0;
    bool pinned = false;
    bool loading = false;
    uint64_t last_use = 0;
  };
  // Evicts least recently used unpinned entries until `need` more bytes fit.
  // Returns whether they fit. Caller holds mu_.
  bool make_room(size_t need);

  const size_t budget_;
  mutable std::mutex mu_;
  std::condition_variable loaded_;
  std::unordered_map<AdapterId, Entry, AdapterIdHash> entries_;
  size_t used_ = 0;
  uint64_t clock_ = 0;
  Stats stats_;
};

}  // namespace myriad
