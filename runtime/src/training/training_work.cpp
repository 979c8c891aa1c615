#include "runtime/training/training_work.h"

#include <algorithm>
#include <chrono>
#include <limits>

#include "runtime/log.h"

namespace myriad {

TrainingWork::TrainingWork(LoraTrainingBackend& backend, int64_t publish_every, Publish publish, Progress progress)
    : trainer_(backend), publish_every_(std::max<int64_t>(1, publish_every)), publish_(std::move(publish)),
      progress_(std::move(progress)) {}

void TrainingWork::add(std::shared_ptr<TrainingJob> job, int64_t publish_every) {
  {
  std::lock_guard lock(mu_);
  if (!job->done()) ++active_;  // a job resumed at its end has nothing left to run
  to_add_.emplace_back(std::move(job), publish_every);
  }
  wake_worker();
}

void TrainingWork::release(Held& h) {
  if (!h.counted) return;
  h.counted = false;
  std::lock_guard lock(mu_);
  --active_;
}

void TrainingWork::pause(const std::string& name, bool paused) {
  {
    std::lock_guard lock(mu_);
    to_pause_.emplace_back(name, paused);
  }
  wake_worker();
}

void TrainingWork::cancel(const std::string& name) {
  std::lock_guard lock(mu_);
  to_cancel_.push_back(name);
}

void TrainingWork::post(std::function<void()> task) {
  post_units([task = std::move(task)] {
    task();
    return true;
  });
}

void TrainingWork::post_units(std::function<bool()> unit) {
  {
    std::lock_guard lock(mu_);
    tasks_.push_back(std::move(unit));
    queued_tasks_.store(tasks_.size(), std::memory_order_release);
  }
  wake_worker();
}

size_t TrainingWork::active() const {
  std::lock_guard lock(mu_);
  return active_;
}

void TrainingWork::apply_pending() {
  std::vector<std::pair<std::shared_ptr<TrainingJob>, int64_t>> add;
  std::vector<std::pair<std::string, bool>> pause;
  std::vector<std::string> cancel;
  {
    std::lock_guard lock(mu_);
    add.swap(to_add_);
    pause.swap(to_pause_);
    cancel.swap(to_cancel_);
  }
  for (auto& [j, every] : add) {
    trainer_.add(j.get());
    const bool counted = !j->done();
    held_.push_back({std::move(j), false, counted, 0, every > 0 ? every : publish_every_});
  }
  for (const auto& [name, paused] : pause)
    for (auto& h : held_)
      if (h.job->name() == name && h.paused != paused) {
        h.paused = paused;
        if (paused) {
          trainer_.remove(h.job.get());
        } else {
          trainer_.add(h.job.get());
        }
      }
  for (const auto& name : cancel) {
    auto it = std::find_if(held_.begin(), held_.end(), [&](const Held& h) { return h.job->name() == name; });
    if (it == held_.end()) continue;
    trainer_.remove(it->job.get());
    release(*it);
    held_.erase(it);
  }
}

bool TrainingWork::has_work() {
  if (trainer_.round_in_flight() || evaluating() || task_) return true;  // jobs change after all three
  if (queued_tasks_.load(std::memory_order_acquire) > 0) return true;  // no lock on the worker's every pass
  apply_pending();  // jobs change between rounds only
  return !trainer_.idle();
}

void TrainingWork::publish(Held& h) {
  ++h.published;
  auto weights = std::make_shared<const LoraWeights>(to_lora_weights(h.job->params(), h.job->name()));
  if (!h.job->eval_examples().empty()) {
    trainer_.remove(h.job.get());  // back when its eval pass has ended (run_eval_unit)
    evals_.push_back({h.job, h.published, std::move(weights)});
    return;
  }
  if (publish_) publish_(h.job->name(), h.published, std::move(weights), std::numeric_limits<double>::quiet_NaN());
}

void TrainingWork::run_eval_unit() {
  Evaluation& e = evals_.front();
  if (!trainer_.loss_in_flight())
    trainer_.begin_loss(e.job->params(), e.job->eval_examples(), e.job->config().batch_tokens);
  const auto loss = trainer_.advance_loss();
  if (!loss) return;
  double eval_loss = std::numeric_limits<double>::quiet_NaN();
  if (loss->ok()) {
    eval_loss = loss->value();
  } else {
    log_error("training {}: the eval loss of version {} failed: {}", e.job->name(), e.version,
              loss->error().to_string());
  }
  if (publish_) publish_(e.job->name(), e.version, e.weights, eval_loss);
  // Back into the rounds unless it has ended; pauses and cancels wait for
  // the passes (apply_pending runs only when none is left).
  auto it = std::find_if(held_.begin(), held_.end(), [&](const Held& h) { return h.job == e.job; });
  if (it != held_.end() && !it->paused && !e.job->done()) trainer_.add(e.job.get());
  evals_.pop_front();
  // A finished job stays active until its last version is out.
  if (it != held_.end() && e.job->done() &&
      std::none_of(evals_.begin(), evals_.end(), [&](const Evaluation& o) { return o.job == e.job; }))
    release(*it);
}

void TrainingWork::run_once() {
  // Units of a round back to back up to the budget: small ones (a norm, a
  // chunk of a small linear) are not worth an inference step each, and the
  // worker's share is of the time this call takes.
  const auto t0 = std::chrono::steady_clock::now();
  do {
    run_unit();
  } while ((trainer_.round_in_flight() || evaluating() || task_) &&
           std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() < unit_budget_ms_);
}

bool TrainingWork::take_task() {
  std::lock_guard lock(mu_);
  if (tasks_.empty()) return false;
  task_ = std::move(tasks_.front());
  tasks_.pop_front();
  queued_tasks_.store(tasks_.size(), std::memory_order_release);
  return true;
}

void TrainingWork::run_unit() {
  // What is in flight goes on first (each owns the backend until it ends):
  // a round, a posted task, an eval pass; else a new one: a posted task
  // first (a client waits for it), then a version's eval, then a round.
  if (!trainer_.round_in_flight()) {
    if (task_ || (!trainer_.loss_in_flight() && take_task())) {
      if (task_()) task_ = nullptr;
      return;
    }
    if (evaluating()) {
      run_eval_unit();
      return;
    }
    auto begun = trainer_.begin_round();
    if (!begun.ok()) {
      // Jobs are validated against the base when created, so this is a bug
      // or a device fault (a CUDA trainer that failed once refuses every pass):
      // stop them all loudly rather than fail the same round forever.
      log_error("training: a round failed: {}", begun.error().to_string());
      for (auto& h : held_) {
        trainer_.remove(h.job.get());
        release(h);
      }
      return;
    }
    if (!begun.value()) return;
  }
  const auto recs = trainer_.advance_round();  // one unit: a layer's forward or backward, or the head
  if (!recs) return;
  for (const auto& [job, rec] : *recs) {
    if (progress_) progress_(*job, rec);
    auto it = std::find_if(held_.begin(), held_.end(), [&](const Held& h) { return h.job.get() == job; });
    if (it == held_.end()) continue;
    if (rec.step % it->publish_every == 0 || job->done()) publish(*it);
    const bool evaluating_it =
        std::any_of(evals_.begin(), evals_.end(), [&](const Evaluation& e) { return e.job.get() == job; });
    if (job->done() && !evaluating_it) release(*it);  // else once its last eval pass has published
  }
}

}  // namespace myriad
