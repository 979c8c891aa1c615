#include "runtime/admission_queue.h"

#include <algorithm>

namespace myriad {

const char* set_phase_name(SetPhase p) {
  switch (p) {
    case SetPhase::kWaiting: return "waiting";
    case SetPhase::kActive: return "active";
    case SetPhase::kDraining: return "draining";
  }
  return "?";
}

struct AdmissionQueue::Set {
  std::string key;
  std::vector<std::string> versions;  // sorted, distinct; empty = the base model
  std::deque<Waiter> queue;
  size_t in_worker = 0;
  SetPhase phase = SetPhase::kWaiting;
  double active_since_ms = 0;
  uint64_t admitted = 0;  // requests let in since it became ACTIVE: >= 1 before a rotation (progress at Q = 0)
  uint64_t ticket = 0;
  bool is_base() const { return versions.empty(); }
};

AdmissionQueue::AdmissionQueue(AdmissionConfig config) : config_(config), base_(std::make_unique<Set>()) {
  base_->phase = SetPhase::kActive;
  base_->admitted = 1;  // never "new": it holds no slot
}

AdmissionQueue::~AdmissionQueue() = default;

AdmissionQueue::Set* AdmissionQueue::set_for(std::vector<std::string> versions) {
  if (versions.empty()) return base_.get();
  std::string key;
  for (const std::string& v : versions) key += (key.empty() ? "" : "+") + v;
  auto& slot = sets_[key];
  if (!slot) {
    slot = std::make_unique<Set>();
    slot->key = key;
    slot->versions = std::move(versions);
  }
  return slot.get();
}

AdmissionQueue::Push AdmissionQueue::push(uint64_t id, std::vector<std::string> versions, uint64_t tokens,
                                           double /*now_ms*/) {
  if (waits(id) || in_worker(id)) return Push::kDuplicate;
  std::sort(versions.begin(), versions.end());
  versions.erase(std::unique(versions.begin(), versions.end()), versions.end());
  if (versions.size() > size_t(std::max(config_.num_slots, 0))) return Push::kTooManyAdapters;
  if (waiting_ids_.size() >= config_.max_waiting) return Push::kFull;
  Set* s = set_for(std::move(versions));
  s->queue.push_back(Waiter{id, next_order_++, tokens});
  waiting_ids_[id] = s;
  waiting_tokens_ += tokens;
  if (!s->is_base() && s->phase != SetPhase::kActive && s->ticket == 0) s->ticket = next_ticket_++;
  return Push::kQueued;
}

void AdmissionQueue::forget_if_empty(Set& s) {
  if (s.is_base() || !s.queue.empty() || s.in_worker > 0 || s.phase != SetPhase::kWaiting) return;
  sets_.erase(s.key);  // s is gone
}

bool AdmissionQueue::cancel(uint64_t id) {
  auto it = waiting_ids_.find(id);
  if (it == waiting_ids_.end()) return false;
  Set* s = it->second;
  waiting_ids_.erase(it);
  auto w = std::find_if(s->queue.begin(), s->queue.end(), [id](const Waiter& x) { return x.id == id; });
  waiting_tokens_ -= w->tokens;
  s->queue.erase(w);
  if (s->queue.empty() && s->phase != SetPhase::kActive) s->ticket = 0;
  forget_if_empty(*s);
  return true;
}

void AdmissionQueue::released(uint64_t id) {
  auto it = in_worker_ids_.find(id);
  if (it == in_worker_ids_.end()) return;
  Set* s = it->second;
  in_worker_ids_.erase(it);
  --s->in_worker;
  forget_if_empty(*s);  // a FIFO's set; ACTIVE and DRAINING ones settle in admit()
}

void AdmissionQueue::hold(Set& s) {
  for (const std::string& v : s.versions) ++held_[v];
}

void AdmissionQueue::unhold(Set& s) {
  for (const std::string& v : s.versions)
    if (auto it = held_.find(v); it != held_.end() && --it->second == 0) held_.erase(it);
}

size_t AdmissionQueue::slots_needed(const Set& s) const {
  size_t n = 0;
  for (const std::string& v : s.versions) n += held_.count(v) == 0 ? 1 : 0;
  return n;
}

void AdmissionQueue::drain(Set& s, double /*now_ms*/, bool rotated) {
  s.phase = SetPhase::kDraining;
  if (rotated) ++rotations_;
  if (!s.queue.empty() && s.ticket == 0) s.ticket = next_ticket_++;  // behind every set already waiting
}

void AdmissionQueue::settle(double /*now_ms*/) {
  scratch_.clear();
  for (auto& [key, s] : sets_) {
    const bool drained = s->phase == SetPhase::kDraining && s->in_worker == 0;
    const bool idle = s->phase == SetPhase::kActive && s->queue.empty() && s->in_worker == 0;
    if (drained || idle) scratch_.push_back(s.get());
  }
  for (Set* s : scratch_) {
    unhold(*s);
    s->phase = SetPhase::kWaiting;
    if (s->queue.empty()) s->ticket = 0;
    forget_if_empty(*s);
  }
}

void AdmissionQueue::activate_waiters(double now_ms) {
  std::vector<Set*> waiters;
  for (auto& [key, s] : sets_)
    if (s->phase == SetPhase::kWaiting && !s->queue.empty()) waiters.push_back(s.get());
  std::sort(waiters.begin(), waiters.end(), [](const Set* x, const Set* y) { return x->ticket < y->ticket; });
  size_t free = size_t(config_.num_slots) - held_.size();
  size_t i = 0;
  for (; i < waiters.size(); ++i) {
    Set& w = *waiters[i];
    const size_t need = slots_needed(w);
    if (need > free) break;  // strict FIFO: the head waits for room, the rest behind it
    hold(w);
    free -= need;
    w.phase = SetPhase::kActive;
    w.active_since_ms = now_ms;
    w.admitted = 0;
    w.ticket = 0;
  }
  if (i == waiters.size()) return;

  // Room for the waiters left: what draining sets will free, then sets
  // giving way (nothing of theirs waits here, or their quantum passed).
  // Counted on a copy of the holds, since sets may share versions: a
  // version frees when the last set holding it drains.
  size_t wanted = 0;
  for (size_t k = i; k < waiters.size(); ++k) wanted += slots_needed(*waiters[k]);
  std::unordered_map<std::string, int32_t> left = held_;
  auto frees = [&left](const Set& s) {
    size_t n = 0;
    for (const std::string& v : s.versions) n += --left[v] == 0 ? 1 : 0;
    return n;
  };
  size_t coming = free;
  for (auto& [key, s] : sets_)
    if (s->phase == SetPhase::kDraining) coming += frees(*s);
  if (wanted <= coming) return;
  size_t need = wanted - coming;
  scratch_.clear();
  for (auto& [key, s] : sets_)
    if (s->phase == SetPhase::kActive) scratch_.push_back(s.get());
  // Those with nothing waiting first (they only finish what runs), then the
  // longest active; ties by key so the order is the same on every run.
  std::sort(scratch_.begin(), scratch_.end(), [](const Set* x, const Set* y) {
    if (x->queue.empty() != y->queue.empty()) return x->queue.empty();
    if (x->active_since_ms != y->active_since_ms) return x->active_since_ms < y->active_since_ms;
    return x->key < y->key;
  });
  for (Set* s : scratch_) {
    if (need == 0) break;
    const bool gives_way = s->queue.empty();
    const bool expired = now_ms - s->active_since_ms >= config_.quantum_ms && s->admitted > 0;
    if (!gives_way && !expired) continue;
    drain(*s, now_ms, /*rotated=*/!gives_way);
    need -= std::min(need, frees(*s));
  }
}

void AdmissionQueue::admit_oldest() {
  scratch_.clear();
  if (!base_->queue.empty()) scratch_.push_back(base_.get());
  for (auto& [key, s] : sets_)
    if (!s->queue.empty() && (!config_.timeslice || s->phase == SetPhase::kActive)) scratch_.push_back(s.get());
  while (in_worker_ids_.size() < config_.max_in_worker) {
    Set* best = nullptr;
    // A set just made ACTIVE goes first (its quantum can pass only after
    // it got a request in), then the oldest request.
    auto before = [](const Set* x, const Set* y) {
      if ((x->admitted == 0) != (y->admitted == 0)) return x->admitted == 0;
      return x->queue.front().order < y->queue.front().order;
    };
    for (Set* s : scratch_)
      if (!s->queue.empty() && (!best || before(s, best))) best = s;
    if (!best) break;
    const Waiter w = best->queue.front();
    best->queue.pop_front();
    waiting_ids_.erase(w.id);
    waiting_tokens_ -= w.tokens;
    in_worker_ids_[w.id] = best;
    ++best->in_worker;
    ++best->admitted;
    if (best->queue.empty() && best->phase != SetPhase::kActive) best->ticket = 0;
    out_.push_back(w.id);
  }
}

const std::vector<uint64_t>& AdmissionQueue::admit(double now_ms) {
  out_.clear();
  if (config_.timeslice) {
    settle(now_ms);
    activate_waiters(now_ms);
    // Sets sent to drain with nothing in the worker free their slots at once.
    const size_t held = held_.size();
    settle(now_ms);
    if (held_.size() < held) activate_waiters(now_ms);
  }
  admit_oldest();
  return out_;
}

double AdmissionQueue::next_decision_ms(double now_ms) const {
  constexpr double kNever = std::numeric_limits<double>::infinity();
  if (!config_.timeslice) return kNever;
  bool waiters = false;
  for (const auto& [key, s] : sets_) waiters = waiters || (s->phase != SetPhase::kActive && !s->queue.empty());
  if (!waiters) return kNever;
  double at = kNever;
  for (const auto& [key, s] : sets_)
    if (s->phase == SetPhase::kActive && s->admitted > 0 && s->active_since_ms + config_.quantum_ms > now_ms)
      at = std::min(at, s->active_since_ms + config_.quantum_ms);
  return at;
}

std::vector<uint64_t> AdmissionQueue::take_waiting() {
  std::vector<Waiter> all;
  all.reserve(waiting_ids_.size());
  for (const Waiter& w : base_->queue) all.push_back(w);
  for (auto& [key, s] : sets_)
    for (const Waiter& w : s->queue) all.push_back(w);
  std::sort(all.begin(), all.end(), [](const Waiter& x, const Waiter& y) { return x.order < y.order; });
  base_->queue.clear();
  scratch_.clear();
  for (auto& [key, s] : sets_) {
    s->queue.clear();
    if (s->phase != SetPhase::kActive) s->ticket = 0;
    scratch_.push_back(s.get());
  }
  for (Set* s : scratch_) forget_if_empty(*s);
  waiting_ids_.clear();
  waiting_tokens_ = 0;
  std::vector<uint64_t> ids;
  ids.reserve(all.size());
  for (const Waiter& w : all) ids.push_back(w.id);
  return ids;
}

std::vector<AdmissionQueue::SetView> AdmissionQueue::sets() const {
  std::vector<SetView> views;
  auto view = [](const Set& s) {
    return SetView{s.key, s.phase, s.queue.size(), s.in_worker, s.active_since_ms, s.ticket};
  };
  if (!base_->queue.empty() || base_->in_worker > 0) views.push_back(view(*base_));
  std::vector<const Set*> rest;
  for (const auto& [key, s] : sets_) rest.push_back(s.get());
  std::sort(rest.begin(), rest.end(), [](const Set* x, const Set* y) { return x->key < y->key; });
  for (const Set* s : rest) views.push_back(view(*s));
  return views;
}

}  // namespace myriad
