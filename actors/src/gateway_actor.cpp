#include "actors/gateway_actor.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>

#include "actors/common_wire.h"
#include "actors/request_wire.h"
#include "actors/service_wire.h"
#include "runtime/log.h"

namespace myriad::actors {

namespace {

using Self = gateway_actor::stateful_pointer<GatewayState>;

void unpin(Self self, const std::vector<AdapterId>& adapters, uint64_t id) {
  for (const AdapterId& a : adapters) self->send(self->state.registry, unpin_atom::value, pin_wire(a, id));
}

bool hold(Self self, uint64_t id);
void place_again(Self self, uint64_t id);

caf::timespan ms(double v) { return std::chrono::microseconds(int64_t(v * 1000.0)); }

// The worker for these adapters by the latest reports, or why none.
Result<size_t> place_now(Self self, const std::vector<AdapterUse>& adapters) {
  GatewayState& s = self->state;
  std::vector<WorkerView> views;
  views.reserve(s.workers.size());
  for (const auto& w : s.workers) views.push_back(w.view);
  return place(views, adapters, s.options.placement, s.draws());
}

// Placement's view of worker w counts the request until w's next report.
// Also counts how warm the worker was for the request's adapter (the affinity hit rate).
void count_placed(GatewayState& s, size_t w, const Request& request) {
  WorkerView& view = s.workers[w].view;
  if (!request.adapters.empty()) {
    ++s.placed_adapter;
    const int tier = affinity_tier(view, request.adapters);
    s.placed_resident += tier == 2;
    s.placed_host_cached += tier == 1;
  }
  ++view.placed_since_report;
  view.placed_tokens_since_report += request.prompt.size() + request.max_tokens;
}

std::vector<std::string> names(const std::vector<AdapterId>& ids) {
  std::vector<std::string> out;
  out.reserve(ids.size());
  for (const AdapterId& id : ids) out.push_back(id.to_string());
  return out;
}

// The request as its next attempt gets it: its deadline counts from when the
// gateway accepted it, so time spent held or on a lost worker is not given back.
Request for_next_attempt(const GatewayState::Route& route) {
  Request r = route.request;
  if (r.timeout_ms != kNoDeadline)
    r.timeout_ms = std::max(
        1.0, r.timeout_ms - std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - route.since).count());
  return r;
}

double age_ms(caf::actor_clock::time_point now, caf::actor_clock::time_point then) {
  return std::chrono::duration<double, std::milli>(now - then).count();
}

double held_ms(const GatewayState::Route& route) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - route.held_at).count();
}

// A drain that leaves the workers running (a cluster's gateway) answers once no route is left.
void settle_drain(Self self) {
  GatewayState& s = self->state;
  if (!s.draining || !s.routes.empty()) return;
  for (auto& rp : s.drains) rp.deliver(true);
  s.drains.clear();
}

