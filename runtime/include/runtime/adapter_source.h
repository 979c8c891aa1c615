// Where an engine gets an adapter version's weights before loading them
// into a device slot: the fetch phase of residency,
//
//   requested --fetch()--> fetching --done(weights)--> in host memory --load--> in a slot
//                                   \--done(error)---> the requests that wanted it fail
//
// A fetch may read a disk, a database or the network, so it never runs on
// the engine thread's time: fetch() returns at once and `done` is called
// exactly once, from any thread (or inline, before fetch returns, when the
// weights are already in memory). The engine posts it to its inbox.
//
// StaticAdapterSource: a fixed in-memory table (tests, benches, the CLI's
// folders). CachedAdapterSource: the host cache (AdapterCache) in front of
// a loader (the adapter store), fetching on its own thread.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "runtime/adapter_cache.h"
#include "runtime/adapter_id.h"
#include "runtime/lora_weights.h"
#include "runtime/result.h"

namespace myriad {

using FetchDone = std::function<void(Result<std::shared_ptr<const LoraWeights>>)>;

class AdapterSource {
 public:
  virtual ~AdapterSource() = default;
  virtual void fetch(const AdapterId& id, FetchDone done) = 0;
};

// Thread-safe. Unknown ids answer kNotFound naming the id.
class StaticAdapterSource final : public AdapterSource {
 public:
  void put(const AdapterId& id, std::shared_ptr<const LoraWeights> weights);
  void remove(const AdapterId& id);
  void fetch(const AdapterId& id, FetchDone done) override;

 private:
  std::mutex mu_;
  std::unordered_map<AdapterId, std::shared_ptr<const LoraWeights>, AdapterIdHash> table_;
};

// Fetches through `cache` (which loads what it misses) on a background
// thread, in request order. Thread-safe; the destructor finishes the fetch
// in progress, answers the queued ones kCancelled and joins.
class CachedAdapterSource final : public AdapterSource {
 public:
  explicit CachedAdapterSource(AdapterCache& cache);
  ~CachedAdapterSource() override;
  CachedAdapterSource(const CachedAdapterSource&) = delete;
  CachedAdapterSource& operator=(const CachedAdapterSource&) = delete;

  void fetch(const AdapterId& id, FetchDone done) override;

 private:
  void run();

  AdapterCache& cache_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<AdapterId, FetchDone>> queue_;
  bool stop_ = false;
  std::thread worker_;
};

}  // namespace myriad
