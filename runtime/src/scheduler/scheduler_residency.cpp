// Adapter residency: a request's adapter set and its members (one per
// AdapterId), fetches and their answers, the slot books (which member holds
// which slot, which sets hold it), loads and evictions.
#include "scheduler_state.h"

namespace myriad {

Scheduler::Member* Scheduler::member_for(const AdapterId& id, double now_ms) {
  auto it = members_.find(id);
  if (it != members_.end()) return it->second.get();
  auto m = std::make_unique<Member>();
  m->id = id;
  m->fetch_since_ms = now_ms;
  Member* p = m.get();
  members_.emplace(id, std::move(m));
  fetches_.push_back(id);
  ++stats_.fetches;
  return p;
}

void Scheduler::forget_if_unused(Member& m) {
  if (m.sets == 0 && m.holders == 0 && m.slot < 0) members_.erase(m.id);  // destroys m
}

// The set of the request's adapters (created on first use), with `s`'s
// mixing weights in the set's member order.
Scheduler::AdapterState* Scheduler::set_for(const std::vector<AdapterUse>& adapters, Sequence& s) {
  std::array<const AdapterUse*, kMaxAdaptersPerRow> sorted{};
  const size_t n = adapters.size();
  for (size_t i = 0; i < n; ++i) sorted[i] = &adapters[i];
  // Insertion sort of at most kMaxAdaptersPerRow entries (std::sort over a
  // prefix of the array trips GCC 12's -Warray-bounds in the ASan build).
  for (size_t i = 1; i < n; ++i)
    for (size_t j = i; j > 0 && sorted[j]->id < sorted[j - 1]->id; --j) std::swap(sorted[j], sorted[j - 1]);
  std::string key;
  for (size_t i = 0; i < n; ++i) {
    if (i) key += '+';
    key += sorted[i]->id.to_string();
    s.weights[i] = sorted[i]->weight;
    s.member_of_adapter[size_t(sorted[i] - adapters.data())] = int8_t(i);
  }
  auto it = adapters_.find(key);
  if (it != adapters_.end()) return it->second.get();
  auto a = std::make_unique<AdapterState>();
  for (size_t i = 0; i < n; ++i) {
    Member* m = member_for(sorted[i]->id, now_ms_);
    ++m->sets;
    a->members.push_back(m);
    a->ids.push_back(m->id);
  }
  a->key = key;
  AdapterState* p = a.get();
  adapters_.emplace(std::move(key), std::move(a));
  live_.push_back(p);
  return p;
}

void Scheduler::mark_waiting(AdapterState& a, double now_ms) {
  if (a.is_base() || a.ticket != 0 || !a.has_pending() || !a.fetched()) return;
  if (a.phase != AdapterPhase::kIdle && a.phase != AdapterPhase::kDraining) return;
  a.ticket = next_ticket_++;
  a.waiting_since_ms = now_ms;
}

// ---------------------------------------------------------------- adapters

int32_t Scheduler::free_slot() const {
  for (size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i] == nullptr) return int32_t(i);
  return -1;
}

size_t Scheduler::num_free_slots() const { return size_t(std::count(slots_.begin(), slots_.end(), nullptr)); }

size_t Scheduler::slots_needed(const AdapterState& a) const {
  size_t n = 0;
  for (const Member* m : a.members) n += m->slot < 0;
  return n;
}

// Slots that evicting `a` would free: members no other set holds.
size_t Scheduler::slots_freed_by(const AdapterState& a) const {
  size_t n = 0;
  for (const Member* m : a.members) n += m->holders == 1;
  return n;
}

void Scheduler::free_member_slot(Member& m) {
  out_.evictions.push_back({m.slot, m.id});
  slots_[size_t(m.slot)] = nullptr;
  m.slot = -1;
  m.state = Member::State::kInHost;
  ++stats_.evictions;
}

// Slots no set holds any more are evicted; a slot still loading waits for
// its load to end (the executor reports it), so a load is never torn.
void Scheduler::release_unheld_slots() {
  for (Member* m : slots_) {
    if (m == nullptr || m->holders > 0 || m->state != Member::State::kInSlot) continue;
    free_member_slot(*m);
    forget_if_unused(*m);
  }
}

void Scheduler::evict(AdapterState& a) {
  MYRIAD_CHECK(a.pins == 0, "evicting adapter " + a.key + " pinned by " + std::to_string(a.pins) + " sequences");
  for (Member* m : a.members) --m->holders;
  a.phase = AdapterPhase::kIdle;
  release_unheld_slots();
}

void Scheduler::activate(AdapterState& a, double now_ms) {
  a.phase = AdapterPhase::kActive;
  a.active_since_ms = now_ms;
  a.active_steps = 0;
}

