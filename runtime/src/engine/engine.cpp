#include "runtime/engine.h"

#include <algorithm>
#include <chrono>
#include <string>

#include "runtime/log.h"
#include "runtime/request_validation.h"
#include "runtime/scheduler_config.h"

namespace myriad {

Result<std::unique_ptr<Engine>> Engine::create(const SchedulerConfig& config, Executor& executor,
                                               AdapterSource& adapters, const Clock& clock, EventSink& sink,
                                               std::shared_ptr<const Tokenizer> tokenizer) {
  const ExecutorInfo& info = executor.info();
  SchedulerConfig c = config;
  auto bad = [&](const std::string& what) {
    return make_error(ErrorCode::kInvalidArgument, "engine config does not fit executor '" + info.device + "': " + what);
  };
  if (c.num_slots > info.num_adapter_slots)
    return bad("num_slots = " + std::to_string(c.num_slots) + " but the executor has " +
               std::to_string(info.num_adapter_slots) + " adapter slots");
  if (c.kv_block_size != info.kv_block_size)
    return bad("kv_block_size = " + std::to_string(c.kv_block_size) + " but the executor's is " +
               std::to_string(info.kv_block_size));
  if (c.num_kv_blocks > info.kv_num_blocks)
    return bad("num_kv_blocks = " + std::to_string(c.num_kv_blocks) + " but the executor's pool has " +
               std::to_string(info.kv_num_blocks));
  // The scheduler plans up to max_tokens_per_step tokens over up to
  // max_running_seqs rows (it asks for no logits); the device must take that.
  if (info.max_tokens_per_step > 0 && c.max_tokens_per_step > info.max_tokens_per_step)
    return bad("max_tokens_per_step = " + std::to_string(c.max_tokens_per_step) + " but the executor takes at most " +
               std::to_string(info.max_tokens_per_step) + " tokens a step");
  if (info.max_rows > 0 && c.max_running_seqs > info.max_rows)
    return bad("max_running_seqs = " + std::to_string(c.max_running_seqs) + " but the executor takes at most " +
               std::to_string(info.max_rows) + " rows a step");
  if (c.vocab_size == 0) c.vocab_size = info.vocab_size;
  auto s = Scheduler::create(c);
  if (!s.ok()) return s.error();
  log_info("engine: policy {}, {} adapter slots, quantum {} ms, up to {} running sequences, {} tokens a step, "
           "{} KV blocks of {} tokens, over '{}'",
           scheduler_policy_name(c.policy), c.num_slots, c.quantum_ms, c.max_running_seqs, c.max_tokens_per_step,
           c.num_kv_blocks, c.kv_block_size, info.device);
  return std::unique_ptr<Engine>(
      new Engine(std::move(s.value()), executor, adapters, clock, sink, std::move(tokenizer)));
}

Engine::Engine(std::unique_ptr<Scheduler> scheduler, Executor& executor, AdapterSource& adapters, const Clock& clock,
               EventSink& sink, std::shared_ptr<const Tokenizer> tokenizer)
    : scheduler_(std::move(scheduler)),
      executor_(executor),
      adapters_(adapters),
      clock_(clock),
      sink_(sink),
      tokenizer_(std::move(tokenizer)) {
  last_ = &empty_;
  const SchedulerConfig& c = scheduler_->config();
  load_start_ms_.assign(size_t(c.num_slots), 0.0);
  metrics_.max_running_seqs = c.max_running_seqs;
  metrics_.max_tokens_per_step = c.max_tokens_per_step;
  result_.sampled.reserve(size_t(c.max_running_seqs));
  tracks_.reserve(size_t(c.max_running_seqs) * 4);
}

Result<RequestId> Engine::submit(Request request) {
  const double now = clock_.now_ms();
  std::string name = adapter_metrics_name(request.adapters);
  if (!request.stop.empty() && !tokenizer_) {
    ++metrics_.overall.rejected;
    return make_error(ErrorCode::kInvalidArgument, "stop strings need a tokenizer, and this engine has none");
  }
  if (Status st = check_fits_executor(request, executor_.info()); !st.ok()) {
    ++metrics_.overall.rejected;
    return st.error();
  }
  Track track{now, now, nullptr, nullptr, {}, request.stop_token_ids, false};
  if (tokenizer_) {
    track.output =
        std::make_unique<OutputProcessor>(tokenizer_, OutputOptions{request.stop, true, request.min_tokens});
    if (!request.resume_output.empty()) prime_output(request, track);
  }
  auto id = scheduler_->submit(std::move(request), now);
  if (!id.ok()) {
    // Per-adapter entries only for adapters that exist: junk names must not grow the map.
    if (auto it = metrics_.per_adapter.find(name); it != metrics_.per_adapter.end()) ++it->second.rejected;
    ++metrics_.overall.rejected;
    return id;
  }
  RequestMetrics& am = metrics_.per_adapter[std::move(name)];
  ++am.submitted;
  ++metrics_.overall.submitted;
  track.adapter = &am;
  tracks_[id.value()] = std::move(track);
  start_fetches();
  // A source answering at once (weights already in memory) makes the
  // adapter wait for a slot from now, as if it had never been away.
  apply_completions(now);
  return id;
}

// A resumed request's output processor takes the tokens the client already
// has, so the text it holds back for a stop string and its UTF-8 state are
// what they were on the first attempt. Where one of those tokens completed a
// stop string, the request resumes before it (that token is computed again
// and ends the request).
void Engine::prime_output(Request& request, Track& track) {
  size_t n = resumable_prefix(request.resume_output, request.max_tokens, request.stop_token_ids);
  for (size_t i = 0; i < n; ++i) {
    track.output->push(request.resume_output[i]);
    if (track.output->stopped()) {
      n = i;
      track.output =
        std::make_unique<OutputProcessor>(tokenizer_, OutputOptions{request.stop, true, request.min_tokens});
      for (size_t j = 0; j < n; ++j) track.output->push(request.resume_output[j]);
      break;
    }
  }
  request.resume_output.resize(n);
}

void Engine::start_fetches() {
  for (const AdapterId& id : scheduler_->fetches()) {
    log_debug("engine: fetching adapter {}", id.to_string());
    std::shared_ptr<EngineInbox> inbox = inbox_;
    adapters_.fetch(id, [inbox, id](Result<std::shared_ptr<const LoraWeights>> r) {
      Completion c;
      c.kind = Completion::Kind::kFetched;
      c.adapter = id;
      if (r.ok()) {
        c.weights = std::move(r.value());
      } else {
        c.status = r.error();
      }
      inbox->post(std::move(c));
    });
  }
  scheduler_->fetches().clear();
}

void Engine::apply_completions(double now_ms) {
  inbox_->drain(completions_);
  if (completions_.empty()) return;
  for (Completion& c : completions_) {
    if (c.kind == Completion::Kind::kFetched) {
      if (c.status.ok()) {
        scheduler_->on_adapter_fetched(c.adapter, std::move(c.weights), now_ms);
      } else {
        log_warn("engine: fetching adapter {} failed: {}", c.adapter.to_string(), c.status.error().to_string());
        scheduler_->on_fetch_failed(c.adapter, c.status.error(), now_ms);
      }
    } else if (c.status.ok()) {
      metrics_.slot_load_ms.record(now_ms - load_start_ms_[size_t(c.slot)]);
      log_debug("engine: slot {} ready after {:.1f} ms", c.slot, now_ms - load_start_ms_[size_t(c.slot)]);
      scheduler_->on_adapter_ready(c.slot, now_ms);
    } else {
      log_warn("engine: slot {}: load failed: {}", c.slot, c.status.error().to_string());
      scheduler_->on_load_failed(c.slot, c.status.error(), now_ms);
    }
  }
  completions_.clear();
  dispatch_events();  // requests failed by a fetch or a load
}

bool Engine::cancel(RequestId id) {
  const bool found = scheduler_->cancel(id, clock_.now_ms());
  dispatch_events();
  return found;
}

// Text for the event from the request's output processor. A token whose text
// completes a stop string ends the request: its Finished event (if the
// scheduler has not already queued one this step) comes with reason kStop.
void Engine::add_text(RequestEvent& e, Track& t) {
  if (!t.output) return;
  if (e.kind == EventKind::kToken) {
    const bool stop_token = std::find(t.stop_token_ids.begin(), t.stop_token_ids.end(), e.token) != t.stop_token_ids.end();
    if (!stop_token && !t.output->stopped()) {
      t.text = t.output->push(e.token);
      e.text = t.text;
      if (t.output->stopped()) stopped_.push_back(e.id);
    }
  } else if (e.kind == EventKind::kFinished) {
    if (t.output->stopped()) e.reason = FinishReason::kStop;  // a stop string beats length
    t.text = t.output->finish();
    e.text = t.text;
  }
}

void Engine::record(const RequestEvent& e, Track& t) {
  if (e.kind == EventKind::kLogits) return;
  RequestMetrics& a = *t.adapter;
  RequestMetrics& o = metrics_.overall;
  if (e.kind == EventKind::kToken) {
    if (!t.got_token) {  // the first token this engine made (a resumed request's index is > 0)
      t.got_token = true;
      a.ttft_ms.record(e.time_ms - t.submit_ms);
      o.ttft_ms.record(e.time_ms - t.submit_ms);
    } else {
      a.itl_ms.record(e.time_ms - t.last_token_ms);
      o.itl_ms.record(e.time_ms - t.last_token_ms);
    }
    t.last_token_ms = e.time_ms;
    ++a.output_tokens;
    ++o.output_tokens;
    return;
  }
  if (e.queue_ms >= 0) {
    a.queue_ms.record(e.queue_ms);
    o.queue_ms.record(e.queue_ms);
  }
  a.e2e_ms.record(e.time_ms - t.submit_ms);
  o.e2e_ms.record(e.time_ms - t.submit_ms);
  uint64_t RequestMetrics::*counter = &RequestMetrics::failed;
  if (e.kind == EventKind::kFinished) {
    switch (e.reason) {
      case FinishReason::kStop:
      case FinishReason::kLength: counter = &RequestMetrics::finished; break;
      case FinishReason::kCancelled: counter = &RequestMetrics::cancelled; break;
      case FinishReason::kDeadline: counter = &RequestMetrics::deadline; break;
    }
  }
  ++(a.*counter);
  ++(o.*counter);
}

void Engine::dispatch_events() {
  auto& events = scheduler_->events();
  while (!events.empty()) {
    for (RequestEvent& e : events) {
      auto it = tracks_.find(e.id);
      MYRIAD_CHECK(it != tracks_.end(), "event for request " + std::to_string(e.id) + " that is not in flight");
      add_text(e, it->second);
      record(e, it->second);
      sink_.on_event(e);
      if (e.is_final()) tracks_.erase(it);
    }
    events.clear();
    // Requests that matched a stop string and are still in flight end now;
    // their Finished events go round once more.
    const double now = clock_.now_ms();
    for (RequestId id : stopped_)
      if (tracks_.count(id)) scheduler_->end(id, FinishReason::kStop, now);
    stopped_.clear();
  }
}

const StepPlan& Engine::plan_step(double now_ms) {
  MYRIAD_CHECK(!step_in_flight_, "plan_step() called again before complete_step()");
  apply_completions(now_ms);

  stats_before_ = scheduler_->stats();
  const ScheduleOutput& out = scheduler_->schedule(now_ms);
  last_ = &out;
  for (const AdapterEviction& ev : out.evictions) {
    log_debug("engine: slot {}: evicting adapter {}", ev.slot, ev.adapter.to_string());
    executor_.unload_adapter(ev.slot);
  }
  for (const AdapterLoad& ld : out.loads) {
    log_debug("engine: slot {}: loading adapter {}", ld.slot, ld.adapter.to_string());
    load_start_ms_[size_t(ld.slot)] = now_ms;
    std::shared_ptr<EngineInbox> inbox = inbox_;
    const int32_t slot = ld.slot;
    Status st = executor_.begin_load_adapter(ld.slot, ld.weights, [inbox, slot](Status done) {
      Completion c;
      c.kind = Completion::Kind::kLoaded;
      c.slot = slot;
      c.status = std::move(done);
      inbox->post(std::move(c));
    });
    if (!st.ok()) {
      log_warn("engine: slot {}: loading adapter {} failed: {}", ld.slot, ld.adapter.to_string(), st.error().to_string());
      scheduler_->on_load_failed(ld.slot, st.error(), now_ms);
    }
  }
  dispatch_events();  // deadlines and failed loads found while planning
  step_in_flight_ = true;
  return out.plan;
}

Status Engine::complete_step(const Status& status, const StepResult& result, double now_ms) {
  MYRIAD_CHECK(step_in_flight_, "complete_step() without plan_step()");
  step_in_flight_ = false;
  const StepPlan& plan = last_->plan;
  if (!plan.rows.empty()) {
    ++metrics_.steps;
    metrics_.rows_sum += plan.rows.size();
    metrics_.tokens_sum += plan.num_tokens();
    if (result.device_ms >= 0) metrics_.step_device_ms.record(result.device_ms);
    if (status.ok()) {
      scheduler_->update(result, now_ms);
    } else {
      ++metrics_.step_failures;
      scheduler_->fail_step(status.error(), now_ms);
    }
  }
  const SchedulerStats& after = scheduler_->stats();
  metrics_.swaps += after.swaps - stats_before_.swaps;
  metrics_.slot_loads += after.loads - stats_before_.loads;
  metrics_.load_failures += after.load_failures - stats_before_.load_failures;
  metrics_.evictions += after.evictions - stats_before_.evictions;
  metrics_.preemptions += after.preemptions - stats_before_.preemptions;
  dispatch_events();
  return status;
}

Status Engine::step() {
  using Host = std::chrono::steady_clock;  // host cost, whatever clock_ is (a simulator's is virtual)
  auto ms_since = [](Host::time_point t) { return std::chrono::duration<double, std::milli>(Host::now() - t).count(); };
  const auto started = Host::now();
  const StepPlan& plan = plan_step(clock_.now_ms());
  if (plan.rows.empty()) {
    result_.clear();
    // Nothing runs while loads are in flight: an empty step lets an
    // executor that reports from its step (the fake, a simulator) progress.
    const Status st = scheduler_->loading_slots().empty() ? ok_status() : executor_.step(plan, result_);
    return complete_step(st, result_, clock_.now_ms());
  }
  metrics_.step_plan_ms.record(ms_since(started));
  const Status st = executor_.step(plan, result_);
  const auto stepped = Host::now();
  const Status done = complete_step(st, result_, clock_.now_ms());
  metrics_.step_complete_ms.record(ms_since(stepped));
  return done;
}

Status Engine::run_until_idle(uint64_t max_steps) {
  for (uint64_t i = 0; i < max_steps && has_work(); ++i) (void)step();
  if (has_work())
    return make_error(ErrorCode::kDeadlineExceeded, "engine still has work after " + std::to_string(max_steps) +
                                                        " steps (" + std::to_string(scheduler_->num_queued()) +
                                                        " queued, " + std::to_string(scheduler_->num_running()) +
                                                        " running)");
  return ok_status();
}

}  // namespace myriad
