// Training as an EngineWorker's background work: the worker's thread runs
// a few milliseconds of a JobTrainer round's units at a time (a linear over
// a chunk of tokens, attention, a piece of the head or of an optimizer step)
// between inference steps, so jobs train on
// the device that serves, and every `publish_every` steps (and when a job
// ends) each job's adapter is handed to `publish` as a new version, from
// memory: a caller puts it where the worker's adapter source finds it, so
// the next request for that version is served from a slot copy, with no
// file read. Requests already running keep the version they pinned.
//
// A job with eval examples is evaluated under each version before it is
// handed out, in units too (forward only), and sits out the rounds
// meanwhile, so the version, its step and its loss all belong together.
//
// Jobs are added, paused and cancelled from any thread; those commands take
// effect between rounds, so the others never notice.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/background_work.h"
#include "runtime/lora_weights.h"
#include "runtime/training/training_job.h"

namespace myriad {

class TrainingWork final : public BackgroundWork {
 public:
  // (job name, version starting at 1, the adapter, the mean loss of the
  // job's eval examples under it: NaN without any, or when the pass failed),
  // on the worker's thread; must be quick.
  using Publish = std::function<void(const std::string& job, uint64_t version, std::shared_ptr<const LoraWeights>,
                                     double eval_loss)>;
  // (job, its step record) after each optimizer step, on the worker's thread.
  using Progress = std::function<void(const TrainingJob& job, const TrainingStepRecord& rec)>;

  TrainingWork(LoraTrainingBackend& backend, int64_t publish_every, Publish publish, Progress progress = nullptr);

  // Thread-safe. Names must be unique among the jobs held. publish_every > 0
  // overrides the work's for this job (a cluster's gateway decides it).
  void add(std::shared_ptr<TrainingJob> job, int64_t publish_every = 0);
  void pause(const std::string& name, bool paused);
  void cancel(const std::string& name);
  // Jobs neither finished nor cancelled.
  size_t active() const;
  // Runs `task` on the worker's thread between rounds, in the order posted
  // (a client-driven training run's optimizer step: the backend is free
  // then). Thread-safe.
  void post(std::function<void()> task);
  // The same for work in units (a client-driven forward/backward): `unit`
  // is called once per turn, like a round's units, until it returns true;
  // nothing else uses the backend from its first call to its last.
  void post_units(std::function<bool()> unit);

  // What one run_once() takes at least while a round is in flight (units
  // back to back): the unit a waiting inference step waits for is this
  // plus at most one unit (a linear over a chunk of tokens). Worker thread
  // only, or before the worker starts.
  void set_unit_budget_ms(double ms) { unit_budget_ms_ = ms; }

  bool has_work() override;
  void run_once() override;

 private:
  struct Held {
    std::shared_ptr<TrainingJob> job;
    bool paused = false;
    bool counted = false;     // in active_ (not finished, cancelled or stopped)
    uint64_t published = 0;  // versions handed out
    int64_t publish_every = 1;
  };
  void release(Held& h);  // takes it out of active_, once
  void apply_pending();  // worker thread
  void publish(Held& h);
  void run_unit();
  void run_eval_unit();
  bool take_task();  // the next posted task into task_, if any
  bool evaluating() const { return trainer_.loss_in_flight() || !evals_.empty(); }

  double unit_budget_ms_ = 2.0;

  JobTrainer trainer_;
  int64_t publish_every_;
  Publish publish_;
  Progress progress_;
  std::vector<Held> held_;  // worker thread
  // Versions waiting for (the first: under) their eval pass, oldest first;
  // their jobs are out of the rounds until it ends. Worker thread.
  struct Evaluation {
    std::shared_ptr<TrainingJob> job;
    uint64_t version = 0;
    std::shared_ptr<const LoraWeights> weights;
  };
  std::deque<Evaluation> evals_;

  mutable std::mutex mu_;
  std::vector<std::pair<std::shared_ptr<TrainingJob>, int64_t>> to_add_;  // and its publish_every (0: the work's)
  std::vector<std::pair<std::string, bool>> to_pause_;
  std::vector<std::string> to_cancel_;
  std::deque<std::function<bool()>> tasks_;
  std::function<bool()> task_;  // the task in flight (worker thread)
  std::atomic<size_t> queued_tasks_{0};  // tasks_.size(), read by has_work() without the lock
  size_t active_ = 0;  // guarded by mu_
};

}  // namespace myriad
