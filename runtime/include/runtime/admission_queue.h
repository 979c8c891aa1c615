// The time-sliced active set in front of one worker: the pure core of the
// scheduler actor. Requests wait here, queued per adapter set (what a
// request names: one adapter version, or the experts of a mixture), and only
// the requests of the *active* sets enter the worker. At most `num_slots`
// distinct adapter versions belong to the active and draining sets together,
// so the worker's engine never holds more adapters than it has slots, and
// the engine's own scheduler only loads, batches and finishes what this
// chose. Base-model requests need no slot and always may enter.
//
// Set phases (a set exists while it has requests here or in the worker):
//
//   (new) ─(1) queued, ticket──> WAITING ─(2) head of the tickets, its
//                                  ^   │     versions fit the free slots──> ACTIVE
//                                  │   │                                     │ │
//     (4) drained, requests here:  │   └─(6) nothing here or in the worker─> gone
//         a new ticket at (3)      │                                         │ │
//                                  │    (3) others wait, and its quantum ────┘ │
//                              DRAINING <─  passed or nothing of it waits here │
//                                  │                                           │
//                                  └─(5) drained, nothing here ─> gone <───────┘ (6)
//
//  ACTIVE: its requests enter the worker (oldest first across the active
//  sets and the base model) while fewer than `max_in_worker` are there.
//  DRAINING: nothing more of it enters; what is in the worker finishes; its
//  versions count against the slots until then. Tickets are strict FIFO: a
//  set that does not fit blocks the ones behind it (so a mixture is never
//  starved by single adapters).
//
// Starvation bound. A set holds its slots at most
//     C = ceil(N / R)·(D + Δ) + Q + D + 2Δ
// (N slots, R = max_in_worker, quantum Q, D the longest a request stays in
// the worker, Δ the longest time between two admit() calls while sets wait:
// the caller calls again by next_decision_ms() and whenever a request ends):
// its first request in (sets just made ACTIVE go first), its quantum, the
// drain, each noticed within Δ. Tickets are strict FIFO, so every slot held
// when a set becomes the head of the tickets is free for it within C, and a
// set with m tickets ahead of it when it starts waiting (a rotated set: when
// it is rotated) is ACTIVE within (m + 1)·C + D + 2Δ (the last term: its own
// drain). With single-adapter sets N slots turn over side by side and the
// wait is nearer ceil(m / N)·C. The property test asserts the bound at
// every admit().
// With `timeslice` false it is one FIFO over every set (no active set: the
// worker's engine time-slices whatever it holds), for comparison.
// Not thread-safe: one actor owns it. Time is passed in.
#pragma once

#include <cstdint>
#include <deque>
#include <limits>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace myriad {

struct AdmissionConfig {
  int32_t num_slots = 4;        // N: the worker's adapter slots (0: base-model requests only)
  double quantum_ms = 50.0;     // Q: an active set gives way to waiting ones after this long
  uint32_t max_in_worker = 64;  // requests inside the worker at once
  uint32_t max_waiting = 1024;  // requests waiting here; more are refused (overloaded)
  bool timeslice = true;        // false: one FIFO, no active set
};

enum class SetPhase : uint8_t { kWaiting, kActive, kDraining };
const char* set_phase_name(SetPhase p);  // "waiting", "active", "draining"

class AdmissionQueue {
 public:
  explicit AdmissionQueue(AdmissionConfig config);
  ~AdmissionQueue();
  AdmissionQueue(const AdmissionQueue&) = delete;
  AdmissionQueue& operator=(const AdmissionQueue&) = delete;

  enum class Push : uint8_t {
    kQueued,           // waits here until admit() lets it in
    kFull,             // max_waiting requests already wait: refuse it (overloaded)
    kDuplicate,        // the id waits here or is in the worker
    kTooManyAdapters,  // its set has more distinct versions than the worker has slots
  };
  // `versions`: the request's adapter versions (any unique strings, e.g.
  // AdapterId::to_string()); empty = the base model. `tokens`: its work
  // (prompt to prefill plus max_tokens), counted in waiting_tokens() while
  // it waits here, so a load report shows the backlog placement balances.
  Push push(uint64_t id, std::vector<std::string> versions, uint64_t tokens, double now_ms);
  // True when it waited here and is now gone (the caller answers it);
  // false when unknown or already in the worker.
  bool cancel(uint64_t id);
  // A request in the worker ended (its final event). Other ids are ignored.
  void released(uint64_t id);
  // Decides the active set (rotation at the quantum, draining sets that
  // ended) and returns the requests to send into the worker now, oldest
  // first. Valid until the next call.
  const std::vector<uint64_t>& admit(double now_ms);
  // When admit() must run again though nothing arrives or ends: the next
  // end of an active set's quantum after `now_ms` while others wait;
  // +infinity when none (a quantum already past changes nothing until a
  // request arrives or ends).
  double next_decision_ms(double now_ms) const;
  // Everything waiting here, oldest first, removed (a leaving worker hands
  // them back to its gateway).
  std::vector<uint64_t> take_waiting();

  const AdmissionConfig& config() const { return config_; }
  size_t num_waiting() const { return waiting_ids_.size(); }
  uint64_t waiting_tokens() const { return waiting_tokens_; }
  size_t num_in_worker() const { return in_worker_ids_.size(); }
  bool waits(uint64_t id) const { return waiting_ids_.count(id) > 0; }
  bool in_worker(uint64_t id) const { return in_worker_ids_.count(id) > 0; }
  uint64_t rotations() const { return rotations_; }  // sets sent to DRAINING at (3)
  int32_t slots_held() const { return int32_t(held_.size()); }  // versions of ACTIVE and DRAINING sets

  struct SetView {
    std::string key;  // the versions joined by '+'; "" = the base model
    SetPhase phase = SetPhase::kWaiting;
    size_t waiting = 0, in_worker = 0;
    double active_since_ms = 0;  // while ACTIVE
    uint64_t ticket = 0;         // while WAITING with requests here
  };
  // Every set, the base model's first when it has requests (tests, reports).
  std::vector<SetView> sets() const;

 private:
  struct Set;
  struct Waiter {
    uint64_t id = 0;
    uint64_t order = 0;  // arrival order, across sets
    uint64_t tokens = 0;
  };

  Set* set_for(std::vector<std::string> versions);
  void hold(Set& s);
  void unhold(Set& s);
  size_t slots_needed(const Set& s) const;  // its versions no other set holds
  void drain(Set& s, double now_ms, bool rotated);
  void settle(double now_ms);  // DRAINING sets that ended, empty sets dropped
  void activate_waiters(double now_ms);
  void admit_oldest();
  void forget_if_empty(Set& s);

  AdmissionConfig config_;
  std::unordered_map<std::string, std::unique_ptr<Set>> sets_;
  std::unique_ptr<Set> base_;
  std::unordered_map<uint64_t, Set*> waiting_ids_;
  std::unordered_map<uint64_t, Set*> in_worker_ids_;
  std::unordered_map<std::string, int32_t> held_;  // version -> ACTIVE/DRAINING sets naming it
  uint64_t waiting_tokens_ = 0;
  uint64_t next_order_ = 1;
  uint64_t next_ticket_ = 1;
  uint64_t rotations_ = 0;
  std::vector<Set*> scratch_;
  std::vector<uint64_t> out_;
};

}  // namespace myriad
