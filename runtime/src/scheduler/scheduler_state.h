// The scheduler's private state types, shared by its translation units:
//   scheduler.cpp            requests: submit, cancel, deadlines, update from results, retire
//   scheduler_residency.cpp  adapter residency: sets and members, fetches, slot books, loads
//   scheduler_policies.cpp   which adapter sets hold slots: timeslice, fcfs, one-at-a-time
//   scheduler_batch.cpp      the step's rows: running rows, admissions, KV blocks, preemption
// Not a public header (runtime/src only).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "runtime/scheduler.h"

namespace myriad {

namespace scheduler_detail {
enum class SeqState : uint8_t { kQueued, kRunning, kPaused, kDone };
}  // namespace scheduler_detail
using scheduler_detail::SeqState;

struct Scheduler::Sequence {
  RequestId id = 0;
  AdapterState* adapter = nullptr;
  std::vector<int32_t> tokens;  // prompt + generated; [num_computed, size) not yet in the KV cache
  std::vector<int32_t> stop;
  std::vector<int32_t> blocks;  // KV block table
  std::array<float, kMaxAdaptersPerRow> weights{};  // mixing weight per member of its set
  // A request routed in its prefill (Request::prefill_router): its set is
  // all the experts; until its first step has routed it, its rows carry a
  // RowRoute over its first route_end prompt tokens, then the chosen
  // experts' weights (the others 0, left out of its rows).
  std::shared_ptr<const PrefillRouter> router;
  std::array<int8_t, kMaxAdaptersPerRow> member_of_adapter{};  // Request::adapters[i] is members[member_of_adapter[i]]
  uint32_t route_end = 0;
  bool routed = false;
  SamplingParams sampling;
  std::vector<LogitBias> logit_bias;
  uint32_t min_tokens = 0;  // until then its stop tokens get -inf in its rows' bias
  uint32_t prompt_len = 0;
  uint32_t max_tokens = 0;
  uint32_t generated = 0;
  uint32_t num_computed = 0;
  LogitsRequest prompt_logits = LogitsRequest::kNone;
  uint32_t logits_reported = 0;  // prompt positions whose logits went out (a recompute does not repeat them)
  double submit_ms = 0.0;
  double first_admit_ms = -1.0;
  uint64_t order = 0;  // submission order (FIFO across adapters)
  uint64_t queued_work = 0;  // tokens it added to queued_tokens_ when it last queued (taken off as it leaves)
  SeqState state = SeqState::kDone;
  bool in_running = false;  // present in running_ (removed by compaction or pop)
  bool was_paused = false;  // paused once already: a later swap-out lets it finish (progress)
};

struct Scheduler::Member {
  enum class State : uint8_t { kFetching, kInHost, kLoading, kInSlot };
  AdapterId id;
  std::shared_ptr<const LoraWeights> weights;  // once fetched
  State state = State::kFetching;
  int32_t slot = -1;
  int32_t sets = 0;     // live sets naming it
  int32_t holders = 0;  // sets holding its slot (phase != Idle)
  double fetch_since_ms = 0.0;
};

struct Scheduler::AdapterState {
  std::vector<Member*> members;  // sorted by id; empty => base model
  std::vector<AdapterId> ids;    // the members' ids, for WaitingAdapter
  std::string key;               // "t/a@1+t/b@2"
  std::deque<Sequence*> queue;
  std::vector<Sequence*> paused;  // swapped out with pause_on_swap_out: KV kept; by submission order
  int32_t pins = 0;  // running sequences
  AdapterPhase phase = AdapterPhase::kIdle;
  double active_since_ms = 0.0;
  uint64_t active_steps = 0;  // schedule() calls it was Active in: >= 1 before a swap-out (progress when Q = 0)
  double waiting_since_ms = 0.0;
  uint64_t ticket = 0;  // != 0 while waiting for a slot: strict FIFO order
  bool is_base() const { return members.empty(); }
  bool fetched() const {
    for (const Member* m : members)
      if (m->state == Member::State::kFetching) return false;
    return true;
  }
  bool all_in_slot() const {
    for (const Member* m : members)
      if (m->state != Member::State::kInSlot) return false;
    return true;
  }
  bool has(const Member* m) const { return std::find(members.begin(), members.end(), m) != members.end(); }
  int32_t first_slot() const { return members.empty() ? -1 : members.front()->slot; }
  bool has_pending() const { return !queue.empty() || !paused.empty(); }
  // The submission order of its oldest queued or paused request.
  uint64_t oldest_order() const {
    uint64_t o = UINT64_MAX;
    if (!queue.empty()) o = queue.front()->order;
    if (!paused.empty()) o = std::min(o, paused.front()->order);
    return o;
  }
};

}  // namespace myriad
