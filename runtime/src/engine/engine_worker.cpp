#include "runtime/engine_worker.h"

#include <algorithm>
#include <chrono>
#include <future>
#include <utility>
#include <vector>

#include "runtime/log.h"

namespace myriad {

Result<std::unique_ptr<EngineWorker>> EngineWorker::start(const SchedulerConfig& config, Executor& executor,
                                                          AdapterSource& adapters, EventSink& sink,
                                                          std::shared_ptr<const Tokenizer> tokenizer) {
  std::unique_ptr<EngineWorker> w(new EngineWorker(config, sink));
  auto engine = Engine::create(config, executor, adapters, w->clock_, w->tracking_, std::move(tokenizer));
  if (!engine.ok()) return engine.error();
  w->engine_ = std::move(engine.value());
  // The scheduler's view (vocab size taken from the executor when unset).
  w->limits_ = request_limits(w->engine_->scheduler().config());
  EngineWorker* self = w.get();
  w->engine_->set_wakeup([self] { self->wake(); });
  w->thread_ = std::thread([self] { self->run(); });
  return w;
}

EngineWorker::EngineWorker(const SchedulerConfig& config, EventSink& sink)
    : config_(config), limits_(request_limits(config)), sink_(sink), tracking_(sink, *this) {}

EngineWorker::~EngineWorker() { stop(StopMode::kCancel); }

void EngineWorker::TrackingSink::on_event(const RequestEvent& e) {
  if (e.is_final()) {
    std::lock_guard lock(owner_.mu_);
    owner_.in_flight_.erase(e.id);
  }
  inner_.on_event(e);
}

void EngineWorker::wake() {
  {
    std::lock_guard lock(mu_);
    woken_ = true;
  }
  cv_.notify_one();
}

Status EngineWorker::submit(Request request) {
  MYRIAD_TRY(validate_request(request, limits_));
  {
    std::lock_guard lock(mu_);
    if (stopping_) return make_error(ErrorCode::kCancelled, "the worker is stopping; request not accepted");
    if (!in_flight_.insert(request.id).second)
      return make_error(ErrorCode::kInvalidArgument,
                        "request id " + std::to_string(request.id) + " is already in flight");
    Command c;
    c.kind = Command::Kind::kSubmit;
    c.request = std::move(request);
    commands_.push_back(std::move(c));
    woken_ = true;
  }
  cv_.notify_one();
  return ok_status();
}

void EngineWorker::cancel(RequestId id) {
  {
    std::lock_guard lock(mu_);
    Command c;
    c.kind = Command::Kind::kCancel;
    c.id = id;
    commands_.push_back(std::move(c));
    woken_ = true;
  }
  cv_.notify_one();
}

std::string EngineWorker::metrics_json() {
  auto promise = std::make_shared<std::promise<std::string>>();
  std::future<std::string> answer = promise->get_future();
  inspect([promise](const Engine& engine) { promise->set_value(engine.metrics().to_json()); });
  return answer.get();
}

void EngineWorker::set_background(BackgroundWork* work, double share) {
  MYRIAD_CHECK(share > 0 && share < 1, "background share must be in (0, 1)");
  BackgroundWork* previous = nullptr;
  {
    std::lock_guard lock(mu_);
    Command c;
    c.kind = Command::Kind::kBackground;
    c.background = work;
    c.share = share;
    commands_.push_back(std::move(c));
    woken_ = true;
    previous = std::exchange(wakes_, work);
  }
  // Outside mu_: a wakeup holds the work's lock, then takes mu_.
  if (previous && previous != work) previous->set_wakeup(nullptr);
  if (work) work->set_wakeup([this] { wake(); });
  cv_.notify_one();
}

void EngineWorker::inspect(std::function<void(const Engine&)> fn) {
  {
    std::unique_lock lock(mu_);
    if (running_) {
      Command c;
      c.kind = Command::Kind::kInspect;
      c.inspect = std::move(fn);
      commands_.push_back(std::move(c));
      woken_ = true;
      lock.unlock();
      cv_.notify_one();
      return;
    }
  }
  fn(*engine_);  // the loop has ended: nothing else touches the engine
}

EngineWorkerStats EngineWorker::stats() const {
  std::lock_guard lock(mu_);
  EngineWorkerStats s = stats_;
  s.in_flight = in_flight_.size();
  s.stopping = stopping_;
  return s;
}

void EngineWorker::stop(StopMode mode) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_ || mode == StopMode::kCancel) stop_mode_ = mode;  // a cancel may hurry a drain
    stopping_ = true;
    woken_ = true;
  }
  cv_.notify_one();
  std::lock_guard join(join_mu_);
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
  // The loop has ended: nothing is left to wake, and the work may outlive
  // this worker (or, once stopped, be destroyed before it).
  BackgroundWork* work = nullptr;
  {
    std::lock_guard lock(mu_);
    if (!running_) work = std::exchange(wakes_, nullptr);
  }
  if (work) work->set_wakeup(nullptr);  // outside mu_: a wakeup holds the work's lock, then takes mu_
}

