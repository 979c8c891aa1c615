// The adapter policies: which adapter sets hold slots this step (timeslice
// with its quantum and FIFO wait tickets, fcfs, one-at-a-time), swap-outs and
// pausing.
#include "scheduler_state.h"

namespace myriad {

void Scheduler::swap_out(AdapterState& a, double now_ms, bool pause) {
  a.phase = AdapterPhase::kDraining;
  if (pause && a.pins > 0) {
    // Its running requests stop, keeping their KV, and resume (before its
    // queued ones) when the adapter is active again.
    for (Sequence* s : running_) {
      if (s->state != SeqState::kRunning || s->adapter != &a || s->was_paused) continue;
      s->state = SeqState::kPaused;
      s->was_paused = true;
      --a.pins;
      auto at = std::upper_bound(a.paused.begin(), a.paused.end(), s,
                                 [](const Sequence* x, const Sequence* y) { return x->order < y->order; });
      a.paused.insert(at, s);
      ++num_paused_;
      ++out_.num_paused;
    }
    compact_running();
  }
  mark_waiting(a, now_ms);
}

void Scheduler::release_idle_and_drained() {
  for (AdapterState* a : live_) {
    if (a->pins != 0) continue;
    if ((a->phase == AdapterPhase::kActive && !a->has_pending()) || a->phase == AdapterPhase::kDraining) evict(*a);
  }
}

void Scheduler::collect_waiters(bool by_ticket) {
  waiters_.clear();
  for (AdapterState* a : live_)
    if (a->phase == AdapterPhase::kIdle && a->has_pending() && a->fetched()) waiters_.push_back(a);
  if (by_ticket) {
    std::sort(waiters_.begin(), waiters_.end(),
              [](const AdapterState* x, const AdapterState* y) { return x->ticket < y->ticket; });
  } else {
    std::sort(waiters_.begin(), waiters_.end(), [](const AdapterState* x, const AdapterState* y) {
      return x->oldest_order() < y->oldest_order();
    });
  }
}

void Scheduler::plan_timeslice(double now_ms) {
  release_idle_and_drained();
  collect_waiters(/*by_ticket=*/true);
  size_t w = assign_waiters(0, now_ms);
  if (w == waiters_.size()) return;
  size_t wanted = 0;
  for (size_t i = w; i < waiters_.size(); ++i) wanted += slots_needed(*waiters_[i]);
  size_t coming = num_free_slots();  // slots free now or on their way to the waiters
  for (AdapterState* a : live_)
    if (a->phase == AdapterPhase::kDraining) coming += slots_freed_by(*a);
  if (wanted <= coming) return;
  size_t need = wanted - coming;
  // An active adapter with nothing queued only finishes what runs: let it
  // drain now rather than hold the slot for a quantum.
  for (AdapterState* a : live_) {
    if (need == 0) break;
    const size_t frees = slots_freed_by(*a);
    if (a->phase == AdapterPhase::kActive && !a->has_pending() && frees > 0) {
      swap_out(*a, now_ms, /*pause=*/false);
      need -= std::min(need, frees);
    }
  }
  scratch_.clear();
  for (AdapterState* a : live_)
    if (a->phase == AdapterPhase::kActive && a->active_steps > 0 && now_ms - a->active_since_ms >= config_.quantum_ms &&
        slots_freed_by(*a) > 0)
      scratch_.push_back(a);
  std::sort(scratch_.begin(), scratch_.end(), [](const AdapterState* x, const AdapterState* y) {
    return x->active_since_ms != y->active_since_ms ? x->active_since_ms < y->active_since_ms
                                                    : x->first_slot() < y->first_slot();
  });
  for (AdapterState* a : scratch_) {
    if (need == 0) break;
    const size_t frees = slots_freed_by(*a);
    swap_out(*a, now_ms, config_.pause_on_swap_out);
    ++stats_.swaps;
    ++out_.num_swapped_out;
    need -= std::min(need, frees);
  }
  // Paused (or empty) swapped-out adapters free their slots at once.
  for (AdapterState* a : live_)
    if (a->phase == AdapterPhase::kDraining && a->pins == 0) evict(*a);
  assign_waiters(w, now_ms);
}

void Scheduler::plan_fcfs(double now_ms) {
  release_idle_and_drained();
  collect_waiters(/*by_ticket=*/false);
  assign_waiters(0, now_ms);
}

void Scheduler::plan_one_at_a_time(double now_ms) {
  release_idle_and_drained();
  for (AdapterState* a : live_)
    if (a->phase != AdapterPhase::kIdle) return;  // the current one is still serving (or loading)
  collect_waiters(/*by_ticket=*/false);
  if (!waiters_.empty() && slots_needed(*waiters_.front()) <= num_free_slots()) assign_slots(*waiters_.front(), now_ms);
}

void Scheduler::plan_adapters(double now_ms) {
  switch (config_.policy) {
    case SchedulerPolicy::kTimeslice: plan_timeslice(now_ms); break;
    case SchedulerPolicy::kFcfs: plan_fcfs(now_ms); break;
    case SchedulerPolicy::kOneAtATime: plan_one_at_a_time(now_ms); break;
  }
}

}  // namespace myriad
