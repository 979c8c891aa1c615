// The scheduler's requests: the starvation bound formula, submit (validation
// and queueing), cancel and end, deadlines, schedule() as the sequence of the
// other pieces, and applying a step's results (update, fail_step).
#include <cmath>

#include "runtime/request_validation.h"
#include "scheduler_state.h"

namespace myriad {

double starvation_bound_ms(const SchedulerConfig& c, int32_t num_adapters, int32_t max_prompt_plus_output,
                           int32_t max_output, double step_ms, int32_t load_steps) {
  int32_t g = c.max_tokens_per_step / c.max_running_seqs;
  if (c.max_prefill_chunk > 0) g = std::min(g, c.max_prefill_chunk);
  g = std::max(g, 1);
  const double s = std::ceil(double(max_prompt_plus_output) / g) + max_output;
  const double cycle = c.quantum_ms + (s + load_steps + 3) * step_ms;
  const double rounds = std::ceil(double(std::max(num_adapters, 1)) / std::max(c.num_slots, 1));
  return rounds * cycle + (load_steps + 1) * step_ms;
}

Result<std::unique_ptr<Scheduler>> Scheduler::create(const SchedulerConfig& config) {
  MYRIAD_TRY(validate_scheduler_config(config));
  return std::unique_ptr<Scheduler>(new Scheduler(config));
}

Scheduler::Scheduler(const SchedulerConfig& config)
    : config_(config), limits_(request_limits(config)), kv_(config.num_kv_blocks, config.kv_shuffle_seed) {
  g_ = config_.max_tokens_per_step / config_.max_running_seqs;
  if (config_.max_prefill_chunk > 0) g_ = std::min(g_, config_.max_prefill_chunk);
  g_ = std::max(g_, 1);
  base_ = std::make_unique<AdapterState>();
  base_->phase = AdapterPhase::kActive;
  base_->key = "";
  slots_.assign(size_t(config_.num_slots), nullptr);
  running_.reserve(size_t(config_.max_running_seqs));
  // The plan's arrays at their largest, so no step allocates: rows' block
  // tables are disjoint, so all of them hold at most the whole pool.
  out_.plan.rows.reserve(size_t(config_.max_running_seqs));
  out_.plan.tokens.reserve(size_t(config_.max_tokens_per_step));
  out_.plan.block_ids.reserve(size_t(config_.num_kv_blocks));
  events_.reserve(2 * size_t(config_.max_running_seqs));
  step_seqs_.reserve(size_t(config_.max_running_seqs));
  reserve_.reserve(size_t(config_.max_running_seqs) + 1);
}

Scheduler::~Scheduler() = default;

// ---------------------------------------------------------------- requests

// ---------------------------------------------------------------- requests

Scheduler::Sequence* Scheduler::new_sequence() {
  if (!seq_free_.empty()) {
    Sequence* s = seq_free_.back();
    seq_free_.pop_back();
    return s;
  }
  seq_storage_.push_back(std::make_unique<Sequence>());
  return seq_storage_.back().get();
}

void Scheduler::recycle(Sequence* s) {
  s->tokens.clear();  // capacities kept: a recycled sequence allocates nothing
  s->stop.clear();
  s->router.reset();
  s->routed = false;
  s->blocks.clear();
  s->adapter = nullptr;
  s->state = SeqState::kDone;
  s->in_running = false;
  seq_free_.push_back(s);
}

size_t resumable_prefix(const std::vector<int32_t>& resume_output, uint32_t max_tokens,
                        const std::vector<int32_t>& stop_token_ids) {
  size_t n = std::min<size_t>(resume_output.size(), max_tokens > 0 ? max_tokens - 1 : 0);
  for (size_t i = 0; i < n; ++i)
    if (std::find(stop_token_ids.begin(), stop_token_ids.end(), resume_output[i]) != stop_token_ids.end()) return i;
  return n;
}

Result<RequestId> Scheduler::submit(Request request, double now_ms) {
  auto reject = [&](ErrorCode code, std::string msg) -> Error {
    ++stats_.rejected;
    return make_error(code, std::move(msg));
  };
  if (Status v = validate_request(request, limits_); !v.ok()) return reject(v.error().code, v.error().message);
  if (by_id_.count(request.id))
    return reject(ErrorCode::kInvalidArgument, "request id " + std::to_string(request.id) + " is already in flight");
  const size_t prompt_len = request.prompt.size();
  const int64_t total = int64_t(prompt_len) + request.max_tokens;
  const int64_t blocks = (total + config_.kv_block_size - 1) / config_.kv_block_size;
  const SamplingParams& sp = request.sampling;

  Sequence* s = new_sequence();
  now_ms_ = now_ms;
  AdapterState* a = request.adapters.empty() ? base_.get() : set_for(request.adapters, *s);
  s->id = request.id;
  s->adapter = a;
  s->tokens.reserve(size_t(total));
  s->tokens.assign(request.prompt.begin(), request.prompt.end());
  s->stop.assign(request.stop_token_ids.begin(), request.stop_token_ids.end());
  s->logit_bias.assign(request.logit_bias.begin(), request.logit_bias.end());
  s->min_tokens = request.min_tokens;
  const size_t resumed = resumable_prefix(request.resume_output, request.max_tokens, s->stop);
  s->tokens.insert(s->tokens.end(), request.resume_output.begin(), request.resume_output.begin() + ptrdiff_t(resumed));
  s->blocks.reserve(size_t(blocks));
  s->sampling = sp;
  s->prompt_len = uint32_t(prompt_len);
  s->max_tokens = request.max_tokens;
  s->generated = uint32_t(resumed);
  s->num_computed = 0;
  s->prompt_logits = request.prompt_logits;
  // A resumed request's client has its prompt logits from the first attempt.
  s->logits_reported = resumed > 0                                        ? uint32_t(prompt_len)
                       : request.prompt_logits == LogitsRequest::kLast ? uint32_t(prompt_len) - 1
                                                                         : 0;
  s->submit_ms = now_ms;
  s->first_admit_ms = -1.0;
  s->order = next_order_++;
  s->state = SeqState::kQueued;
  s->in_running = false;
  s->was_paused = false;
  s->router = request.prefill_router;
  s->routed = false;
  if (s->router) {
    // The routed tokens come in the first chunk, so the route is the same
    // whatever else shares the step; a chunk never exceeds these limits.
    uint32_t end = s->prompt_len;
    const uint32_t skip = std::min(s->router->skip_tokens, s->prompt_len - 1);
    if (s->router->max_tokens > 0) end = std::min(end, skip + s->router->max_tokens);
    end = std::min(end, uint32_t(config_.max_tokens_per_step));
    if (config_.max_prefill_chunk > 0) end = std::min(end, uint32_t(config_.max_prefill_chunk));
    s->route_end = end;
    // Until it routes, no expert weighs anything.
    s->weights.fill(0.0f);
  }
  by_id_.emplace(s->id, s);
  a->queue.push_back(s);
  count_queued(*s);
  mark_waiting(*a, now_ms);
  if (request.timeout_ms != kNoDeadline) deadlines_.push({now_ms + request.timeout_ms, s->id, s->order});
  ++stats_.submitted;
  return s->id;
}

bool Scheduler::cancel(RequestId id, double now_ms) { return end(id, FinishReason::kCancelled, now_ms); }

bool Scheduler::end(RequestId id, FinishReason reason, double now_ms) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return false;
  finish(*it->second, reason, now_ms);
  compact_running();
  return true;
}

