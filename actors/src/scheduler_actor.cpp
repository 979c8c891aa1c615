#include "actors/scheduler_actor.h"

#include "actors/common_wire.h"
#include "actors/request_wire.h"
#include "actors/service_wire.h"

namespace myriad::actors {

namespace {

using Self = scheduler_actor::stateful_pointer<SchedulerActorState>;

void admit_waiting(Self self) {
  auto& s = self->state;
  while (!s.waiting.empty() && s.in_worker.size() < s.options.max_in_worker) {
    SchedulerActorState::Waiting w = std::move(s.waiting.front());
    s.waiting.pop_front();
    s.in_worker.insert(w.id);
    self->send(s.worker, submit_atom::value, w.submit, w.sink);
  }
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
  if (!s.draining || s.drains.empty() || !s.waiting.empty() || !s.in_worker.empty()) return;
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
        if (s.in_worker.count(id) > 0)
          return refused(make_error(ErrorCode::kInvalidArgument,
                                    "request id " + std::to_string(id) + " is already running"));
        if (s.in_worker.size() < s.options.max_in_worker && s.waiting.empty()) {
          s.in_worker.insert(id);
          self->send(s.worker, submit_atom::value, wire, sink);
        } else if (s.waiting.size() < s.options.max_waiting) {
          s.waiting.push_back({id, d->get().getAttempt(), wire, sink});
        } else {
          return refused(
              make_error(ErrorCode::kOverloaded, "worker " + s.options.worker_id + " has " +
                                                     std::to_string(s.waiting.size()) +
                                                     " requests waiting, the most it queues; retry shortly"));
        }
        return accepted(id, {});
      },
      [self](cancel_atom, const CancelWire& wire) {
        auto d = wire.decode();
        if (!d) return;
        const uint64_t id = d->get().getRequestId();
        auto& waiting = self->state.waiting;
        for (auto it = waiting.begin(); it != waiting.end(); ++it) {
          if (it->id != id) continue;
          EventWire cancelled = final_event(id, it->attempt, nullptr);
          self->send(it->sink, event_atom::value, cancelled);
          tell_released(self, std::move(cancelled));
          waiting.erase(it);
          settle_drain(self);
          return;
        }
        if (self->state.in_worker.count(id) > 0) self->send(self->state.worker, cancel_atom::value, wire);
      },
      [self](released_atom, const EventWire& final_event) {
        auto d = final_event.decode();
        if (!d) return;
        self->state.in_worker.erase(d->get().getRequestId());
        tell_released(self, final_event);
        admit_waiting(self);
        settle_drain(self);
      },
      [self](load_atom, const WorkerLoadWire& wire) {
        auto d = wire.decode();
        if (!d) return;
        capnp::MallocMessageBuilder message;
        message.setRoot(d->get());
        auto load = message.getRoot<schema::WorkerLoad>();
        load.setQueued(load.getQueued() + uint32_t(self->state.waiting.size()));
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
        for (const auto& w : s.waiting) tell_requeue(self, w.id, w.attempt);
        s.waiting.clear();
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
