// The continuous-batching scheduler with a time-sliced active adapter set.
// Pure logic: no threads, no I/O, time passed in. The engine and the
// simulator drive the same object:
//
//   submit(request, now)        -> RequestId, or an Error answered to that request (never throws);
//                                  adapter versions it has not seen go to fetches()
//   on_adapter_fetched / on_fetch_failed                  as fetches end
//   schedule(now)               -> ScheduleOutput: evict, load, run these rows, this is waiting and why
//   [executor runs the step]
//   update(step_result, now)    -> per-request events (tokens, finished) in events()
//   on_adapter_ready / on_load_failed / fail_step / cancel  as things happen
//
// Owns the FIFO queues per adapter set, the running batch, the KV block
// accounting and the slot books. An adapter set is what a request names: one
// adapter, or the experts of a mixture, scheduled as one unit whose members
// are resident together; sets that share an adapter share its slot
// (reference-counted). A plain adapter is a set of one, and everything below
// reads "adapter" for "adapter set". Invariants (checked by the tests):
//  * every submitted request ends in exactly one final event;
//  * a row only uses a slot whose adapter is loaded (on_adapter_ready);
//  * a slot is evicted only when no running sequence pins its adapter;
//  * each running row gets >= min(g, its remaining tokens) new tokens per
//    step, g = min(floor(T / R), max_prefill_chunk or T) (T = max tokens
//    per step, R = max running sequences), unless it is preempted;
//  * KV blocks in use == blocks held by running sequences.
// Not thread-safe: one engine thread.
//
// Residency of one adapter version (a member of sets):
//
//   (new) ──fetch──> Fetching ──fetched──> InHost ──slot assigned──> Loading ──ready──> InSlot
//                        │ fetch failed: the sets' queues fail     ^   │ load failed         │ no set holds it:
//                        v                                          │   v (its sets fail)     │ evicted
//                     forgotten                                     └── InHost <──────────────┘
//   forgotten once no live set names it and it holds no slot.
//
// Adapter set states (the base model is always Active and needs no slot; a
// set waits in Idle until every member is InHost):
//
//        (1) queued, no slot          (2) slots assigned       (3) every member ready
//   Gone ─────────────────────> Idle ─────────────────> Loading ─────────────────> Active
//    ^                           ^  ^                      │                        │ │
//    │ (8) nothing queued,       │  └──(7) load failed ────┘   (4) quantum passed & │ │
//    │     nothing running       │      (its queue fails)        others wait, or   │ │
//    └───────────────────────────┤                               nothing queued    │ │
//                                │                               while others wait │ │
//                                │  (6) no running sequence pins it:             v │
//                                └──────────────── slot evicted ───────────  Draining │
//                                └──────────────── (5) nothing queued or running ─────┘
//                                                  (slot evicted at once)
//  In Draining the adapter's running requests finish (or, with
//  pause_on_swap_out, are paused at (4), keeping their KV blocks, so (6)
//  follows at once; they resume first when the adapter is active again. A
//  request is paused at most once (the next swap-out lets it finish), and a
//  paused request's KV is the first reclaimed when blocks run out, so
//  pausing can neither deadlock the KV pool nor livelock a request); its
//  new requests queue and it waits for a slot again.
//
// Starvation bound (kTimeslice). Let A = number of distinct adapters that
// have queued requests, N = num_slots, Q = quantum_ms, Δ = the longest time
// between two schedule() calls, L = the most schedule() calls a load takes
// to be reported ready, and S = ceil(P / g) + M steps, where P is the
// longest prompt + output, M the largest max_tokens (S bounds how long a
// running request takes to finish, since each row progresses >= g tokens a
// step; preemption only shortens a drain). Every slot is freed at least
// once per C = Q + (S + L + 3)·Δ while adapters wait, and a freed slot goes
// to the adapter that has waited longest (strict FIFO by wait ticket), so
// an adapter that starts waiting for a slot at t has one assigned by
// t + ceil(A / N)·C and is Active (loaded) by
//      t + ceil(A / N) · (Q + (S + L + 3)·Δ) + (L + 1)·Δ.
// starvation_bound_ms() computes it; the property test asserts it at every
// step for every adapter waiting for a slot. The wait counts from the end of
// the adapter's fetch; a mixture of k adapters counts as k waiting adapters.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/adapter_id.h"
#include "runtime/engine_events.h"
#include "runtime/kv_block_allocator.h"
#include "runtime/request.h"
#include "runtime/request_validation.h"
#include "runtime/result.h"
#include "runtime/schedule_output.h"
#include "runtime/scheduler_config.h"
#include "runtime/step_plan.h"

