// Work an EngineWorker interleaves with its inference steps on its own thread
// (training rounds: runtime/training/training_work.h). Each run_once() is one
// short unit; the worker gives background work a configured share of its
// busy time while requests run, and all of it when none does.
#pragma once

namespace myriad {

class BackgroundWork {
 public:
  virtual ~BackgroundWork() = default;
  // Both are called on the worker's thread only.
  virtual bool has_work() = 0;
  virtual void run_once() = 0;
};

}  // namespace myriad
