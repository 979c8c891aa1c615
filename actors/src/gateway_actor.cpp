#include "actors/gateway_actor.h"

#include <chrono>
#include <memory>

#include "actors/common_wire.h"
#include "actors/request_wire.h"
#include "actors/service_wire.h"

namespace myriad::actors {

namespace {

using Self = gateway_actor::stateful_pointer<GatewayState>;

void unpin(Self self, const std::optional<AdapterId>& adapter, uint64_t id) {
  if (adapter) self->send(self->state.registry, unpin_atom::value, pin_wire(*adapter, id));
}

// Places a resolved request and submits it to its worker's scheduler.
void place_and_submit(Self self, caf::typed_response_promise<AcceptedWire> rp, Request request,
                      event_sink_actor client, std::optional<AdapterRecord> adapter) {
  GatewayState& s = self->state;
  const uint64_t id = request.id;
  std::optional<AdapterId> pinned;
  if (adapter) pinned = adapter->id;
  std::vector<WorkerView> views;
  views.reserve(s.workers.size());
  for (const auto& w : s.workers) views.push_back(w.view);
  auto where = place(views, request.adapters, s.options.placement, s.draws());
  if (!where) {
    unpin(self, pinned, id);
    rp.deliver(refused(where.error()));
    return;
  }
  const size_t w = where.value();
  const std::string model = adapter ? adapter->id.to_string() : s.options.base_model;
  // Routed before the submit: the worker's first event may overtake the scheduler's answer.
  s.routes[id] = GatewayState::Route{client, w, pinned, 0};
  ++s.workers[w].view.placed_since_report;
  s.workers[w].view.placed_tokens_since_report += request.prompt.size() + request.max_tokens;
  // Events go from the worker straight to the client (one hop per token);
  // the final one also comes here, through the scheduler (released).
  self->request(s.workers[w].scheduler, caf::infinite, submit_atom::value, encode_submit(request, 0), client)
      .then(
          [self, rp, id, pinned, model](const AcceptedWire& answer) mutable {
            auto ok = read_accepted(answer);
            if (ok) {
              rp.deliver(accepted(id, model));
              return;
            }
            self->state.routes.erase(id);
            unpin(self, pinned, id);
            rp.deliver(answer);
          },
          [self, rp, id, pinned](caf::error& err) mutable {
            self->state.routes.erase(id);
            unpin(self, pinned, id);
            rp.deliver(
                refused(make_error(ErrorCode::kUnavailable, "the worker did not answer: " + to_string(err))));
          });
}

}  // namespace

gateway_actor::behavior_type gateway_behavior(Self self, registry_actor registry, GatewayOptions options) {
  self->state.registry = std::move(registry);
  self->state.options = std::move(options);
  self->state.draws.seed(self->state.options.placement_seed);
  // Ids unique across restarts: milliseconds since the epoch in the high bits.
  self->state.next_id = (uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      std::chrono::system_clock::now().time_since_epoch())
                                      .count())
                         << 16) +
                        1;
  return {
      [self](generate_atom, const GenerateWire& wire,
             const event_sink_actor& client) -> caf::typed_response_promise<AcceptedWire> {
        auto rp = self->make_response_promise<AcceptedWire>();
        GatewayState& s = self->state;
        if (s.draining) {
          rp.deliver(refused(make_error(ErrorCode::kUnavailable, "the node is shutting down")));
          return rp;
        }
        auto d = wire.decode();
        Result<Request> request = d ? read_submit(d->get().getRequest()) : Result<Request>(d.error());
        if (!request) {
          rp.deliver(refused(request.error()));
          return rp;
        }
        if (request->id == 0 || s.routes.count(request->id) > 0) request->id = s.next_id++;
        auto g = d->get();
        self->request(s.registry, caf::infinite, resolve_atom::value,
                      registry_call(as_string(g.getTenant()), g.getAdmin(), as_string(g.getModel()), {},
                                    request->id))
            .then(
                [self, rp, client,
                 request = std::move(request).value()](const AdapterAnswerWire& answer) mutable {
                  auto resolved = read_answer(answer);
                  if (!resolved) {
                    rp.deliver(refused(resolved.error()));
                    return;
                  }
                  request.adapters.clear();
                  if (resolved.value()) request.adapters = {AdapterUse{resolved.value()->id, 1.0f}};
                  place_and_submit(self, rp, std::move(request), client, resolved.value());
                },
                [rp](caf::error& err) mutable {
                  rp.deliver(refused(
                      make_error(ErrorCode::kUnavailable, "the registry did not answer: " + to_string(err))));
                });
        return rp;
      },
      [self](cancel_atom, const CancelWire& wire) {
        auto d = wire.decode();
        if (!d) return;
        auto it = self->state.routes.find(d->get().getRequestId());
        if (it == self->state.routes.end()) return;
        self->send(self->state.workers[it->second.worker].scheduler, cancel_atom::value, wire);
      },
      [self](event_atom, const EventWire& wire) {
        auto d = wire.decode();
        if (!d) return;
        auto e = d->get();
        auto it = self->state.routes.find(e.getRequestId());
        if (it == self->state.routes.end() || it->second.attempt != e.getAttempt()) return;  // stale
        self->send(it->second.client, event_atom::value, wire);
        if (e.isFinished() || e.isFailed()) {
          unpin(self, it->second.adapter, e.getRequestId());
          self->state.routes.erase(it);
        }
      },
      [self](released_atom, const EventWire& wire) {
        auto d = wire.decode();
        if (!d) return;
        auto it = self->state.routes.find(d->get().getRequestId());
        if (it == self->state.routes.end() || it->second.attempt != d->get().getAttempt()) return;
        unpin(self, it->second.adapter, it->first);
        self->state.routes.erase(it);
      },
      [self](load_atom, const WorkerLoadWire& wire) {
        auto d = wire.decode();
        if (!d) return;
        auto load = d->get();
        const std::string id = as_string(load.getWorker());
        for (auto& w : self->state.workers) {
          if (w.view.id != id || load.getSeq() <= w.last_seq) continue;
          w.last_seq = load.getSeq();
          w.view.queued = load.getQueued();
          w.view.running = load.getRunning();
          w.view.draining = load.getDraining();
          w.view.pending_tokens = load.getPendingTokens();
          w.view.placed_since_report = 0;
          w.view.placed_tokens_since_report = 0;
          w.view.resident.clear();
          for (auto slot : load.getSlots()) w.view.resident.push_back(read_adapter_id(slot.getAdapter()));
          w.view.host_cached.clear();
          for (auto id : load.getHostCached()) w.view.host_cached.push_back(read_adapter_id(id));
        }
      },
      [self](add_worker_atom, const std::string& id, const scheduler_actor& scheduler) {
        GatewayState::Worker w;
        w.view.id = id;
        w.scheduler = scheduler;
        self->state.workers.push_back(std::move(w));
      },
      [self](drain_atom) -> caf::typed_response_promise<bool> {
        auto rp = self->make_response_promise<bool>();
        self->state.draining = true;
        auto left = std::make_shared<size_t>(self->state.workers.size());
        auto all_ok = std::make_shared<bool>(true);
        if (*left == 0) rp.deliver(true);
        for (auto& w : self->state.workers)
          self->request(w.scheduler, caf::infinite, drain_atom::value)
              .then(
                  [rp, left, all_ok](bool ok) mutable {
                    *all_ok = *all_ok && ok;
                    if (--*left == 0) rp.deliver(*all_ok);
                  },
                  [rp, left](caf::error&) mutable {
                    if (--*left == 0) rp.deliver(false);
                  });
        return rp;
      },
  };
}

}  // namespace myriad::actors