// Places a resolved request and submits it to its worker's scheduler.
void place_and_submit(Self self, caf::typed_response_promise<AcceptedWire> rp, Request request,
                      event_sink_actor client, std::vector<AdapterRecord> adapters) {
  GatewayState& s = self->state;
  const uint64_t id = request.id;
  std::vector<AdapterId> pinned;
  std::string model;
  for (const AdapterRecord& a : adapters) {
    pinned.push_back(a.id);
    if (!model.empty()) model += '+';
    model += a.id.to_string();
  }
  if (adapters.empty()) model = s.options.base_model;
  auto where = place_now(self, request.adapters);
  if (!where) {
    // No worker up (none joined yet, or all lost): wait for one.
    s.routes[id] = GatewayState::Route{client, GatewayState::kHeld, pinned, 0, request};
    s.routes[id].since = std::chrono::steady_clock::now();
    if (where.error().code == ErrorCode::kUnavailable && hold(self, id)) {
      rp.deliver(accepted(id, model));
      return;
    }
    s.routes.erase(id);
    unpin(self, pinned, id);
    rp.deliver(refused(where.error()));
    return;
  }
  const size_t w = where.value();
  // Routed before the submit: the worker's first event may overtake the
  // scheduler's answer. The front end's answer waits in the route: if the
  // worker is lost before it answers (its answer never comes), the request
  // is placed again and the front end told it was accepted then.
  GatewayState::Route& route = s.routes[id] = GatewayState::Route{client, w, pinned, 0, request};
  route.answer = rp;
  route.model = model;
  route.since = std::chrono::steady_clock::now();
  count_placed(s, w, request);
  // Events go from the worker straight to the client (one hop per token);
  // the final one also comes here, through the scheduler (released).
  auto first_answer = [self, id, pinned, adapters](const Result<uint64_t>& ok, const AcceptedWire* refusal) {
    auto route = self->state.routes.find(id);
    if (route == self->state.routes.end() || route->second.attempt != 0 || !route->second.answer)
      return;  // already placed again (its worker was lost) and answered then
    auto rp = *route->second.answer;
    route->second.answer.reset();
    if (ok) {
      rp.deliver(accepted(id, route->second.model));
      return;
    }
    if (ok.error().code == ErrorCode::kUnavailable) {
      // That worker is leaving (it refuses as draining) or did not answer: another one.
      self->state.workers[route->second.worker].view.draining = true;
      Request again = std::move(route->second.request);
      event_sink_actor to = route->second.client;
      self->state.routes.erase(route);
      place_and_submit(self, rp, std::move(again), std::move(to), adapters);
      return;
    }
    self->state.routes.erase(route);
    unpin(self, pinned, id);
    rp.deliver(refusal ? *refusal : refused(ok.error()));
    settle_drain(self);
  };
  self->request(s.workers[w].scheduler, caf::infinite, submit_atom::value, encode_submit(request, 0), client)
      .then([first_answer](const AcceptedWire& answer) { first_answer(read_accepted(answer), &answer); },
            [first_answer](caf::error& err) {
              first_answer(make_error(ErrorCode::kUnavailable, "the worker did not answer: " + to_string(err)),
                           nullptr);
            });
}

// A mixture's experts, resolved (and pinned) one after another.
struct ExpertResolution {
  std::vector<std::pair<std::string, float>> wanted;  // model, weight
  std::vector<AdapterRecord> resolved;
};

void resolve_experts(Self self, caf::typed_response_promise<AcceptedWire> rp, event_sink_actor client, Request request,
                     std::string tenant, bool admin, std::shared_ptr<ExpertResolution> st) {
  const size_t i = st->resolved.size();
  if (i == st->wanted.size()) {
    request.adapters.clear();
    for (size_t k = 0; k < i; ++k) request.adapters.push_back(AdapterUse{st->resolved[k].id, st->wanted[k].second});
    place_and_submit(self, rp, std::move(request), std::move(client), st->resolved);
    return;
  }
  const uint64_t id = request.id;
  auto give_up = [self, rp, st, id](const Error& e) mutable {
    std::vector<AdapterId> pinned;
    for (const AdapterRecord& r : st->resolved) pinned.push_back(r.id);
    unpin(self, pinned, id);
    rp.deliver(refused(e));
  };
  self->request(self->state.registry, caf::infinite, resolve_atom::value,
                registry_call(tenant, admin, st->wanted[i].first, {}, id))
      .then(
          [self, rp, client, request = std::move(request), tenant, admin, st, give_up](
              const AdapterAnswerWire& answer) mutable {
            auto resolved = read_answer(answer);
            if (!resolved) return give_up(resolved.error());
            if (!resolved.value())
              return give_up(make_error(ErrorCode::kInvalidArgument,
                                        "expert " + st->wanted[st->resolved.size()].first + " is the base model"));
            st->resolved.push_back(*resolved.value());
            resolve_experts(self, rp, std::move(client), std::move(request), std::move(tenant), admin, st);
          },
          [give_up](caf::error& err) mutable {
            give_up(make_error(ErrorCode::kUnavailable, "the registry did not answer: " + to_string(err)));
          });
}

// Ends a request here, not on a worker: one final event to its client (failed
// with `error`, else cancelled), from an attempt newer than any it has seen.
void end_route(Self self, uint64_t id, const Error* error) {
  auto it = self->state.routes.find(id);
  if (it == self->state.routes.end()) return;
  if (it->second.answer) {  // the front end still waits for its answer: accepted, then this final event
    it->second.answer->deliver(accepted(id, it->second.model));
    it->second.answer.reset();
  }
  self->send(it->second.client, event_atom::value, final_event(id, it->second.attempt + 1, error));
  unpin(self, it->second.adapters, id);
  self->state.routes.erase(it);
  settle_drain(self);
}

