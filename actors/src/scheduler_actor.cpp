#include "actors/scheduler_actor.h"

#include "actors/common_wire.h"
#include "actors/request_wire.h"
#include "actors/service_wire.h"

#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>

#include "runtime/engine_metrics.h"

namespace myriad::actors {

namespace {

using Self = scheduler_actor::stateful_pointer<SchedulerActorState>;

double now_ms(const SchedulerActorState& s) {
  if (s.options.now_ms) return s.options.now_ms();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Decides the active set and admissions again: what may enter the worker
// goes now; a timer is set for the next quantum's end the queue names.
void pump(Self self) {
  auto& s = self->state;
  const double now = now_ms(s);
  for (uint64_t id : s.queue->admit(now)) {
    auto it = s.waiting.find(id);
    if (it == s.waiting.end()) continue;  // cannot happen: the queue and the map change together
    self->send(s.worker, submit_atom::value, std::move(it->second.submit), std::move(it->second.sink));
    s.waiting.erase(it);
  }
  const double at = s.queue->next_decision_ms(now);
  if (!std::isfinite(at) || (s.timer_at_ms >= 0 && s.timer_at_ms <= at)) return;
  s.timer_at_ms = at;
  const auto delay = std::chrono::microseconds(int64_t((at - now) * 1000.0) + 1);
  self->delayed_send(self, delay, tick_atom::value);
}

// What the gateway must hear (final events, requeues) waits here while the
// scheduler has no sink (before its worker's join completes, or while its
// gateway is gone), up to kMaxUnsent; load reports are only dropped.
constexpr size_t kMaxUnsent = 4096;

void tell_released(Self self, EventWire wire) {
  auto& s = self->state;
  if (s.load_sink) {
    self->send(s.load_sink, released_atom::value, std::move(wire));
    return;
  }
  if (s.unsent.size() >= kMaxUnsent) s.unsent.pop_front();
  s.unsent.push_back({std::move(wire), 0, 0});
}

void tell_requeue(Self self, uint64_t id, uint32_t attempt) {
  auto& s = self->state;
  if (s.load_sink) {
    self->send(s.load_sink, requeue_atom::value, id, attempt);
    return;
  }
  if (s.unsent.size() >= kMaxUnsent) s.unsent.pop_front();
  s.unsent.push_back({std::nullopt, id, attempt});
}

void settle_drain(Self self) {
  auto& s = self->state;
  if (!s.draining || s.drains.empty() || s.queue->num_waiting() > 0 || s.queue->num_in_worker() > 0) return;
  auto drains = std::move(s.drains);
  s.drains.clear();
  self->request(s.worker, caf::infinite, drain_atom::value)
      .then(
          [drains](bool ok) mutable {
            for (auto& d : drains) d.deliver(ok);
          },
          [drains](caf::error&) mutable {
            for (auto& d : drains) d.deliver(false);
          });
}

}  // namespace

scheduler_actor::behavior_type scheduler_behavior(Self self, worker_actor worker, load_sink_actor load_sink,
                                                  SchedulerActorOptions options) {
  self->state.worker = std::move(worker);
  // A scheduler lives and dies with its worker: the gateway, which monitors
  // the scheduler, then places the worker's requests elsewhere.
  if (self->state.worker) self->link_to(self->state.worker);
  self->state.load_sink = std::move(load_sink);
  self->state.options = std::move(options);
  AdmissionConfig admission;
  admission.num_slots = self->state.options.limits.num_slots;
  admission.quantum_ms = self->state.options.quantum_ms;
  admission.max_in_worker = self->state.options.max_in_worker;
  admission.max_waiting = self->state.options.max_waiting;
  admission.timeslice = self->state.options.timeslice;
  self->state.queue = std::make_unique<AdmissionQueue>(admission);
  return {
      [self](submit_atom, const SubmitWire& wire, const event_sink_actor& sink) -> AcceptedWire {
        auto& s = self->state;
        if (s.draining)
          return refused(
              make_error(ErrorCode::kUnavailable, "worker " + s.options.worker_id + " is draining"));
        auto d = wire.decode();
        if (!d) return refused(d.error());
        auto request = read_submit(d->get());
        if (!request) return refused(request.error());
        if (Status st = validate_request(request.value(), s.options.limits); !st.ok())
          return refused(st.error());
        const uint64_t id = request->id;
        std::vector<std::string> versions;
        for (const AdapterUse& use : request->adapters) versions.push_back(use.id.to_string());
        const size_t named = versions.size();
        const uint64_t tokens = request->prompt.size() + request->resume_output.size() + request->max_tokens;
        switch (s.queue->push(id, std::move(versions), tokens, now_ms(s))) {
          case AdmissionQueue::Push::kQueued: break;
          case AdmissionQueue::Push::kDuplicate:
            return refused(make_error(ErrorCode::kInvalidArgument,
                                      "request id " + std::to_string(id) + " is already running"));
          case AdmissionQueue::Push::kTooManyAdapters:
            return refused(make_error(ErrorCode::kInvalidArgument,
                                      "the request names " + std::to_string(named) + " adapter versions; worker " +
                                          s.options.worker_id + " has " + std::to_string(s.options.limits.num_slots) +
                                          " adapter slots"));
          case AdmissionQueue::Push::kFull:
            return refused(make_error(ErrorCode::kOverloaded,
                                      "worker " + s.options.worker_id + " has " +
                                          std::to_string(s.queue->num_waiting()) +
                                          " requests waiting, the most it queues; retry shortly"));
        }
        s.waiting[id] =
            SchedulerActorState::Waiting{d->get().getAttempt(), wire, sink, adapter_metrics_name(request->adapters)};
        pump(self);
        // Still waiting for its set's turn: the worker fetches its adapters
        // into host memory meanwhile, so the turn starts with a slot load only.
        if (!request->adapters.empty() && s.queue->waits(id)) self->send(s.worker, fetch_atom::value, wire);
        return accepted(id, {});
      },
      [self](cancel_atom, const CancelWire& wire) {
        auto d = wire.decode();
        if (!d) return;
        const uint64_t id = d->get().getRequestId();
        auto& s = self->state;
        if (s.queue->cancel(id)) {
          auto it = s.waiting.find(id);
          if (it != s.waiting.end()) {
            EventWire cancelled = final_event(id, it->second.attempt, nullptr);
            self->send(it->second.sink, event_atom::value, cancelled);
            tell_released(self, std::move(cancelled));
            ++s.cancelled_waiting[it->second.metrics_name];
            s.waiting.erase(it);
          }
          pump(self);  // its set may have nothing left to wait for
          settle_drain(self);
          return;
        }
        if (s.queue->in_worker(id)) self->send(s.worker, cancel_atom::value, wire);
      },
      [self](released_atom, const EventWire& final_event) {
        auto d = final_event.decode();
        if (!d) return;
        self->state.queue->released(d->get().getRequestId());
        tell_released(self, final_event);
        pump(self);
        settle_drain(self);
      },
      [self](tick_atom) {
        self->state.timer_at_ms = -1;
        pump(self);
      },
      [self](metrics_atom) {
        nlohmann::json per = nlohmann::json::object();
        for (const auto& [name, n] : self->state.cancelled_waiting) per[name.empty() ? "(base)" : name] = n;
        return nlohmann::json{{"cancelled_waiting", per}}.dump();
      },
      [self](load_atom, const WorkerLoadWire& wire) {
        auto d = wire.decode();
        if (!d) return;
        capnp::MallocMessageBuilder message;
        message.setRoot(d->get());
        auto load = message.getRoot<schema::WorkerLoad>();
        load.setQueued(load.getQueued() + uint32_t(self->state.queue->num_waiting()));
        // What waits here is backlog too: placement balances tokens.
        load.setPendingTokens(load.getPendingTokens() + self->state.queue->waiting_tokens());
        load.setDraining(load.getDraining() || self->state.draining);
        if (self->state.load_sink) self->send(self->state.load_sink, load_atom::value, WorkerLoadWire::encode(message));
      },
      [self](drain_atom) -> caf::typed_response_promise<bool> {
        auto rp = self->make_response_promise<bool>();
        self->state.draining = true;
        self->state.drains.push_back(rp);
        settle_drain(self);
        return rp;
      },
      [self](leave_atom) -> caf::typed_response_promise<bool> {
        // What waits here goes back to the gateway to run elsewhere; what
        // runs in the worker finishes here.
        auto& s = self->state;
        for (uint64_t id : s.queue->take_waiting()) {
          auto it = s.waiting.find(id);
          if (it == s.waiting.end()) continue;
          tell_requeue(self, id, it->second.attempt);
          s.waiting.erase(it);
        }
        auto rp = self->make_response_promise<bool>();
        s.draining = true;
        s.drains.push_back(rp);
        settle_drain(self);
        return rp;
      },
      [self](attach_atom, const load_sink_actor& sink) {
        auto& s = self->state;
        s.load_sink = sink;
        if (!sink) return;
        for (auto& u : s.unsent) {
          if (u.released)
            self->send(sink, released_atom::value, std::move(*u.released));
          else
            self->send(sink, requeue_atom::value, u.id, u.attempt);
        }
        s.unsent.clear();
      },
  };
}

}  // namespace myriad::actors
