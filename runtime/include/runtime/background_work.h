// Work an EngineWorker interleaves with its inference steps on its own thread
// (training rounds: runtime/training/training_work.h). Each run_once() is one
// short unit; the worker gives background work a configured share of its
// busy time while requests run, and all of it when none does.
#pragma once

#include <functional>
#include <mutex>

namespace myriad {

class BackgroundWork {
 public:
  virtual ~BackgroundWork() = default;
  // Both are called on the worker's thread only.
  virtual bool has_work() = 0;
  virtual void run_once() = 0;

  // The worker that runs this work sets how to wake it (null: none), so that
  // work arriving while it sleeps with nothing to do starts at once.
  void set_wakeup(std::function<void()> wake) {
    std::lock_guard lock(wake_mu_);
    wake_ = std::move(wake);
  }

 protected:
  // Any thread: new work is there.
  void wake_worker() {
    std::lock_guard lock(wake_mu_);
    if (wake_) wake_();
  }

 private:
  std::mutex wake_mu_;
  std::function<void()> wake_;
};

}  // namespace myriad