void fail_route(Self self, uint64_t id, const Error& error) { end_route(self, id, &error); }

// Sends route `id` to worker `w` as its current attempt; a refusal or no
// answer fails it (the client already holds an accepted id).
void submit_route(Self self, uint64_t id, size_t w) {
  GatewayState& s = self->state;
  GatewayState::Route& route = s.routes.at(id);
  const uint32_t attempt = route.attempt;
  route.worker = w;
  count_placed(s, w, route.request);
  self->request(s.workers[w].scheduler, caf::infinite, submit_atom::value,
                encode_submit(for_next_attempt(route), attempt), route.client)
      .then(
          [self, id, attempt](const AcceptedWire& answer) {
            auto ok = read_accepted(answer);
            auto r = self->state.routes.find(id);
            if (ok || r == self->state.routes.end() || r->second.attempt != attempt) return;
            if (ok.error().code == ErrorCode::kUnavailable) {  // that worker is leaving: another one
              self->state.workers[r->second.worker].view.draining = true;
              place_again(self, id);
              return;
            }
            fail_route(self, id, ok.error());
          },
          [self, id, attempt](caf::error& err) {
            auto r = self->state.routes.find(id);
            if (r == self->state.routes.end() || r->second.attempt != attempt) return;
            fail_route(self, id,
                       make_error(ErrorCode::kUnavailable, "the worker did not answer: " + to_string(err)));
          });
}

// No worker can take route `id` now: it waits for one to join, up to its
// deadline (or the gateway's bound). False when the gateway drains or holds
// too many already.
bool hold(Self self, uint64_t id) {
  GatewayState& s = self->state;
  if (s.draining || s.held.size() >= s.options.max_held) return false;
  GatewayState::Route& route = s.routes.at(id);
  route.worker = GatewayState::kHeld;
  route.held_at = std::chrono::steady_clock::now();
  s.held.push_back(id);
  double wait_ms = s.options.max_wait_for_worker_ms;
  if (route.request.timeout_ms != kNoDeadline) wait_ms = std::min(wait_ms, for_next_attempt(route).timeout_ms);
  self->delayed_send(self, ms(wait_ms), tick_atom::value, id);
  return true;
}

// A worker joined: the held requests go to workers, oldest first, while
// placement finds one.
void release_held(Self self) {
  GatewayState& s = self->state;
  while (!s.held.empty()) {
    const uint64_t id = s.held.front();
    auto it = s.routes.find(id);
    if (it == s.routes.end() || it->second.worker != GatewayState::kHeld) {
      s.held.pop_front();  // ended while it waited
      continue;
    }
    auto where = place_now(self, it->second.request.adapters);
    if (!where) return;
    s.held.pop_front();
    submit_route(self, id, where.value());
  }
}

void place_resumed(Self self, uint64_t id, uint32_t attempt, const std::string& lost, std::vector<int32_t> sent);

// A request whose worker was lost goes to another worker as attempt + 1. Its
// client's sink says first which output tokens the client has: the new
// worker prefills them with the prompt and goes on after them, with the same
// seed, so a greedy or seeded stream continues as it would have (without an
// answer, it starts again from the prompt and the sink's AttemptFilter drops
// the indices the client has). With no worker up, it waits for one like a
// new request.
void place_again(Self self, uint64_t id) {
  GatewayState& s = self->state;
  auto it = s.routes.find(id);
  if (it == s.routes.end()) return;
  GatewayState::Route& route = it->second;
  const std::string lost = s.workers[route.worker].view.id;
  ++route.attempt;
  ++s.placed_again;
  if (route.answer) {  // its first worker never answered: the front end hears it is accepted now
    route.answer->deliver(accepted(id, route.model));
    route.answer.reset();
  }
  route.worker = GatewayState::kResuming;
  const uint32_t attempt = route.attempt;
  self->request(route.client, ms(s.options.resume_query_timeout_ms), resume_atom::value, id, attempt)
      .then(
          [self, id, attempt, lost](const ResumeWire& answer) {
            auto sent = read_resume_point(answer, id);
            if (!sent) log_warn("gateway: request {} resumes from its prompt: {}", id, sent.error().to_string());
            place_resumed(self, id, attempt, lost, sent ? std::move(sent).value() : std::vector<int32_t>{});
          },
          [self, id, attempt, lost](caf::error& err) {
            log_warn("gateway: request {} resumes from its prompt: its client's sink did not answer ({})", id,
                     to_string(err));
            place_resumed(self, id, attempt, lost, {});
          });
}