void Scheduler::assign_slots(AdapterState& a, double now_ms) {
  a.phase = AdapterPhase::kLoading;
  a.ticket = 0;  // waiting_since_ms kept: the wait lasts until it is Active
  for (Member* m : a.members) {
    ++m->holders;
    if (m->slot >= 0) continue;  // resident for another set: shared
    const int32_t slot = free_slot();
    MYRIAD_CHECK(slot >= 0, "assigning slots to " + a.key + " without a free slot");
    m->slot = slot;
    m->state = Member::State::kLoading;
    slots_[size_t(slot)] = m;
    loading_slots_.push_back(slot);
    out_.loads.push_back({slot, m->id, m->weights});
    ++stats_.loads;
  }
  if (a.all_in_slot()) activate(a, now_ms);
}

// Assigns slots to waiters_[from...] in order while the next one fits;
// returns the first not assigned.
size_t Scheduler::assign_waiters(size_t from, double now_ms) {
  size_t w = from;
  while (w < waiters_.size() && slots_needed(*waiters_[w]) <= num_free_slots()) assign_slots(*waiters_[w++], now_ms);
  return w;
}

void Scheduler::on_adapter_fetched(const AdapterId& id, std::shared_ptr<const LoraWeights> weights, double now_ms) {
  auto it = members_.find(id);
  if (it == members_.end() || it->second->state != Member::State::kFetching) return;
  Member& m = *it->second;
  m.weights = std::move(weights);
  m.state = Member::State::kInHost;
  for (AdapterState* a : live_)
    if (a->has(&m)) mark_waiting(*a, now_ms);
}

void Scheduler::fail_pending(AdapterState& a, const Error& e, double now_ms) {
  while (!a.paused.empty()) fail(*a.paused.front(), e, now_ms);
  while (!a.queue.empty()) fail(*a.queue.front(), e, now_ms);
}

void Scheduler::on_fetch_failed(const AdapterId& id, const Error& error, double now_ms) {
  auto it = members_.find(id);
  if (it == members_.end() || it->second->state != Member::State::kFetching) return;
  Member* m = it->second.get();
  ++stats_.fetch_failures;
  const Error e = make_error(error.code, "fetching adapter " + id.to_string() + ": " + error.message);
  // Its sets have never run (a set runs only once fetched): failing their
  // queues leaves them empty, and forgetting them forgets the member, so a
  // later request fetches it afresh.
  for (AdapterState* a : live_)
    if (a->has(m)) fail_pending(*a, e, now_ms);
  forget_unused();
}

void Scheduler::on_adapter_ready(int32_t slot, double now_ms) {
  MYRIAD_CHECK(slot >= 0 && size_t(slot) < slots_.size() && slots_[size_t(slot)] != nullptr &&
                   slots_[size_t(slot)]->state == Member::State::kLoading,
               "on_adapter_ready(" + std::to_string(slot) + ") for a slot that is not loading");
  Member& m = *slots_[size_t(slot)];
  m.state = Member::State::kInSlot;
  loading_slots_.erase(std::find(loading_slots_.begin(), loading_slots_.end(), slot));
  for (AdapterState* a : live_)
    if (a->phase == AdapterPhase::kLoading && a->has(&m) && a->all_in_slot()) activate(*a, now_ms);
}

void Scheduler::on_load_failed(int32_t slot, const Error& error, double now_ms) {
  MYRIAD_CHECK(slot >= 0 && size_t(slot) < slots_.size() && slots_[size_t(slot)] != nullptr &&
                   slots_[size_t(slot)]->state == Member::State::kLoading,
               "on_load_failed(" + std::to_string(slot) + ") for a slot that is not loading");
  Member& m = *slots_[size_t(slot)];
  loading_slots_.erase(std::find(loading_slots_.begin(), loading_slots_.end(), slot));
  slots_[size_t(slot)] = nullptr;
  m.slot = -1;
  m.state = Member::State::kInHost;
  ++stats_.load_failures;
  const Error e = make_error(error.code, "loading adapter " + m.id.to_string() + " into slot " + std::to_string(slot) +
                                             ": " + error.message);
  // The sets that were loading it give up their other slots (evicted by the
  // next schedule() once no set holds them) and fail their queues.
  for (AdapterState* a : live_) {
    if (a->phase != AdapterPhase::kLoading || !a->has(&m)) continue;
    for (Member* o : a->members) --o->holders;
    a->phase = AdapterPhase::kIdle;
    fail_pending(*a, e, now_ms);
  }
  MYRIAD_CHECK(m.holders == 0, "adapter " + m.id.to_string() + " still held after its load failed");
}

const AdapterId* Scheduler::slot_adapter(int32_t slot) const {
  if (slot < 0 || size_t(slot) >= slots_.size() || slots_[size_t(slot)] == nullptr) return nullptr;
  return &slots_[size_t(slot)]->id;
}

}  // namespace myriad
