// The engine's notion of time, injected so tests and the simulator control
// it. Milliseconds as double from an arbitrary epoch; monotonic.
// SteadyClock: wall time. ManualClock: moves only when told (not
// thread-safe; tests and the simulator drive it from one thread).
#pragma once

#include <chrono>

namespace myriad {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual double now_ms() const = 0;
};

class SteadyClock final : public Clock {
 public:
  double now_ms() const override {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }
};

class ManualClock final : public Clock {
 public:
  explicit ManualClock(double start_ms = 0.0) : now_(start_ms) {}
  double now_ms() const override { return now_; }
  void set(double t_ms) { now_ = t_ms; }
  void advance(double dt_ms) { now_ += dt_ms; }

 private:
  double now_;
};

}  // namespace myriad