namespace myriad {

// The formula above. `max_prompt_plus_output` = P, `max_output` = M,
// `step_ms` = Δ, `load_steps` = L.
double starvation_bound_ms(const SchedulerConfig& c, int32_t num_adapters, int32_t max_prompt_plus_output,
                           int32_t max_output, double step_ms, int32_t load_steps);

// How many of a resumed request's tokens (Request::resume_output) are taken
// as already sent: those before the first that would have ended it (a stop
// token, or max_tokens reached), so the ending token is computed again.
size_t resumable_prefix(const std::vector<int32_t>& resume_output, uint32_t max_tokens,
                        const std::vector<int32_t>& stop_token_ids);

enum class AdapterPhase : uint8_t { kIdle, kLoading, kActive, kDraining };
const char* adapter_phase_name(AdapterPhase p);

struct SchedulerStats {
  uint64_t submitted = 0, rejected = 0;
  uint64_t fetches = 0, fetch_failures = 0;
  uint64_t loads = 0, load_failures = 0, evictions = 0;
  uint64_t swaps = 0;        // adapters swapped out at the quantum (kTimeslice)
  uint64_t preemptions = 0;  // sequences whose KV was freed for recompute
  uint64_t steps = 0;        // schedule() calls that produced rows
};

class Scheduler {
 public:
  // Fails naming the bad setting.
  static Result<std::unique_ptr<Scheduler>> create(const SchedulerConfig& config);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Validates the request (validate_request, plus its id is not in flight).
  // An Error means it was not accepted (no events will follow); otherwise it
  // is queued, and versions not in host memory are added to fetches().
  Result<RequestId> submit(Request request, double now_ms);
  // Versions the caller must fetch (AdapterSource) and report with
  // on_adapter_fetched / on_fetch_failed. The caller clears it.
  std::vector<AdapterId>& fetches() { return fetches_; }
  // Ids not being fetched are ignored (a late answer for a forgotten one).
  void on_adapter_fetched(const AdapterId& id, std::shared_ptr<const LoraWeights> weights, double now_ms);
  // The queued requests of every set naming `id` fail with `error`.
  void on_fetch_failed(const AdapterId& id, const Error& error, double now_ms);
  // Ends a queued or running request with kCancelled (event at once). False
  // if the id is unknown or already finished.
  bool cancel(RequestId id, double now_ms);
  // Ends a request for a reason found outside the scheduler (a stop string
  // its output processor matched): one Finished event with `reason`.
  bool end(RequestId id, FinishReason reason, double now_ms);

  // Plans the next step. Expires deadlines first (events), then decides
  // adapter evictions/loads per the policy, then the rows.
  const ScheduleOutput& schedule(double now_ms);
  // Applies the executor's result for the plan last returned by schedule().
  void update(const StepResult& result, double now_ms);
  // The executor failed the last plan: its rows' requests fail with `error`.
  void fail_step(const Error& error, double now_ms);

  // Slots with a load in flight (the executor reports each one's end).
  const std::vector<int32_t>& loading_slots() const { return loading_slots_; }
  void on_adapter_ready(int32_t slot, double now_ms);
  // The load failed: the slot frees, the queued requests of the sets that
  // wanted it fail with `error`.
  void on_load_failed(int32_t slot, const Error& error, double now_ms);

  // Events produced by the calls above, in order. The caller consumes them
  // and clears the vector (its capacity is kept).
  std::vector<RequestEvent>& events() { return events_; }

  const SchedulerConfig& config() const { return config_; }
  const SchedulerStats& stats() const { return stats_; }
  size_t num_queued() const { return num_queued_; }
  // Work waiting in the queues, in tokens: each queued request's prompt (and
  // tokens generated before a preemption) to prefill plus the tokens it may
  // still generate. What placement balances (a request count hides sizes).
  uint64_t queued_tokens() const { return queued_tokens_; }
  // queued_tokens() plus the running requests' prompt left to prefill and
  // output still to come: the worker's whole backlog, for a load report.
  uint64_t pending_tokens() const;
  size_t num_running() const { return running_.size(); }
  size_t num_paused() const { return num_paused_; }
  bool has_work() const {
    return num_queued_ > 0 || num_paused_ > 0 || !running_.empty() || !loading_slots_.empty();
  }
  int32_t num_free_kv_blocks() const { return kv_.num_free(); }
  // Introspection for tests: the adapter in a slot (null if free).
  const AdapterId* slot_adapter(int32_t slot) const;
  size_t num_known_adapters() const { return members_.size(); }