// Applies queued commands on the worker thread; returns false when the loop
// should end (stopping, and nothing left in flight).
bool EngineWorker::apply_commands() {
  std::deque<Command> todo;
  bool stopping = false;
  StopMode mode = StopMode::kDrain;
  {
    std::lock_guard lock(mu_);
    todo.swap(commands_);
    stopping = stopping_;
    mode = stop_mode_;
  }
  for (Command& c : todo) {
    switch (c.kind) {
      case Command::Kind::kSubmit: {
        const RequestId id = c.request.id;
        auto r = engine_->submit(std::move(c.request));
        if (!r.ok()) {
          // Accepted by submit() but refused by the engine: answered as a failure, once.
          RequestEvent e;
          e.id = id;
          e.kind = EventKind::kFailed;
          e.time_ms = clock_.now_ms();
          e.error = r.error();
          tracking_.on_event(e);
        }
        break;
      }
      case Command::Kind::kCancel: (void)engine_->cancel(c.id); break;
      case Command::Kind::kInspect: c.inspect(*engine_); break;
      case Command::Kind::kBackground:
        background_ = c.background;
        background_share_ = c.share;
        break;
    }
  }
  if (stopping && mode == StopMode::kCancel) {
    std::vector<RequestId> ids;
    {
      std::lock_guard lock(mu_);
      ids.assign(in_flight_.begin(), in_flight_.end());
    }
    for (RequestId id : ids) (void)engine_->cancel(id);
  }
  return !(stopping && !engine_->has_work());
}

void EngineWorker::run() {
  using Clock = std::chrono::steady_clock;
  for (;;) {
    if (!apply_commands()) break;
    const bool background = background_ && background_->has_work();
    const bool background_due = background && inference_owed_s_ <= 0;
    if (engine_->has_work() && !background_due) {
      const auto t0 = Clock::now();
      const Status st = engine_->step();
      if (!st.ok()) log_warn("worker: step failed: {}", st.error().to_string());
      const bool ran = !engine_->last_schedule().plan.rows.empty();
      if (ran) {
        const double d = std::chrono::duration<double>(Clock::now() - t0).count();
        // A step longer than the units owed earns the work the difference,
        // up to about one decode step: a long step (a prefill) does not buy
        // a long run of units that would hold back the next decode step.
        // Only decode steps set that bound (the first step of a node is a
        // prefill: 60 units once ran between a stream's first two tokens).
        inference_owed_s_ = std::max(inference_owed_s_ - d, -decode_ewma_s_);
        const auto& rows = engine_->last_schedule().plan.rows;
        if (std::all_of(rows.begin(), rows.end(), [](const SeqRow& r) { return r.num_tokens == 1; }))
          decode_ewma_s_ = decode_ewma_s_ > 0 ? 0.9 * decode_ewma_s_ + 0.1 * d : d;
      }
      {
        std::lock_guard lock(mu_);
        stats_.steps += ran;
        stats_.queued = engine_->scheduler().num_queued();
        stats_.running = engine_->scheduler().num_running();
      }
      if (ran) continue;
      if (background) {
        // Nothing could run (adapters loading): the idle time is training's.
        inference_owed_s_ = 0;
        continue;
      }
      // Nothing could run (adapters fetching or loading): wait for their
      // report or a command, with a short bound in case an executor reports
      // from its step only.
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(1), [&] { return woken_; });
      woken_ = false;
      continue;
    }
    if (background) {
      const auto t0 = Clock::now();
      background_->run_once();
      const double d = std::chrono::duration<double>(Clock::now() - t0).count();
      // What a long step earned is spent first; at most this unit is owed
      // (running with no request waiting owes nothing more).
      const double owe = d * (1.0 - background_share_) / background_share_;
      inference_owed_s_ = std::min(inference_owed_s_ + owe, owe);
      continue;
    }
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return woken_; });
    woken_ = false;
  }
  // Commands that raced the end are answered: inspections see the final state.
  std::deque<Command> left;
  {
    std::lock_guard lock(mu_);
    running_ = false;
    left.swap(commands_);
  }
  for (Command& c : left)
    if (c.kind == Command::Kind::kInspect) c.inspect(*engine_);
}

}  // namespace myriad
