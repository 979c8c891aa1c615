// The batch planner: the step's rows (running rows first with their
// guaranteed share, then admissions), KV blocks, preemption and reclaiming
// paused requests' KV, the waiting report, forgetting idle sets.
#include <limits>

#include "scheduler_state.h"

namespace myriad {

void Scheduler::preempt(Sequence& s) {
  kv_.release(s.blocks);
  s.num_computed = 0;
  s.state = SeqState::kQueued;
  --s.adapter->pins;
  // Back into its adapter's queue at its submission place (usually the front).
  auto& q = s.adapter->queue;
  q.insert(std::upper_bound(q.begin(), q.end(), &s,
                            [](const Sequence* x, const Sequence* y) { return x->order < y->order; }),
           &s);
  count_queued(s);
  ++stats_.preemptions;
  ++out_.num_preempted;
}

bool Scheduler::reclaim_paused(const Sequence* keep) {
  // The youngest paused request loses its KV and queues for a recompute:
  // paused requests must never hold KV that running work needs.
  Sequence* victim = nullptr;
  for (AdapterState* a : live_)
    for (Sequence* p : a->paused)
      if (p != keep && (victim == nullptr || p->order > victim->order)) victim = p;
  if (victim == nullptr) return false;
  AdapterState& a = *victim->adapter;
  a.paused.erase(std::find(a.paused.begin(), a.paused.end(), victim));
  --num_paused_;
  kv_.release(victim->blocks);
  victim->num_computed = 0;
  victim->state = SeqState::kQueued;
  auto& q = a.queue;
  q.insert(std::upper_bound(q.begin(), q.end(), victim,
                            [](const Sequence* x, const Sequence* y) { return x->order < y->order; }),
           victim);
  count_queued(*victim);
  ++stats_.preemptions;
  ++out_.num_preempted;
  return true;
}

// ---------------------------------------------------------------- the batch

void Scheduler::write_row(Sequence& s, uint32_t chunk) {
  StepPlan& plan = out_.plan;
  SeqRow& row = plan.rows.emplace_back();
  row.seq = s.id;
  row.token_offset = uint32_t(plan.tokens.size());
  row.num_tokens = chunk;
  row.start_pos = int32_t(s.num_computed);
  plan.tokens.insert(plan.tokens.end(), s.tokens.begin() + s.num_computed, s.tokens.begin() + s.num_computed + chunk);
  row.block_offset = uint32_t(plan.block_ids.size());
  row.num_blocks = uint32_t(s.blocks.size());
  plan.block_ids.insert(plan.block_ids.end(), s.blocks.begin(), s.blocks.end());
  row.adapters = AdapterMix::none();
  const auto& members = s.adapter->members;
  row.route = -1;
  if (!s.router) {
    for (size_t i = 0; i < members.size(); ++i) row.adapters.refs[i] = {members[i]->slot, s.weights[i]};
    row.adapters.count = uint8_t(members.size());
  } else if (s.routed) {
    for (size_t i = 0; i < members.size(); ++i)
      if (s.weights[i] != 0.0f) row.adapters.refs[row.adapters.count++] = {members[i]->slot, s.weights[i]};
  } else {
    // Routes in this step: the base model until the router's layer.
    MYRIAD_CHECK(s.num_computed == 0, "request " + std::to_string(s.id) + " continues its prefill unrouted");
    RowRoute& route = plan.routes.emplace_back();
    route.router = s.router.get();
    route.first_token = std::min(s.router->skip_tokens, s.route_end - 1);
    route.num_tokens = s.route_end - route.first_token;
    for (size_t e = 0; e < members.size(); ++e)
      route.expert_slots[e] = members[size_t(s.member_of_adapter[e])]->slot;
    row.route = int32_t(plan.routes.size() - 1);
  }
  row.sample = s.num_computed + chunk == s.tokens.size() && s.max_tokens > 0;
  row.logits = LogitsRequest::kNone;
  if (s.prompt_logits != LogitsRequest::kNone && s.num_computed + chunk > s.logits_reported &&
      s.logits_reported < s.prompt_len) {
    // Prompt positions not reported yet: the last one alone when the chunk
    // ends on it (the usual kLast), else every position of the chunk.
    const bool last_only = s.logits_reported + 1 == s.prompt_len && s.num_computed + chunk == s.prompt_len;
    row.logits = last_only ? LogitsRequest::kLast : LogitsRequest::kAll;
  }
  row.sampling = s.sampling;
  row.output_index = s.generated;
  row.history_offset = uint32_t(plan.history.size());
  row.history_len = 0;
  row.prompt_len = 0;  // of the history, which only penalties need
  if (row.sample && s.sampling.needs_history()) {
    row.history_len = uint32_t(s.tokens.size());
    row.prompt_len = s.prompt_len;
    plan.history.insert(plan.history.end(), s.tokens.begin(), s.tokens.end());
  }
  row.bias_offset = uint32_t(plan.logit_bias.size());
  if (row.sample) {
    plan.logit_bias.insert(plan.logit_bias.end(), s.logit_bias.begin(), s.logit_bias.end());
    if (s.generated < s.min_tokens)  // min_tokens: the stop tokens cannot be sampled yet
      for (const int32_t id : s.stop)
        if (id >= 0 && (config_.vocab_size <= 0 || id < config_.vocab_size))
          plan.logit_bias.push_back({id, -std::numeric_limits<float>::infinity()});
  }
  row.bias_count = uint32_t(plan.logit_bias.size() - row.bias_offset);
  step_seqs_.push_back(&s);
  budget_left_ -= int32_t(chunk);
  const bool decode = chunk == 1 && s.generated > 0 && s.num_computed + 1 == s.tokens.size();
  ++(decode ? out_.num_decode_rows : out_.num_prefill_rows);
}

void Scheduler::plan_running() {
  const size_t n = running_.size();
  reserve_.resize(n + 1);
  reserve_[n] = 0;
  for (size_t i = n; i-- > 0;) {
    const Sequence& s = *running_[i];
    reserve_[i] = reserve_[i + 1] + std::min<uint32_t>(uint32_t(g_), uint32_t(s.tokens.size()) - s.num_computed);
  }
  const int32_t bs = config_.kv_block_size;
  for (size_t i = 0; i < running_.size(); ++i) {
    Sequence& s = *running_[i];
    const uint32_t remaining = uint32_t(s.tokens.size()) - s.num_computed;
    // Leave the rows after this one their guaranteed share (invariant:
    // budget_left_ >= reserve_[i], as T >= g * R).
    uint32_t chunk = std::min<uint32_t>(remaining, uint32_t(budget_left_) - reserve_[i + 1]);
    if (config_.max_prefill_chunk > 0) chunk = std::min<uint32_t>(chunk, uint32_t(config_.max_prefill_chunk));
    MYRIAD_CHECK(chunk >= 1, "running request " + std::to_string(s.id) + " got no tokens this step");
    const int32_t need =
        KvBlockAllocator::blocks_for(int32_t(s.num_computed + chunk), bs) - int32_t(s.blocks.size());
    bool self_preempted = false;
    while (kv_.num_free() < need) {
      if (reclaim_paused(nullptr)) continue;
      // Out of KV blocks: free the youngest sequence (recompute it later).
      Sequence* victim = running_.back();
      preempt(*victim);
      victim->in_running = false;
      running_.pop_back();
      if (victim == &s) {
        self_preempted = true;
        break;
      }
    }
    if (self_preempted) break;
    if (need > 0) MYRIAD_CHECK(kv_.allocate(need, s.blocks), "KV allocation failed after preemption");
    write_row(s, chunk);
  }
}

void Scheduler::plan_admissions() {
  const int32_t bs = config_.kv_block_size;
  admit_block_ = WaitReason::kTokenBudget;
  if (out_.num_preempted > 0) {  // KV is short: readmitting now would only thrash
    admit_block_ = WaitReason::kKvBlocks;
    return;
  }
  for (;;) {
    if (running_.size() >= size_t(config_.max_running_seqs)) {
      admit_block_ = WaitReason::kMaxRunning;
      return;
    }
    if (budget_left_ <= 0) {
      admit_block_ = WaitReason::kTokenBudget;
      return;
    }
    // The oldest queued or paused request among the adapters that can run now.
    AdapterState* best = base_->has_pending() ? base_.get() : nullptr;
    for (AdapterState* a : active_) {
      if (a->phase != AdapterPhase::kActive || !a->has_pending()) continue;
      if (best == nullptr || a->oldest_order() < best->oldest_order()) best = a;
    }
    if (best == nullptr) return;
    const bool resume = !best->paused.empty() && best->paused.front()->order == best->oldest_order();
    Sequence& s = resume ? *best->paused.front() : *best->queue.front();
    const uint32_t remaining = uint32_t(s.tokens.size()) - s.num_computed;
    int64_t chunk = std::min<int64_t>(remaining, budget_left_);
    if (config_.max_prefill_chunk > 0) chunk = std::min<int64_t>(chunk, config_.max_prefill_chunk);
    // New work never preempts running work (only paused requests' KV is
    // reclaimed): take what the free blocks hold.
    auto fits = [&] { return int64_t(s.blocks.size() + size_t(kv_.num_free())) * bs - s.num_computed; };
    while (fits() < chunk && reclaim_paused(&s)) {
    }
    chunk = std::min(chunk, fits());
    if (chunk <= 0) {
      admit_block_ = WaitReason::kKvBlocks;
      return;
    }
    if (s.router && !s.routed && s.num_computed == 0 && chunk < int64_t(s.route_end)) {
      // Its routed tokens must come in one chunk: wait for the budget.
      admit_block_ = fits() < int64_t(s.route_end) ? WaitReason::kKvBlocks : WaitReason::kTokenBudget;
      return;
    }
    const int32_t need =
        KvBlockAllocator::blocks_for(int32_t(s.num_computed + chunk), bs) - int32_t(s.blocks.size());
    if (need > 0) MYRIAD_CHECK(kv_.allocate(need, s.blocks), "KV allocation failed for an admission that fits");
    if (resume) {
      best->paused.erase(best->paused.begin());
      --num_paused_;
    } else {
      best->queue.pop_front();
      uncount_queued(s);
    }
    s.state = SeqState::kRunning;
    s.in_running = true;
    ++best->pins;
    if (s.first_admit_ms < 0) s.first_admit_ms = now_ms_;
    // running_ stays in submission order: the youngest is preempted first,
    // the oldest always progresses.
    auto at = std::upper_bound(running_.begin(), running_.end(), &s,
                               [](const Sequence* x, const Sequence* y) { return x->order < y->order; });
    running_.insert(at, &s);
    ++out_.num_admitted;
    write_row(s, uint32_t(chunk));
  }
}

void Scheduler::plan_waiting() {
  auto add = [&](AdapterState& a) {
    if (!a.has_pending()) return;
    WaitingAdapter& w = out_.waiting.emplace_back();
    w.adapters = a.ids;
    w.queued = uint32_t(a.queue.size() + a.paused.size());
    if (!a.fetched()) {
      w.reason = WaitReason::kFetching;
      w.since_ms = a.queue.empty() ? a.paused.front()->submit_ms : a.queue.front()->submit_ms;
      return;
    }
    switch (a.phase) {
      case AdapterPhase::kIdle: w.reason = WaitReason::kNoSlot; break;
      case AdapterPhase::kLoading: w.reason = WaitReason::kLoading; break;
      case AdapterPhase::kDraining: w.reason = WaitReason::kSwappedOut; break;
      case AdapterPhase::kActive: w.reason = admit_block_; break;
    }
    if (a.phase != AdapterPhase::kActive) {
      w.since_ms = a.waiting_since_ms;
    } else {
      w.since_ms = a.queue.empty() ? a.paused.front()->submit_ms : a.queue.front()->submit_ms;
      if (!a.paused.empty()) w.since_ms = std::min(w.since_ms, a.paused.front()->submit_ms);
    }
  };
  add(*base_);
  for (AdapterState* a : live_) add(*a);
}

void Scheduler::forget_unused() {
  size_t j = 0;
  for (AdapterState* a : live_) {
    const bool waiting_phase = a->phase == AdapterPhase::kIdle || a->phase == AdapterPhase::kDraining;
    if (waiting_phase && !a->has_pending()) a->ticket = 0;
    if (a->phase == AdapterPhase::kIdle && !a->has_pending() && a->pins == 0) {
      for (Member* m : a->members) --m->sets;
      for (Member* m : a->members) forget_if_unused(*m);
      adapters_.erase(a->key);  // destroys *a
      continue;
    }
    live_[j++] = a;
  }
  live_.resize(j);
}

}  // namespace myriad