void place_resumed(Self self, uint64_t id, uint32_t attempt, const std::string& lost, std::vector<int32_t> sent) {
  GatewayState& s = self->state;
  auto it = s.routes.find(id);
  if (it == s.routes.end() || it->second.attempt != attempt) return;  // ended (cancelled) meanwhile
  GatewayState::Route& route = it->second;
  if (!sent.empty()) {
    ++s.resumed;
    s.resumed_tokens += sent.size();
  }
  route.request.resume_output = std::move(sent);
  auto where = place_now(self, route.request.adapters);
  if (where) {
    submit_route(self, id, where.value());
    return;
  }
  if (hold(self, id)) return;
  fail_route(self, id,
             make_error(ErrorCode::kUnavailable,
                        "worker " + lost + " was lost and no other worker can take the request: " +
                            where.error().message));
}

void lose_worker(Self self, size_t w, const std::string& why) {
  GatewayState& s = self->state;
  GatewayState::Worker& worker = s.workers[w];
  if (worker.lost) return;
  log_warn("gateway: worker {} lost ({}); placing its requests again", worker.view.id, why);
  worker.lost = true;
  if (s.options.job_host) caf::anon_send(s.options.job_host, leave_atom::value, worker.view.id);
  worker.view.draining = true;  // placement skips it
  std::vector<uint64_t> orphans;
  for (const auto& [id, route] : s.routes)
    if (route.worker == w) orphans.push_back(id);
  std::sort(orphans.begin(), orphans.end());  // a deterministic order
  for (uint64_t id : orphans) place_again(self, id);
}

// Forgets the oldest lost workers beyond options.max_lost_listed; the
// routes' indices of later workers move down. Not inside a loop over workers.
void prune_lost(Self self) {
  GatewayState& s = self->state;
  size_t lost = 0;
  for (const auto& w : s.workers) lost += w.lost;
  for (size_t w = 0; w < s.workers.size() && lost > s.options.max_lost_listed;) {
    const bool routed = std::any_of(s.routes.begin(), s.routes.end(), [w](const auto& r) { return r.second.worker == w; });
    if (!s.workers[w].lost || routed) {  // (lose_worker leaves no route on it)
      ++w;
      continue;
    }
    for (auto& [id, route] : s.routes)
      if (GatewayState::on_a_worker(route) && route.worker > w) --route.worker;
    s.workers.erase(s.workers.begin() + ptrdiff_t(w));
    --lost;
  }
}

void worker_lost(Self self, const caf::actor_addr& who) {
  GatewayState& s = self->state;
  for (size_t w = 0; w < s.workers.size(); ++w)
    if (caf::actor_cast<caf::actor_addr>(s.workers[w].scheduler) == who) lose_worker(self, w, "it went down");
  prune_lost(self);
}

}  // namespace