 private:
  struct Sequence;
  struct Member;
  struct AdapterState;

  explicit Scheduler(const SchedulerConfig& config);

  Sequence* new_sequence();
  void recycle(Sequence* s);
  AdapterState* set_for(const std::vector<AdapterUse>& adapters, Sequence& s);
  Member* member_for(const AdapterId& id, double now_ms);
  void forget_if_unused(Member& m);
  void mark_waiting(AdapterState& a, double now_ms);
  void activate(AdapterState& a, double now_ms);
  void fail_pending(AdapterState& a, const Error& e, double now_ms);

  void expire_deadlines(double now_ms);
  void plan_adapters(double now_ms);
  void plan_timeslice(double now_ms);
  void plan_fcfs(double now_ms);
  void plan_one_at_a_time(double now_ms);
  void release_idle_and_drained();
  void evict(AdapterState& a);
  void release_unheld_slots();
  void free_member_slot(Member& m);
  void assign_slots(AdapterState& a, double now_ms);
  size_t assign_waiters(size_t from, double now_ms);
  size_t slots_needed(const AdapterState& a) const;
  size_t slots_freed_by(const AdapterState& a) const;
  void swap_out(AdapterState& a, double now_ms, bool pause);
  void collect_waiters(bool by_ticket);
  int32_t free_slot() const;
  size_t num_free_slots() const;

  void plan_running();
  void plan_admissions();
  void plan_waiting();
  void write_row(Sequence& s, uint32_t chunk);
  void report_logits(Sequence& s, const SeqRow& row, const StepResult& result, size_t first_pos, size_t vocab,
                     double now_ms);
  void forget_unused();
  void preempt(Sequence& s);
  bool reclaim_paused(const Sequence* keep);

  RequestEvent& new_event(const Sequence& s);  // its id and, once routed, its experts' weights
  bool apply_routes(const StepResult& result, double now_ms);  // false: the step failed
  void finish(Sequence& s, FinishReason reason, double now_ms);  // removes from queue, not from running_
  void fail(Sequence& s, const Error& error, double now_ms);
  void retire(Sequence& s);  // frees blocks, unpins, unindexes, recycles
  void remove_from_queue(Sequence& s);
  void compact_running();

  SchedulerConfig config_;
  RequestLimits limits_;
  KvBlockAllocator kv_;
  int32_t g_;  // guaranteed tokens per running row per step

  uint64_t next_ticket_ = 1;
  uint64_t next_order_ = 1;
  std::unordered_map<RequestId, Sequence*> by_id_;
  std::vector<std::unique_ptr<Sequence>> seq_storage_;
  std::vector<Sequence*> seq_free_;

  std::unordered_map<AdapterId, std::unique_ptr<Member>, AdapterIdHash> members_;
  std::unordered_map<std::string, std::unique_ptr<AdapterState>> adapters_;  // sets, by their key
  std::unique_ptr<AdapterState> base_;
  std::vector<AdapterState*> live_;     // non-base sets with queued/running requests or slots
  std::vector<AdapterState*> active_;   // scratch: the Active sets of this schedule()
  std::vector<Member*> slots_;          // [num_slots]: the adapter in each slot, or null
  std::vector<int32_t> loading_slots_;
  std::vector<AdapterId> fetches_;
  std::vector<AdapterState*> waiters_;  // scratch
  std::vector<AdapterState*> scratch_;  // scratch

  std::vector<Sequence*> running_;      // admission order, oldest first
  std::vector<Sequence*> step_seqs_;    // [plan.rows]
  std::vector<uint32_t> reserve_;       // scratch: suffix sums of guaranteed tokens
  size_t num_queued_ = 0;
  uint64_t queued_tokens_ = 0;
  void count_queued(Sequence& s);    // s joins a queue
  void uncount_queued(Sequence& s);  // s leaves it
  size_t num_paused_ = 0;
  int32_t budget_left_ = 0;
  double now_ms_ = 0.0;  // of the schedule() in progress
  WaitReason admit_block_ = WaitReason::kTokenBudget;

  struct DeadlineEntry {
    double at_ms;
    RequestId id;
    uint64_t order;  // the submission it belongs to (ids may be reused)
    bool operator>(const DeadlineEntry& o) const { return at_ms > o.at_ms; }
  };
  std::priority_queue<DeadlineEntry, std::vector<DeadlineEntry>, std::greater<>> deadlines_;

  ScheduleOutput out_;
  std::vector<RequestEvent> events_;
  SchedulerStats stats_;
};

}  // namespace myriad
