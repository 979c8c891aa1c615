// Completions reported to an engine from other threads: an adapter fetch
// finished (AdapterSource), an adapter load into a slot finished (Executor).
// Producers post() from any thread; the engine thread drains them at the
// start of plan_step (and after submit), so the scheduler only ever sees
// them on its own thread, in the order they were posted. An optional wakeup
// is called after each post (a worker actor uses it to stop waiting).
// Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "runtime/adapter_id.h"
#include "runtime/lora_weights.h"
#include "runtime/result.h"

namespace myriad {

struct Completion {
  enum class Kind : uint8_t { kFetched, kLoaded };
  Kind kind = Kind::kFetched;
  AdapterId adapter;                           // kFetched
  std::shared_ptr<const LoraWeights> weights;  // kFetched, on success
  int32_t slot = -1;                           // kLoaded
  Status status;                               // the outcome
};

class EngineInbox {
 public:
  void post(Completion c) {
    std::function<void()> wake;
    {
      std::lock_guard lock(mu_);
      items_.push_back(std::move(c));
      wake = wakeup_;
    }
    if (wake) wake();
  }
  // Called after every post, on the posting thread; must be cheap and must
  // not call into the engine.
  void set_wakeup(std::function<void()> wakeup) {
    std::lock_guard lock(mu_);
    wakeup_ = std::move(wakeup);
  }
  // Moves every posted completion into `out` (cleared first), oldest first.
  void drain(std::vector<Completion>& out) {
    out.clear();
    std::lock_guard lock(mu_);
    out.swap(items_);
  }
  bool empty() const {
    std::lock_guard lock(mu_);
    return items_.empty();
  }

 private:
  mutable std::mutex mu_;
  std::vector<Completion> items_;
  std::function<void()> wakeup_;
};

}  // namespace myriad