gateway_actor::behavior_type gateway_behavior(Self self, registry_actor registry, GatewayOptions options) {
  self->state.registry = std::move(registry);
  self->state.options = std::move(options);
  self->state.draws.seed(self->state.options.placement_seed);
  self->set_down_handler([self](caf::down_msg& down) { worker_lost(self, down.source); });
  if (self->state.options.heartbeat_timeout_ms > 0)
    self->delayed_send(self, ms(self->state.options.heartbeat_timeout_ms / 2), tick_atom::value);
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
        if (g.getExperts().size() > 0) {
          auto st = std::make_shared<ExpertResolution>();
          for (auto e : g.getExperts()) st->wanted.push_back({as_string(e.getModel()), e.getWeight()});
          resolve_experts(self, rp, client, std::move(request).value(), as_string(g.getTenant()), g.getAdmin(), st);
          return rp;
        }
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
                  std::vector<AdapterRecord> records;
                  if (resolved.value()) {
                    request.adapters = {AdapterUse{resolved.value()->id, 1.0f}};
                    records.push_back(*resolved.value());
                  }
                  place_and_submit(self, rp, std::move(request), client, std::move(records));
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
        const uint64_t id = d->get().getRequestId();
        auto it = self->state.routes.find(id);
        if (it == self->state.routes.end()) return;
        if (!GatewayState::on_a_worker(it->second)) {  // waiting for a worker (or its resume point): ended here
          end_route(self, id, nullptr);
          return;
        }
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
          unpin(self, it->second.adapters, e.getRequestId());
          self->state.routes.erase(it);
          settle_drain(self);
        }
      },
      [self](released_atom, const EventWire& wire) {
        auto d = wire.decode();
        if (!d) return;
        auto it = self->state.routes.find(d->get().getRequestId());
        if (it == self->state.routes.end() || it->second.attempt != d->get().getAttempt()) return;
        unpin(self, it->second.adapters, it->first);
        self->state.routes.erase(it);
        settle_drain(self);
      },
      [self](load_atom, const WorkerLoadWire& wire) {
        auto d = wire.decode();
        if (!d) return;
        auto load = d->get();
        const std::string id = as_string(load.getWorker());
        for (auto& w : self->state.workers) {
          if (w.view.id != id) continue;
          if (load.getHeartbeat()) {  // up, inside a long step: no load figures
            w.last_heard = self->clock().now();
            continue;
          }
          if (load.getSeq() <= w.last_seq) continue;
          w.last_seq = load.getSeq();
          w.last_heard = w.last_report = self->clock().now();
          w.view.queued = load.getQueued();
          w.view.running = load.getRunning();
          w.view.draining = load.getDraining() || w.lost;  // a lost worker stays out of placement
          w.view.pending_tokens = load.getPendingTokens();
          w.total_slots = load.getTotalSlots();
          w.step_ms = load.getStepMs();
          w.device = as_string(load.getDevice());
          w.output_tokens = load.getOutputTokens();
          w.requests = load.getRequests();
          w.slot_loads = load.getSlotLoads();
          w.swaps = load.getSwaps();
          w.ttft_p50_ms = load.getTtftP50Ms();
          w.ttft_p99_ms = load.getTtftP99Ms();
          w.itl_p50_ms = load.getItlP50Ms();
          w.itl_p99_ms = load.getItlP99Ms();
          w.view.placed_since_report = 0;
          w.view.placed_tokens_since_report = 0;
          w.view.resident.clear();
          for (auto slot : load.getSlots()) w.view.resident.push_back(read_adapter_id(slot.getAdapter()));
          w.view.host_cached.clear();
          for (auto id : load.getHostCached()) w.view.host_cached.push_back(read_adapter_id(id));
        }
      },
      [self](requeue_atom, uint64_t id, uint32_t attempt) {
        // A leaving worker's scheduler hands back a request that never reached its engine.
        auto it = self->state.routes.find(id);
        if (it == self->state.routes.end() || it->second.attempt != attempt ||
            !GatewayState::on_a_worker(it->second))
          return;
        self->state.workers[it->second.worker].view.draining = true;
        place_again(self, id);
      },
      [self](drain_atom, const std::string& worker) {
        for (auto& w : self->state.workers) {
          if (w.lost || w.view.id != worker) continue;
          w.view.draining = true;
          // Its answer (all finished) is only logged: the worker stays, drained, until stopped.
          self->request(w.scheduler, caf::infinite, leave_atom::value)
              .then([worker](bool) { log_info("gateway: worker {} is drained", worker); }, [](caf::error&) {});
          log_info("gateway: worker {} drains: its waiting requests move, its running ones finish", worker);
          return true;
        }
        return false;
      },
      [self](add_worker_atom, const std::string& id, const scheduler_actor& scheduler) {
        // The same id again (a restarted worker whose old connection is not yet seen down): the old one is lost.
        for (size_t w = 0; w < self->state.workers.size(); ++w)
          if (self->state.workers[w].view.id == id && !self->state.workers[w].lost)
            lose_worker(self, w, "a worker joined again with its id");
        GatewayState::Worker w;
        w.view.id = id;
        w.scheduler = scheduler;
        w.last_heard = w.last_report = self->clock().now();
        self->monitor(scheduler);  // its down message re-places what ran there
        self->state.workers.push_back(std::move(w));
        prune_lost(self);
        release_held(self);
      },
      [self](tick_atom) {
        GatewayState& s = self->state;
        const auto now = self->clock().now();
        const auto timeout = ms(s.options.heartbeat_timeout_ms);
        for (size_t w = 0; w < s.workers.size(); ++w)
          if (!s.workers[w].lost && now - s.workers[w].last_heard > timeout)
            lose_worker(self, w,
                        "no load report for " +
                            std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                               now - s.workers[w].last_heard)
                                               .count()) +
                            " ms");
        prune_lost(self);
        self->delayed_send(self, timeout / 2, tick_atom::value);
      },
      [self](metrics_atom) {
        const GatewayState& s = self->state;
        const auto now = self->clock().now();
        nlohmann::json workers = nlohmann::json::array();
        for (const auto& w : s.workers)
          workers.push_back(
              {{"id", w.view.id},
               {"up", !w.lost},
               {"draining", w.view.draining && !w.lost},
               {"pending_tokens", w.view.pending_tokens},
               {"placed_tokens_since_report", w.view.placed_tokens_since_report},
               {"queued", w.view.queued},
               {"running", w.view.running},
               {"resident", w.view.resident.size()},
               {"host_cached", w.view.host_cached.size()},
               {"resident_adapters", names(w.view.resident)},
               {"host_cached_adapters", names(w.view.host_cached)},
               {"slots", w.total_slots},
               {"device", w.device},
               {"step_ms", w.step_ms},
               {"output_tokens", w.output_tokens},
               {"requests", w.requests},
               {"slot_loads", w.slot_loads},
               {"swaps", w.swaps},
               {"ttft_ms", {{"p50", w.ttft_p50_ms}, {"p99", w.ttft_p99_ms}}},
               {"itl_ms", {{"p50", w.itl_p50_ms}, {"p99", w.itl_p99_ms}}},
               {"report_age_ms", age_ms(now, w.last_report)},
               {"heartbeat_age_ms", age_ms(now, w.last_heard)},
               {"heartbeats_missed",
                w.lost ? 0
                       : std::max(0, int(age_ms(now, w.last_heard) / s.options.heartbeat_interval_ms) - 1)}});
        size_t held = 0;
        for (const auto& [id, route] : s.routes) held += route.worker == GatewayState::kHeld;
        return nlohmann::json{
            {"workers", workers},
            {"held", held},
            {"routes", s.routes.size()},
            {"placed_again", s.placed_again},
            {"resumed", s.resumed},
            {"resumed_tokens", s.resumed_tokens},
            {"placed_adapter", s.placed_adapter},
            {"placed_resident", s.placed_resident},
            {"placed_host_cached", s.placed_host_cached}}
            .dump();
      },
      [self](tick_atom, uint64_t id) {
        auto it = self->state.routes.find(id);
        if (it == self->state.routes.end() || it->second.worker != GatewayState::kHeld) return;
        fail_route(self, id,
                   make_error(ErrorCode::kUnavailable, "no worker could take the request within " +
                                                           std::to_string(int64_t(held_ms(it->second))) +
                                                           " ms (none is up)"));
      },
      [self](drain_atom) -> caf::typed_response_promise<bool> {
        auto rp = self->make_response_promise<bool>();
        GatewayState& s = self->state;
        s.draining = true;
        for (uint64_t id : std::deque<uint64_t>(s.held))  // no worker will come for them now
          if (auto it = s.routes.find(id); it != s.routes.end() && it->second.worker == GatewayState::kHeld)
            fail_route(self, id, make_error(ErrorCode::kUnavailable, "the node is shutting down"));
        s.held.clear();
        if (!s.options.drain_workers) {  // the workers serve on (another gateway); wait for our routes
          s.drains.push_back(rp);
          settle_drain(self);
          return rp;
        }
        size_t live = 0;
        for (const auto& w : s.workers) live += !w.lost;
        auto left = std::make_shared<size_t>(live);
        auto all_ok = std::make_shared<bool>(true);
        if (*left == 0) rp.deliver(true);
        for (auto& w : s.workers)
          if (!w.lost)
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