void Scheduler::remove_from_queue(Sequence& s) {
  auto& q = s.adapter->queue;
  auto it = std::find(q.begin(), q.end(), &s);
  MYRIAD_CHECK(it != q.end(), "queued request " + std::to_string(s.id) + " missing from its adapter queue");
  q.erase(it);
  uncount_queued(s);
}

uint64_t Scheduler::pending_tokens() const {
  uint64_t total = queued_tokens_;
  for (const Sequence* s : running_) {
    if (s->state != SeqState::kRunning) continue;  // ended, not yet compacted away
    total += s->tokens.size() - s->num_computed + (s->max_tokens > s->generated ? s->max_tokens - s->generated : 0);
  }
  return total;
}

void Scheduler::count_queued(Sequence& s) {
  ++num_queued_;
  s.queued_work = s.tokens.size() + (s.max_tokens > s.generated ? s.max_tokens - s.generated : 0);
  queued_tokens_ += s.queued_work;
}

void Scheduler::uncount_queued(Sequence& s) {
  --num_queued_;
  queued_tokens_ -= s.queued_work;
  s.queued_work = 0;
}

void Scheduler::retire(Sequence& s) {
  if (s.state == SeqState::kQueued) {
    remove_from_queue(s);
  } else if (s.state == SeqState::kRunning) {
    kv_.release(s.blocks);
    --s.adapter->pins;
  } else if (s.state == SeqState::kPaused) {
    auto& p = s.adapter->paused;
    p.erase(std::find(p.begin(), p.end(), &s));
    kv_.release(s.blocks);
    --num_paused_;
  }
  by_id_.erase(s.id);
  s.state = SeqState::kDone;
  if (!s.in_running) recycle(&s);  // else compact_running() recycles it
}

