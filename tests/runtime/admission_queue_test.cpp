// AdmissionQueue: the scheduler actor's time-sliced active set, driven by
// hand (transitions) and by a seeded random workload against a fake worker
// (the invariants and the starvation bound of admission_queue.h).
#include "runtime/admission_queue.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <set>

#include "test_seed.h"

namespace myriad {
namespace {

using Ids = std::vector<uint64_t>;

AdmissionConfig config(int32_t slots, double quantum_ms, uint32_t max_in_worker, uint32_t max_waiting = 100) {
  AdmissionConfig c;
  c.num_slots = slots;
  c.quantum_ms = quantum_ms;
  c.max_in_worker = max_in_worker;
  c.max_waiting = max_waiting;
  return c;
}

SetPhase phase_of(const AdmissionQueue& q, const std::string& key) {
  for (const auto& s : q.sets())
    if (s.key == key) return s.phase;
  ADD_FAILURE() << "no set " << key;
  return SetPhase::kWaiting;
}

TEST(AdmissionQueue, OneAdapterIsFifoUpToTheWorkersRoom) {
  AdmissionQueue q(config(2, 50, 2));
  for (uint64_t id = 1; id <= 4; ++id) ASSERT_EQ(q.push(id, {"t/a@1"}, 1, 0), AdmissionQueue::Push::kQueued);
  EXPECT_EQ(q.admit(0), (Ids{1, 2}));
  EXPECT_EQ(q.admit(1), Ids{});  // the worker is full
  q.released(2);
  EXPECT_EQ(q.admit(2), (Ids{3}));
  EXPECT_EQ(q.push(3, {"t/a@1"}, 1, 2), AdmissionQueue::Push::kDuplicate);  // in the worker
  EXPECT_EQ(q.push(4, {"t/a@1"}, 1, 2), AdmissionQueue::Push::kDuplicate);  // waiting
  EXPECT_EQ(q.num_waiting(), 1u);
  EXPECT_EQ(q.num_in_worker(), 2u);
}

TEST(AdmissionQueue, AnAdapterWaitingForTheOnlySlotGetsItAfterTheQuantumAndTheDrain) {
  AdmissionQueue q(config(1, 50, 3));
  ASSERT_EQ(q.push(1, {"a"}, 1, 0), AdmissionQueue::Push::kQueued);
  ASSERT_EQ(q.push(2, {"a"}, 1, 0), AdmissionQueue::Push::kQueued);
  EXPECT_EQ(q.admit(0), (Ids{1, 2}));
  ASSERT_EQ(q.push(3, {"b"}, 1, 1), AdmissionQueue::Push::kQueued);
  ASSERT_EQ(q.push(4, {"a"}, 1, 2), AdmissionQueue::Push::kQueued);
  ASSERT_EQ(q.push(6, {"a"}, 1, 2), AdmissionQueue::Push::kQueued);
  EXPECT_EQ(q.admit(2), (Ids{4})) << "a is active (6 waits for room); b waits for a's quantum";
  EXPECT_EQ(q.next_decision_ms(2), 50.0);
  EXPECT_TRUE(std::isinf(q.next_decision_ms(50))) << "a quantum already past changes nothing by itself";
  EXPECT_EQ(q.admit(49), Ids{});
  EXPECT_EQ(phase_of(q, "a"), SetPhase::kActive);
  EXPECT_EQ(q.admit(50), Ids{}) << "a drains: what it has in the worker finishes first";
  EXPECT_EQ(phase_of(q, "a"), SetPhase::kDraining);
  EXPECT_EQ(q.rotations(), 1u);
  ASSERT_EQ(q.push(5, {"a"}, 1, 51), AdmissionQueue::Push::kQueued);
  q.released(1);
  q.released(2);
  EXPECT_EQ(q.admit(60), Ids{}) << "6 and 5 wait for a's next turn";
  q.released(4);
  EXPECT_EQ(q.admit(61), (Ids{3})) << "a drained: b takes the slot";
  EXPECT_EQ(phase_of(q, "b"), SetPhase::kActive);
  EXPECT_EQ(phase_of(q, "a"), SetPhase::kWaiting);
  q.released(3);
  EXPECT_EQ(q.admit(62), (Ids{6, 5})) << "b has nothing left: a is back at once, oldest first";
}

TEST(AdmissionQueue, AnActiveAdapterWithNothingWaitingGivesWayBeforeItsQuantum) {
  AdmissionQueue q(config(1, 1000, 8));
  ASSERT_EQ(q.push(1, {"a"}, 1, 0), AdmissionQueue::Push::kQueued);
  EXPECT_EQ(q.admit(0), (Ids{1}));
  ASSERT_EQ(q.push(2, {"b"}, 1, 1), AdmissionQueue::Push::kQueued);
  EXPECT_EQ(q.admit(1), Ids{});
  EXPECT_EQ(phase_of(q, "a"), SetPhase::kDraining);
  EXPECT_EQ(q.rotations(), 0u) << "giving way is not a rotation";
  q.released(1);
  EXPECT_EQ(q.admit(2), (Ids{2}));
}

TEST(AdmissionQueue, BaseModelRequestsNeedNoSlotAndKeepTheirOrder) {
  AdmissionQueue q(config(0, 50, 3));
  EXPECT_EQ(q.push(1, {"a"}, 1, 0), AdmissionQueue::Push::kTooManyAdapters);
  for (uint64_t id = 2; id <= 5; ++id) ASSERT_EQ(q.push(id, {}, 1, 0), AdmissionQueue::Push::kQueued);
  EXPECT_EQ(q.admit(0), (Ids{2, 3, 4}));

  AdmissionQueue mixed(config(1, 50, 8));
  ASSERT_EQ(mixed.push(1, {"a"}, 1, 0), AdmissionQueue::Push::kQueued);
  ASSERT_EQ(mixed.push(2, {"b"}, 1, 0), AdmissionQueue::Push::kQueued);
  ASSERT_EQ(mixed.push(3, {}, 1, 0), AdmissionQueue::Push::kQueued);
  EXPECT_EQ(mixed.admit(0), (Ids{1, 3})) << "b waits for the slot; the base request does not";
}

TEST(AdmissionQueue, AMixtureTakesOneSlotPerVersionAndSharesTheOnesAlreadyHeld) {
  AdmissionQueue q(config(2, 50, 8));
  EXPECT_EQ(q.push(1, {"a", "b", "c"}, 1, 0), AdmissionQueue::Push::kTooManyAdapters);
  ASSERT_EQ(q.push(2, {"a"}, 1, 0), AdmissionQueue::Push::kQueued);
  ASSERT_EQ(q.push(3, {"b", "a", "a"}, 1, 0), AdmissionQueue::Push::kQueued);  // the set a+b
  ASSERT_EQ(q.push(4, {"c"}, 1, 0), AdmissionQueue::Push::kQueued);
  EXPECT_EQ(q.admit(0), (Ids{2, 3})) << "a+b needs only b's slot beside a";
  EXPECT_EQ(q.slots_held(), 2);
  EXPECT_EQ(phase_of(q, "a+b"), SetPhase::kActive);
  EXPECT_EQ(phase_of(q, "c"), SetPhase::kWaiting);
}

TEST(AdmissionQueue, TicketsAreStrictFifoSoAMixtureIsNotOvertaken) {
  AdmissionQueue q(config(2, 10, 8));
  ASSERT_EQ(q.push(1, {"a"}, 1, 0), AdmissionQueue::Push::kQueued);
  EXPECT_EQ(q.admit(0), (Ids{1}));
  ASSERT_EQ(q.push(2, {"x", "y"}, 1, 1), AdmissionQueue::Push::kQueued);  // needs both slots
  ASSERT_EQ(q.push(3, {"b"}, 1, 2), AdmissionQueue::Push::kQueued);       // would fit the free one
  ASSERT_EQ(q.push(4, {"a"}, 1, 2), AdmissionQueue::Push::kQueued);
  EXPECT_EQ(q.admit(2), (Ids{4})) << "b stays behind the mixture's ticket";
  EXPECT_EQ(phase_of(q, "b"), SetPhase::kWaiting);
  EXPECT_EQ(q.admit(10), Ids{});
  q.released(1);
  q.released(4);
  EXPECT_EQ(q.admit(11), (Ids{2}));
  EXPECT_EQ(phase_of(q, "x+y"), SetPhase::kActive);
}

TEST(AdmissionQueue, FullCancelAndHandingBackWhatWaits) {
  AdmissionQueue q(config(1, 50, 1, /*max_waiting=*/3));
  ASSERT_EQ(q.push(1, {"a"}, 1, 0), AdmissionQueue::Push::kQueued);
  EXPECT_EQ(q.admit(0), (Ids{1}));
  ASSERT_EQ(q.push(2, {"b"}, 1, 1), AdmissionQueue::Push::kQueued);
  ASSERT_EQ(q.push(3, {}, 1, 1), AdmissionQueue::Push::kQueued);
  ASSERT_EQ(q.push(4, {"a"}, 1, 1), AdmissionQueue::Push::kQueued);
  EXPECT_EQ(q.push(5, {"a"}, 1, 1), AdmissionQueue::Push::kFull);
  EXPECT_FALSE(q.cancel(1)) << "in the worker: not here to cancel";
  EXPECT_TRUE(q.cancel(2));
  EXPECT_FALSE(q.cancel(2));
  EXPECT_EQ(q.take_waiting(), (Ids{3, 4}));
  EXPECT_EQ(q.num_waiting(), 0u);
  q.released(1);
  EXPECT_EQ(q.admit(2), Ids{});
  EXPECT_TRUE(q.sets().empty());
}

TEST(AdmissionQueue, WaitingTokensCountOnlyWhatWaitsHere) {
  AdmissionQueue q(config(1, 50, 8));
  ASSERT_EQ(q.push(1, {"a"}, 10, 0), AdmissionQueue::Push::kQueued);
  ASSERT_EQ(q.push(2, {"b"}, 20, 0), AdmissionQueue::Push::kQueued);
  ASSERT_EQ(q.push(3, {"b"}, 40, 0), AdmissionQueue::Push::kQueued);
  EXPECT_EQ(q.waiting_tokens(), 70u);
  EXPECT_EQ(q.admit(0), (Ids{1}));
  EXPECT_EQ(q.waiting_tokens(), 60u) << "1 is in the worker: its tokens are the engine's to report";
  EXPECT_TRUE(q.cancel(2));
  EXPECT_EQ(q.waiting_tokens(), 40u);
  EXPECT_EQ(q.take_waiting(), (Ids{3}));
  EXPECT_EQ(q.waiting_tokens(), 0u);
}

TEST(AdmissionQueue, WithoutTimeslicingItIsOneFifo) {
  AdmissionConfig c = config(1, 50, 8);
  c.timeslice = false;
  AdmissionQueue q(c);
  ASSERT_EQ(q.push(1, {"a"}, 1, 0), AdmissionQueue::Push::kQueued);
  ASSERT_EQ(q.push(2, {"b"}, 1, 0), AdmissionQueue::Push::kQueued);
  ASSERT_EQ(q.push(3, {"c"}, 1, 0), AdmissionQueue::Push::kQueued);
  EXPECT_EQ(q.admit(0), (Ids{1, 2, 3})) << "the worker's engine time-slices them";
  EXPECT_TRUE(std::isinf(q.next_decision_ms(0)));
}

// A seeded random workload against a fake worker that ends each request
// within D ms of its admission. At every admit() (every Δ = 1 ms): the slots
// held never exceed N, the worker never holds more than max_in_worker, each
// admitted request's set is ACTIVE (or the base model), every request is
// admitted or cancelled at most once, and no set waits longer than the bound
// of admission_queue.h.
TEST(AdmissionQueue, PropertyNoSetWaitsLongerThanTheBound) {
  const uint64_t seed = myriad::testing::test_seed();
  SCOPED_TRACE(myriad::testing::seed_note(seed));
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 30; ++round) {
    const int32_t slots = 1 + int32_t(rng() % 4);
    const double quantum = double(rng() % 3) * 10.0;  // 0, 10, 20
    const uint32_t room = 1 + uint32_t(rng() % 8);
    const double d_max = 1 + double(rng() % 12);
    AdmissionQueue q(config(slots, quantum, room, 10000));
    const std::vector<std::string> pool = {"a", "b", "c", "d", "e", "f", "g"};
    // One turn of every slot: a just-activated set's first request in, its
    // quantum, the drain, each noticed within Δ = 1 ms.
    const double turn = std::ceil(double(slots) / room) * (d_max + 1.0) + quantum + d_max + 2.0;
    SCOPED_TRACE("round " + std::to_string(round) + ": N=" + std::to_string(slots) +
                 " Q=" + std::to_string(quantum) + " room=" + std::to_string(room) +
                 " D=" + std::to_string(d_max));

    std::map<uint64_t, std::string> key_of;     // id -> its set's key
    std::map<uint64_t, double> ends_at;          // in the worker: when the fake worker ends it
    std::set<uint64_t> admitted, cancelled;
    std::map<std::string, double> waiting_since;  // a set waiting for activation: its deadline
    uint64_t next_id = 1;
    double next_at = std::numeric_limits<double>::infinity();  // the decision the queue asked for
    for (int now_i = 0; now_i < 1000 || q.num_waiting() + q.num_in_worker() > 0; ++now_i) {
      ASSERT_LT(now_i, 1000000) << "never drained";
      const double now = double(now_i);
      bool changed = false;
      // Arrivals for the first second (one every 3 ms on average), then the queue drains.
      if (now_i < 1000) {
        const int arrivals = rng() % 3 == 0 ? 1 : 0;
        for (int k = 0; k < arrivals; ++k) {
          std::vector<std::string> versions;
          const uint64_t kind = rng() % 10;
          if (kind == 0) {
          } else if (kind == 1 && slots >= 2) {
            std::string x = pool[rng() % pool.size()], y = pool[rng() % pool.size()];
            versions = {x, y};
          } else {
            versions = {pool[rng() % pool.size()]};
          }
          std::vector<std::string> sorted = versions;
          std::sort(sorted.begin(), sorted.end());
          sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
          std::string key;
          for (const auto& v : sorted) key += (key.empty() ? "" : "+") + v;
          const uint64_t id = next_id++;
          ASSERT_EQ(q.push(id, versions, 1, now), AdmissionQueue::Push::kQueued);
          key_of[id] = key;
          changed = true;
        }
      }
      if (rng() % 20 == 0 && next_id > 1) {  // a client gives up on a random request
        const uint64_t id = 1 + rng() % (next_id - 1);
        if (q.cancel(id)) {
          changed = true;
          ASSERT_FALSE(admitted.count(id)) << "cancelled after it was admitted: " << id;
          ASSERT_TRUE(cancelled.insert(id).second) << "cancelled twice: " << id;
        }
      }
      for (auto it = ends_at.begin(); it != ends_at.end();) {
        if (it->second <= now) {
          q.released(it->first);
          changed = true;
          it = ends_at.erase(it);
        } else {
          ++it;
        }
      }
      // As the actor calls it: on an arrival, a cancel or a release, and at
      // the time the queue asked for; otherwise nothing is decided.
      Ids in;
      if (changed || now >= next_at) {
        in = q.admit(now);
        next_at = q.next_decision_ms(now);
      }
      std::map<std::string, SetPhase> phase;
      for (const auto& s : q.sets()) phase[s.key] = s.phase;
      for (uint64_t id : in) {
        ASSERT_TRUE(admitted.insert(id).second) << "admitted twice: " << id;
        ASSERT_FALSE(cancelled.count(id)) << "admitted after its cancel: " << id;
        const std::string& key = key_of.at(id);
        ASSERT_TRUE(key.empty() || phase[key] == SetPhase::kActive) << id << " of " << key << " is not active";
        ends_at[id] = now + 1 + double(rng() % uint64_t(d_max));
      }
      ASSERT_LE(q.slots_held(), slots);
      ASSERT_LE(q.num_in_worker(), room);
      ASSERT_EQ(q.num_in_worker(), ends_at.size());
      // The bound: a set waits while it has requests here and is not ACTIVE
      // (DRAINING included: its next turn counts from its rotation); m sets
      // hold tickets ahead of it when it starts.
      const auto views = q.sets();
      for (const auto& s : views) {
        if (s.key.empty()) continue;
        const bool waits = s.phase != SetPhase::kActive && s.waiting > 0;
        if (!waits) {
          waiting_since.erase(s.key);
          continue;
        }
        double ahead = 0;
        for (const auto& o : views) ahead += (o.ticket != 0 && o.ticket < s.ticket) ? 1 : 0;
        const double deadline = now + (ahead + 1) * turn + d_max + 2.0;
        auto [it, fresh] = waiting_since.emplace(s.key, deadline);
        ASSERT_LE(now, it->second) << s.key << " waited past its bound";
      }
      for (auto it = waiting_since.begin(); it != waiting_since.end();) {
        bool present = false;
        for (const auto& s : q.sets()) present = present || s.key == it->first;
        it = present ? std::next(it) : waiting_since.erase(it);
      }
    }
    std::string dump;
    for (const auto& s : q.sets())
      dump += " [" + s.key + " " + set_phase_name(s.phase) + " waiting " + std::to_string(s.waiting) +
              " in " + std::to_string(s.in_worker) + " ticket " + std::to_string(s.ticket) + "]";
    EXPECT_EQ(q.num_waiting(), 0u) << "everything ran once arrivals stopped:" << dump << " held "
                                   << q.slots_held() << " in worker " << q.num_in_worker();
    EXPECT_EQ(admitted.size() + cancelled.size(), next_id - 1) << "every request admitted or cancelled once";
  }
}

}  // namespace
}  // namespace myriad