RequestEvent& Scheduler::new_event(const Sequence& s) {
  RequestEvent& e = events_.emplace_back();
  e.id = s.id;
  if (s.router && s.routed) {
    const size_t n = s.adapter->members.size();
    e.num_expert_weights = uint8_t(n);
    for (size_t i = 0; i < n; ++i) e.expert_weights[i] = s.weights[size_t(s.member_of_adapter[i])];
  }
  return e;
}

void Scheduler::finish(Sequence& s, FinishReason reason, double now_ms) {
  RequestEvent& e = new_event(s);
  e.kind = EventKind::kFinished;
  e.time_ms = now_ms;
  e.reason = reason;
  e.num_output_tokens = s.generated;
  e.queue_ms = s.first_admit_ms < 0 ? -1.0 : s.first_admit_ms - s.submit_ms;
  retire(s);
}

void Scheduler::fail(Sequence& s, const Error& error, double now_ms) {
  RequestEvent& e = new_event(s);
  e.kind = EventKind::kFailed;
  e.time_ms = now_ms;
  e.num_output_tokens = s.generated;
  e.queue_ms = s.first_admit_ms < 0 ? -1.0 : s.first_admit_ms - s.submit_ms;
  e.error = error;
  retire(s);
}

void Scheduler::compact_running() {
  size_t j = 0;
  for (Sequence* s : running_) {
    if (s->state == SeqState::kRunning) {
      running_[j++] = s;
    } else {
      s->in_running = false;
      if (s->state == SeqState::kDone) recycle(s);
    }
  }
  running_.resize(j);
}

void Scheduler::expire_deadlines(double now_ms) {
  while (!deadlines_.empty() && deadlines_.top().at_ms <= now_ms) {
    const DeadlineEntry d = deadlines_.top();
    deadlines_.pop();
    // An id may be reused once its request has ended: only the submission
    // the entry was made for expires.
    auto it = by_id_.find(d.id);
    if (it != by_id_.end() && it->second->order == d.order) finish(*it->second, FinishReason::kDeadline, now_ms);
  }
  compact_running();
}

const ScheduleOutput& Scheduler::schedule(double now_ms) {
  now_ms_ = now_ms;
  out_.clear();
  step_seqs_.clear();
  compact_running();
  expire_deadlines(now_ms);
  release_unheld_slots();  // held by sets that failed since the last call
  // Safety net: an adapter that lost its slot with work queued waits in order.
  for (AdapterState* a : live_) mark_waiting(*a, now_ms);
  plan_adapters(now_ms);
  active_.clear();
  for (AdapterState* a : live_)
    if (a->phase == AdapterPhase::kActive) {
      ++a->active_steps;
      active_.push_back(a);
    }
  budget_left_ = config_.max_tokens_per_step;
  plan_running();
  plan_admissions();
  plan_waiting();
  forget_unused();
  if (!out_.plan.rows.empty()) ++stats_.steps;
  return out_;
}

// ---------------------------------------------------------------- results

void Scheduler::update(const StepResult& result, double now_ms) {
  const StepPlan& plan = out_.plan;
  size_t sample_rows = 0;
  for (const SeqRow& r : plan.rows) sample_rows += r.sample;
  if (result.sampled.size() != sample_rows) {
    fail_step(make_error(ErrorCode::kInternal, "executor returned " + std::to_string(result.sampled.size()) +
                                                   " sampled tokens for " + std::to_string(sample_rows) +
                                                   " sampling rows"),
              now_ms);
    return;
  }
  if (!apply_routes(result, now_ms)) return;
  size_t si = 0;
  size_t logits_pos = 0;  // into result.logits, in positions
  const size_t vocab = config_.vocab_size > 0 ? size_t(config_.vocab_size) : 0;
  for (size_t i = 0; i < plan.rows.size(); ++i) {
    const SeqRow& row = plan.rows[i];
    Sequence& s = *step_seqs_[i];
    const SampledToken* t = row.sample ? &result.sampled[si++] : nullptr;
    const size_t row_logits_pos = logits_pos;
    logits_pos += row.logits == LogitsRequest::kAll ? row.num_tokens : row.logits == LogitsRequest::kLast ? 1 : 0;
    if (s.state != SeqState::kRunning || s.id != row.seq) continue;  // cancelled since schedule()
    if (row.logits != LogitsRequest::kNone) report_logits(s, row, result, row_logits_pos, vocab, now_ms);
    s.num_computed += row.num_tokens;
    if (s.max_tokens == 0 && s.num_computed >= s.prompt_len) {
      finish(s, FinishReason::kLength, now_ms);  // scored the prompt; nothing to generate
      continue;
    }
    if (t == nullptr) continue;
    if (t->seq != row.seq) {
      fail(s, make_error(ErrorCode::kInternal, "executor returned a token for sequence " + std::to_string(t->seq) +
                                                   " in the row of sequence " + std::to_string(row.seq)),
           now_ms);
      continue;
    }
    const std::span<const TopLogprobs::Entry> top = result.top_of(*t);
    if (top.size() != t->top_count) {
      fail(s, make_error(ErrorCode::kInternal, "executor returned alternatives [" + std::to_string(t->top_offset) +
                                                   ", +" + std::to_string(t->top_count) + ") outside its " +
                                                   std::to_string(result.top_entries.size()) + " entries"),
           now_ms);
      continue;
    }
    if (t->top_count > row.sampling.top_logprobs) {
      fail(s, make_error(ErrorCode::kInternal, "executor returned " + std::to_string(t->top_count) +
                                                   " alternatives; the request asked for " +
                                                   std::to_string(row.sampling.top_logprobs)),
           now_ms);
      continue;
    }
    s.tokens.push_back(t->token);
    ++s.generated;
    RequestEvent& e = new_event(s);
    e.kind = EventKind::kToken;
    e.time_ms = now_ms;
    e.token = t->token;
    e.logprob = t->logprob;
    e.top = top;
    e.index = s.generated - 1;
    if (std::find(s.stop.begin(), s.stop.end(), t->token) != s.stop.end()) {
      finish(s, FinishReason::kStop, now_ms);
    } else if (s.generated >= s.max_tokens) {
      finish(s, FinishReason::kLength, now_ms);
    }
  }
  step_seqs_.clear();
  compact_running();
}

// The experts each routing row chose become its weights. An executor that
// answers a route other than as asked fails the step.
bool Scheduler::apply_routes(const StepResult& result, double now_ms) {
  const StepPlan& plan = out_.plan;
  size_t j = 0;
  for (size_t i = 0; i < plan.rows.size(); ++i) {
    if (plan.rows[i].route < 0) continue;
    if (j >= result.routed.size() || result.routed[j].row != i) {
      fail_step(make_error(ErrorCode::kInternal, "executor did not route plan row " + std::to_string(i)), now_ms);
      return false;
    }
    const RoutedRow& routed = result.routed[j++];
    Sequence& s = *step_seqs_[i];
    if (s.state != SeqState::kRunning || s.id != plan.rows[i].seq || !s.router) continue;
    const size_t n = s.adapter->members.size();
    for (size_t e = 0; e < n; ++e) s.weights[size_t(s.member_of_adapter[e])] = routed.weights[e];
    s.routed = true;
  }
  return true;
}

// A kLogits event for the prompt positions of `row` not reported before
// (positions past the prompt, recomputed after a preemption, are not).
void Scheduler::report_logits(Sequence& s, const SeqRow& row, const StepResult& result, size_t first_pos,
                              size_t vocab, double now_ms) {
  const uint32_t row_start = uint32_t(row.start_pos);
  const uint32_t row_end = row_start + (row.logits == LogitsRequest::kAll ? row.num_tokens : 1);
  const uint32_t first = row.logits == LogitsRequest::kAll ? row_start : row_start + row.num_tokens - 1;
  const uint32_t from = std::max(first, s.logits_reported);
  const uint32_t to = std::min(row.logits == LogitsRequest::kAll ? row_end : first + 1, s.prompt_len);
  if (from >= to || vocab == 0) return;
  const size_t offset = (first_pos + (from - first)) * vocab;
  MYRIAD_CHECK(offset + size_t(to - from) * vocab <= result.logits.size(),
               "executor returned " + std::to_string(result.logits.size()) + " logits, fewer than the plan asked");
  RequestEvent& e = new_event(s);
  e.kind = EventKind::kLogits;
  e.time_ms = now_ms;
  e.logits_start = from;
  e.logits_count = to - from;
  e.logits = std::span<const float>(result.logits.data() + offset, size_t(to - from) * vocab);
  s.logits_reported = to;
}

void Scheduler::fail_step(const Error& error, double now_ms) {
  const StepPlan& plan = out_.plan;
  for (size_t i = 0; i < step_seqs_.size(); ++i) {
    Sequence& s = *step_seqs_[i];
    if (s.state == SeqState::kRunning && s.id == plan.rows[i].seq) fail(s, error, now_ms);
  }
  step_seqs_.clear();
  compact_running();
}

}  // namespace myriad
