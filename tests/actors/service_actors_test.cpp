// The service's actors on CAF's deterministic test coordinator: every message
// runs when the test says (sched().run()), so each case is one exact
// interleaving. Real registry (over a real SQLite store), gateway and
// scheduler actors; the worker and its scheduler are played by recording
// stand-ins where a case needs to control what a device does.
//
// Cases: placement by adapter affinity and load; a delete that waits for the
// request pinning its version; residency transitions (stale reports
// ignored); backpressure and cancel in the scheduler actor; events relayed
// straight to the client, cancel routed to the worker, stale events dropped;
// drain; the cluster's door, a leaving worker, a worker without a sink yet,
// deadlines across attempts.
#include <gtest/gtest.h>

#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "actors/attempt_filter.h"
#include "actors/adapter_info_wire.h"
#include "actors/common_wire.h"
#include "actors/event_wire.h"
#include "actors/cluster_door.h"
#include "actors/gateway_actor.h"
#include "actors/message_types.h"
#include "actors/registry_actor.h"
#include <nlohmann/json.hpp>

#include "actors/request_wire.h"
#include "actors/scheduler_actor.h"
#include "actors/service_wire.h"
#include "runtime/model_factory.h"
#include "runtime/peft_adapter.h"
#include "runtime/sha256.h"

namespace myriad::actors {
namespace {

namespace fs = std::filesystem;

// What a stand-in worker or scheduler was sent.
struct Log {
  std::vector<uint64_t> submitted;
  std::vector<uint32_t> attempts;  // of each submit
  std::vector<uint64_t> cancelled;
  std::vector<event_sink_actor> sinks;
  int drains = 0;
  int leaves = 0;
  std::vector<std::pair<uint64_t, uint32_t>> requeued;  // (id, attempt) handed back by a leaving scheduler
  std::vector<uint64_t> released;                       // final events a load sink was told of
  std::vector<double> timeouts;                         // the timeout_ms of each submit
  std::vector<std::vector<int32_t>> resumed;            // the resume_output of each submit
  std::vector<uint64_t> prefetched;                     // requests whose adapters a scheduler asked to fetch
};

worker_actor::behavior_type recording_worker(std::shared_ptr<Log> log) {
  return {
      [log](submit_atom, const SubmitWire& wire, const event_sink_actor& sink) {
        log->submitted.push_back(wire.decode()->get().getRequestId());
        log->sinks.push_back(sink);
      },
      [log](cancel_atom, const CancelWire& wire) {
        log->cancelled.push_back(wire.decode()->get().getRequestId());
      },
      [log](fetch_atom, const SubmitWire& wire) { log->prefetched.push_back(wire.decode()->get().getRequestId()); },
      [](tick_atom) {},
      [](attach_atom, const scheduler_actor&) {},
      [](attach_atom, const worker_registry_actor&) {},
      [log](drain_atom) {
        ++log->drains;
        return true;
      },
      [](metrics_atom) { return std::string("{}"); },
  };
}

// A scheduler that accepts everything and remembers what it got.
scheduler_actor::behavior_type recording_scheduler(std::shared_ptr<Log> log) {
  return {
      [log](submit_atom, const SubmitWire& wire, const event_sink_actor& sink) {
        const uint64_t id = wire.decode()->get().getRequestId();
        log->submitted.push_back(id);
        log->attempts.push_back(wire.decode()->get().getAttempt());
        log->timeouts.push_back(read_submit(wire.decode()->get()).value().timeout_ms);
        log->resumed.push_back(read_submit(wire.decode()->get()).value().resume_output);
        log->sinks.push_back(sink);
        return accepted(id, {});
      },
      [log](cancel_atom, const CancelWire& wire) {
        log->cancelled.push_back(wire.decode()->get().getRequestId());
      },
      [](released_atom, const EventWire&) {},
      [](load_atom, const WorkerLoadWire&) {},
      [log](drain_atom) {
        ++log->drains;
        return true;
      },
      [log](leave_atom) {
        ++log->leaves;
        return true;
      },
      [](attach_atom, const load_sink_actor&) {},
      [](tick_atom) {},
      [](metrics_atom) { return std::string("{}"); },
  };
}

// A gateway stand-in for a scheduler: ignores load reports and releases.
// (It takes an argument: CAF 0.17 spawns an argument-less function through
// a null pointer, which UBSan reports.)
load_sink_actor::behavior_type ignoring_load_sink(std::shared_ptr<Log> log) {
  return {[](load_atom, const WorkerLoadWire&) {},
          [log](released_atom, const EventWire& e) { log->released.push_back(e.decode()->get().getRequestId()); },
          [log](requeue_atom, uint64_t id, uint32_t attempt) { log->requeued.emplace_back(id, attempt); }};
}

// A front end's sink: every event it was sent, decoded.
// Asked where to resume, it answers with the tokens of the events it has,
// like the node's relay (the AttemptFilter's part of it is tested alone).
struct Seen {
  std::vector<RequestEvent> events;
  std::vector<std::string> texts;
  std::vector<std::pair<uint64_t, uint32_t>> resume_queries;  // (request, attempt)
  bool answer_resume = true;
};
event_sink_actor::behavior_type recording_sink(std::shared_ptr<Seen> seen) {
  return {
      [seen](event_atom, const EventWire& wire) {
        auto d = wire.decode();
        auto e = read_event(d->get());
        seen->events.push_back(e->view());
        seen->texts.emplace_back(e->view().text);
        seen->events.back().text = {};  // views on `e`, gone after this call
        seen->events.back().top = {};
      },
      [seen](resume_atom, uint64_t id, uint32_t attempt) -> caf::result<ResumeWire> {
        seen->resume_queries.emplace_back(id, attempt);
        if (!seen->answer_resume) return caf::sec::request_timeout;
        std::vector<int32_t> tokens;
        for (const RequestEvent& e : seen->events)
          if (e.id == id && e.kind == EventKind::kToken && e.index == tokens.size()) tokens.push_back(e.token);
        return resume_point(id, attempt, tokens);
      },
  };
}

class ServiceActors : public ::testing::Test {
 protected:
  // The served base is "tiny"; no heartbeat timer unless a test is about it
  // (the held requests' timers move the test clock by seconds).
  static GatewayOptions gateway_options(double heartbeat_timeout_ms = 0) {
    GatewayOptions o;
    o.base_model = "tiny";
    o.heartbeat_timeout_ms = heartbeat_timeout_ms;
    return o;
  }

  ServiceActors() {
    register_message_types(cfg_);
    cfg_.set("scheduler.policy", caf::atom("testing"));
    cfg_.set("logger.file-verbosity", caf::atom("quiet"));
    cfg_.set("logger.console-verbosity", caf::atom("quiet"));
    sys_ = std::make_unique<caf::actor_system>(cfg_);
    self_ = std::make_unique<caf::scoped_actor>(*sys_, true);
    dir_ = (fs::temp_directory_path() / ("myriad-actors-" + std::to_string(::getpid()) + "-" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    base_ = model_shape("tiny").value();
  }
  ~ServiceActors() override {
    sched().run();
    self_.reset();
    for (const auto& a : spawned_) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    sched().run();
    spawned_.clear();
    sys_->await_actors_before_shutdown(
        false);  // a failed case may leave a request pending: do not hang on it
    sys_.reset();
    fs::remove_all(dir_);
  }

  caf::scheduler::test_coordinator& sched() {
    return dynamic_cast<caf::scheduler::test_coordinator&>(sys_->scheduler());
  }
  caf::scoped_actor& self() { return *self_; }

  template <class Handle>
  Handle keep(Handle h) {
    spawned_.push_back(caf::actor_cast<caf::actor>(h));
    return h;
  }

  registry_actor registry() {
    if (!registry_) {
      auto store = AdapterStore::open(dir_ + "/data", base_, "fingerprint");
      EXPECT_TRUE(store.ok()) << store.error().to_string();
      registry_ = keep(sys_->spawn(registry_behavior, std::shared_ptr<AdapterStore>(std::move(store.value())),
                                   std::string("tiny")));
    }
    return registry_;
  }

  // Publishes a random adapter as tenant/name through the registry.
  AdapterRecord publish(const std::string& tenant, const std::string& name, uint64_t seed) {
    const std::string folder = dir_ + "/src-" + name + "-" + std::to_string(seed);
    EXPECT_TRUE(save_peft_adapter(folder, *random_lora(base_, 4, 8.0f, seed, name), "tiny").ok());
    self()->send(registry(), publish_atom::value, registry_call(tenant, false, name, folder));
    sched().run();
    auto answer = next<AdapterAnswerWire>();
    auto record = read_answer(answer);
    EXPECT_TRUE(record.ok() && record.value()) << (record.ok() ? "base" : record.error().to_string());
    return record.ok() && record.value() ? *record.value() : AdapterRecord{};
  }

  // The next message in the test's own mailbox (a reply), which must be a T.
  template <class T>
  T next() {
    T out;
    bool got = false;
    self()->receive(
        [&](T& x) {
          out = std::move(x);
          got = true;
        },
        caf::after(std::chrono::seconds(0)) >> [] {});
    EXPECT_TRUE(got) << "no " << typeid(T).name() << " in the mailbox";
    return out;
  }
  bool mailbox_empty() {
    bool empty = true;
    self()->receive([&](caf::message&) { empty = false; }, caf::after(std::chrono::seconds(0)) >> [] {});
    return empty;
  }

  Request request(uint32_t max_tokens = 8) {
    Request r;
    r.prompt = {1, 2, 3};
    r.max_tokens = max_tokens;
    return r;
  }

  // Sends a Generate to the gateway and runs the system; the answer.
  Result<uint64_t> generate(const gateway_actor& gw, const std::string& tenant, const std::string& model,
                            const event_sink_actor& client, uint64_t id = 0) {
    Request r = request();
    r.id = id;
    self()->send(gw, generate_atom::value, generate_wire(tenant, false, model, r), client);
    sched().run();
    return read_accepted(next<AcceptedWire>());
  }

  // Worker `id` joins the gateway behind scheduler `s` and reports its first
  // load: `pending_tokens`, the adapters in its slots.
  void join(const gateway_actor& gw, const std::string& id, const scheduler_actor& s, uint64_t pending_tokens,
            const std::vector<AdapterId>& resident = {}) {
    self()->send(gw, add_worker_atom::value, id, s);
    self()->send(gw, load_atom::value, load(id, 1, pending_tokens, resident));
  }

  static WorkerLoadWire load(const std::string& worker, uint64_t seq, uint64_t pending_tokens,
                             const std::vector<AdapterId>& resident, const std::vector<AdapterId>& cached = {}) {
    return WorkerLoadWire::from([&](schema::WorkerLoad::Builder w) {
      w.setWorker(worker);
      w.setSeq(seq);
      w.setPendingTokens(pending_tokens);
      auto slots = w.initSlots(uint32_t(resident.size()));
      for (uint32_t i = 0; i < resident.size(); ++i) {
        slots[i].setSlot(i);
        write_adapter_id(resident[i], slots[i].initAdapter());
      }
      auto host = w.initHostCached(uint32_t(cached.size()));
      for (uint32_t i = 0; i < cached.size(); ++i) write_adapter_id(cached[i], host[i]);
    });
  }

  static EventWire token(uint64_t id, uint32_t index, const std::string& text, uint32_t attempt = 0,
                         int32_t token_id = 7) {
    RequestEvent e;
    e.id = id;
    e.kind = EventKind::kToken;
    e.token = token_id;
    e.index = index;
    e.text = text;
    return encode_event(e, attempt);
  }
  static EventWire finished(uint64_t id, uint32_t n) {
    RequestEvent e;
    e.id = id;
    e.kind = EventKind::kFinished;
    e.reason = FinishReason::kLength;
    e.num_output_tokens = n;
    return encode_event(e, 0);
  }

  caf::actor_system_config cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  std::unique_ptr<caf::scoped_actor> self_;
  std::vector<caf::actor> spawned_;
  std::string dir_;
  ModelConfig base_;
  registry_actor registry_;
};

TEST_F(ServiceActors, PlacementPrefersTheWorkerHoldingTheAdapterUntilItIsTooBusy) {
  const AdapterRecord a = publish("alpha", "a", 1);
  auto w0 = std::make_shared<Log>(), w1 = std::make_shared<Log>();
  auto gw = keep(sys_->spawn(gateway_behavior, registry(), gateway_options()));
  join(gw, "w0", keep(sys_->spawn(recording_scheduler, w0)), 500);
  join(gw, "w1", keep(sys_->spawn(recording_scheduler, w1)), 2000, {a.id});
  sched().run();
  auto client = keep(sys_->spawn(recording_sink, std::make_shared<Seen>()));

  ASSERT_TRUE(generate(gw, "alpha", "alpha/a", client).ok());  // warm w1: 2000 <= 500 + 4096 tokens
  EXPECT_EQ(w1->submitted.size(), 1u);
  ASSERT_TRUE(generate(gw, "alpha", "tiny", client).ok());  // the base: the less loaded
  EXPECT_EQ(w0->submitted.size(), 1u);
  self()->send(gw, load_atom::value, load("w1", 2, 6000, {a.id}));  // too busy now: a copy goes to w0
  self()->send(gw, load_atom::value, load("w1", 1, 0, {}));         // a stale report: ignored
  sched().run();
  ASSERT_TRUE(generate(gw, "alpha", "alpha/a", client).ok());
  EXPECT_EQ(w0->submitted.size(), 2u);
  EXPECT_EQ(w1->submitted.size(), 1u);
  // Host memory is warmer than nothing: w1 (lighter, nothing there) loses to
  // w0, which has the adapter in RAM.
  self()->send(gw, load_atom::value, load("w0", 2, 900, {}, {a.id}));
  self()->send(gw, load_atom::value, load("w1", 3, 100, {}));
  sched().run();
  ASSERT_TRUE(generate(gw, "alpha", "alpha/a", client).ok());
  EXPECT_EQ(w0->submitted.size(), 3u);
  ASSERT_TRUE(generate(gw, "alpha", "tiny", client).ok());  // the base: no affinity, the lighter
  EXPECT_EQ(w1->submitted.size(), 2u);
  // Another tenant's adapter is not found, exactly like a missing one.
  auto other = generate(gw, "beta", "alpha/a", client);
  auto missing = generate(gw, "beta", "alpha/nope", client);
  ASSERT_FALSE(other.ok());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(other.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(other.error().message, "model 'alpha/a' does not exist");
  EXPECT_EQ(missing.error().message, "model 'alpha/nope' does not exist");
}

TEST_F(ServiceActors, ADeleteWaitsForTheRequestPinningItsVersion) {
  const AdapterRecord a = publish("alpha", "a", 1);
  auto w = std::make_shared<Log>();
  auto gw = keep(sys_->spawn(gateway_behavior, registry(), gateway_options()));
  self()->send(gw, add_worker_atom::value, std::string("w0"), keep(sys_->spawn(recording_scheduler, w)));
  auto seen = std::make_shared<Seen>();
  auto client = keep(sys_->spawn(recording_sink, seen));
  auto id = generate(gw, "alpha", "alpha/a@1", client);
  ASSERT_TRUE(id.ok()) << id.error().to_string();

  self()->send(registry(), remove_atom::value, registry_call("alpha", false, "a"));
  sched().run();
  EXPECT_TRUE(mailbox_empty()) << "the delete answered while a request pinned the version";
  auto refused = generate(gw, "alpha", "alpha/a", client);  // retiring: new requests no longer resolve it
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kNotFound);

  self()->send(registry(), status_atom::value, registry_call("alpha", false, "a"));
  sched().run();
  auto status = next<AdapterStatusWire>();
  auto st = status.decode();
  ASSERT_TRUE(st.ok());
  ASSERT_EQ(st->get().getVersions().size(), 1u);
  EXPECT_EQ(st->get().getVersions()[0].getPins(), 1u);
  EXPECT_TRUE(st->get().getVersions()[0].getDeleting());

  // The worker finishes the request: the client gets the final event, the
  // gateway hears of it through the scheduler (released), unpins, and the
  // delete goes through.
  caf::anon_send(w->sinks.at(0), event_atom::value, finished(id.value(), 8));
  caf::anon_send(gw, released_atom::value, finished(id.value(), 8));
  sched().run();
  ASSERT_EQ(seen->events.size(), 1u);
  auto removed = read_list(next<AdapterListWire>());
  ASSERT_TRUE(removed.ok()) << removed.error().to_string();
  ASSERT_EQ(removed->size(), 1u);
  EXPECT_EQ(removed->at(0).id, a.id);
  self()->send(registry(), resolve_atom::value, registry_call("alpha", false, "alpha/a"));
  sched().run();
  EXPECT_FALSE(read_answer(next<AdapterAnswerWire>()).ok());
}

TEST_F(ServiceActors, ResidencyMovesThroughLoadingSlotAndSwapOutIgnoringStaleReports) {
  const AdapterRecord a = publish("alpha", "a", 1);
  auto report = [&](uint64_t seq, int where, uint32_t slot) {
    self()->send(registry(), residency_atom::value,
                 ResidencyWire::from([&](schema::AdapterResidency::Builder r) {
                   write_adapter_id(a.id, r.initAdapter());
                   r.setWorker("w0");
                   r.setSeq(seq);
                   if (where == 0) r.getWhere().setLoading(slot);
                   if (where == 1) r.getWhere().setSlot(slot);
                   if (where == 2) r.getWhere().setHostCache();
                 }));
    sched().run();
  };
  auto where = [&]() -> std::string {
    self()->send(registry(), status_atom::value, registry_call("alpha", false, "a"));
    sched().run();
    auto s = next<AdapterStatusWire>();
    auto d = s.decode();
    if (!d || d->get().getVersions().size() != 1 || d->get().getVersions()[0].getResidency().size() != 1)
      return "none";
    auto r = d->get().getVersions()[0].getResidency()[0];
    switch (r.getWhere().which()) {
      case schema::AdapterResidency::Where::LOADING:
        return "loading " + std::to_string(r.getWhere().getLoading());
      case schema::AdapterResidency::Where::SLOT:
        return "slot " + std::to_string(r.getWhere().getSlot());
      case schema::AdapterResidency::Where::HOST_CACHE:
        return "hostCache";
      default:
        return "other";
    }
  };
  EXPECT_EQ(where(), "none");
  report(1, 0, 3);
  EXPECT_EQ(where(), "loading 3");
  report(2, 1, 3);
  EXPECT_EQ(where(), "slot 3");
  report(1, 2, 0);  // older than the last report: ignored
  EXPECT_EQ(where(), "slot 3");
  report(5, 2, 0);
  EXPECT_EQ(where(), "hostCache");
}

TEST_F(ServiceActors, TheSchedulerBoundsWhatWaitsAndCancelsAWaiterItself) {
  auto w = std::make_shared<Log>();
  auto worker = keep(sys_->spawn(recording_worker, w));
  SchedulerActorOptions o;
  o.worker_id = "w0";
  o.limits.max_seq_len = 64;
  o.limits.vocab_size = 260;
  o.limits.num_kv_blocks = 16;
  o.max_in_worker = 1;
  o.max_waiting = 1;
  auto loads = keep(sys_->spawn(ignoring_load_sink, w));
  auto sched_actor = keep(sys_->spawn(scheduler_behavior, worker, loads, o));
  auto seen = std::make_shared<Seen>();
  auto sink = keep(sys_->spawn(recording_sink, seen));
  auto submit = [&](uint64_t id, uint32_t max_tokens = 8) {
    Request r = request(max_tokens);
    r.id = id;
    self()->send(sched_actor, submit_atom::value, encode_submit(r), sink);
    sched().run();
    return read_accepted(next<AcceptedWire>());
  };
  auto cancel = [&](uint64_t id) {
    self()->send(sched_actor, cancel_atom::value,
                 CancelWire::from([&](schema::CancelRequest::Builder c) { c.setRequestId(id); }));
    sched().run();
  };

  auto too_long = submit(9, 100);
  ASSERT_FALSE(too_long.ok());
  EXPECT_EQ(too_long.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(too_long.error().message.find("64"), std::string::npos) << too_long.error().message;

  ASSERT_TRUE(submit(1).ok());  // into the worker
  ASSERT_TRUE(submit(2).ok());  // waits here
  auto over = submit(3);        // nothing more may wait
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().code, ErrorCode::kOverloaded);
  EXPECT_EQ(w->submitted, (std::vector<uint64_t>{1}));

  cancel(2);  // waiting: answered here, the worker never sees it
  ASSERT_EQ(seen->events.size(), 1u);
  EXPECT_EQ(seen->events[0].id, 2u);
  EXPECT_EQ(seen->events[0].reason, FinishReason::kCancelled);
  EXPECT_TRUE(w->cancelled.empty());

  ASSERT_TRUE(submit(4).ok());  // waits behind 1
  self()->send(sched_actor, released_atom::value, finished(1, 8));
  sched().run();
  EXPECT_EQ(w->submitted, (std::vector<uint64_t>{1, 4}));  // 1 released: 4 admitted
  cancel(4);                                               // in the worker: the worker cancels it
  EXPECT_EQ(w->cancelled, (std::vector<uint64_t>{4}));
}

// The scheduler actor owns the time-sliced active set: with one slot only
// the active adapter's requests reach the worker; when its quantum has
// passed (the actor's own timer) it drains, and once its requests in the
// worker have ended the adapter that waited takes the slot.
TEST_F(ServiceActors, TheSchedulerLetsOnlyItsActiveSetIntoTheWorkerAndRotatesItAtTheQuantum) {
  auto clock = std::make_shared<double>(0.0);
  auto w = std::make_shared<Log>();
  auto worker = keep(sys_->spawn(recording_worker, w));
  SchedulerActorOptions o;
  o.worker_id = "w0";
  o.limits.vocab_size = 260;
  o.limits.num_kv_blocks = 16;
  o.limits.num_slots = 1;
  o.quantum_ms = 50;
  o.max_in_worker = 2;
  o.now_ms = [clock] { return *clock; };
  auto sa = keep(sys_->spawn(scheduler_behavior, worker, keep(sys_->spawn(ignoring_load_sink, w)), o));
  auto seen = std::make_shared<Seen>();
  auto sink = keep(sys_->spawn(recording_sink, seen));
  auto submit = [&](uint64_t id, const char* adapter) {
    Request r = request();
    r.id = id;
    r.adapters = {AdapterUse{AdapterId{"t", adapter, 1}, 1.0f}};
    self()->send(sa, submit_atom::value, encode_submit(r), sink);
    sched().run();
    EXPECT_TRUE(read_accepted(next<AcceptedWire>()).ok());
  };
  auto release = [&](uint64_t id) {
    self()->send(sa, released_atom::value, finished(id, 8));
    sched().run();
  };
  submit(1, "a");
  submit(2, "a");
  submit(3, "a");  // no room in the worker: waits here
  submit(4, "b");  // a is active with requests waiting: b waits for its quantum
  submit(5, "a");
  EXPECT_EQ(w->submitted, (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(w->prefetched, (std::vector<uint64_t>{3, 4, 5})) << "what waits has its adapter fetched meanwhile";
  release(1);
  EXPECT_EQ(w->submitted, (std::vector<uint64_t>{1, 2, 3}));
  *clock = 49;
  self()->send(sa, tick_atom::value);
  sched().run();
  submit(6, "a");
  release(2);  // room, but b may not enter yet; 5 of a does (6 keeps a's queue from running dry)
  EXPECT_EQ(w->submitted, (std::vector<uint64_t>{1, 2, 3, 5}));
  *clock = 50;
  self()->send(sa, tick_atom::value);  // the timer the actor set for a's quantum: a drains
  sched().run();
  release(3);
  EXPECT_EQ(w->submitted.size(), 4u) << "5 of a still runs in the worker; 6 waits for a's next turn";
  release(5);
  EXPECT_EQ(w->submitted, (std::vector<uint64_t>{1, 2, 3, 5, 4})) << "a drained: b's turn";
  release(4);
  EXPECT_EQ(w->submitted, (std::vector<uint64_t>{1, 2, 3, 5, 4, 6})) << "b has nothing left: a is back";
}

TEST_F(ServiceActors, EventsGoStraightToTheClientCancelReachesTheWorkerAndDrainWaits) {
  auto w = std::make_shared<Log>();
  auto worker = keep(sys_->spawn(recording_worker, w));
  auto gw = keep(sys_->spawn(gateway_behavior, registry(), gateway_options()));
  SchedulerActorOptions o;
  o.worker_id = "w0";
  o.limits.vocab_size = 260;
  o.limits.num_kv_blocks = 16;
  auto sa = keep(sys_->spawn(scheduler_behavior, worker, caf::actor_cast<load_sink_actor>(gw), o));
  self()->send(gw, add_worker_atom::value, std::string("w0"), sa);
  auto seen = std::make_shared<Seen>();
  auto client = keep(sys_->spawn(recording_sink, seen));
  auto id = generate(gw, "default", "tiny", client, 77);
  ASSERT_TRUE(id.ok()) << id.error().to_string();
  EXPECT_EQ(id.value(), 77u);  // the front end's id is kept
  ASSERT_EQ(w->submitted, (std::vector<uint64_t>{77}));

  EXPECT_EQ(w->sinks[0], client);  // the worker sends events straight to the client
  // Events sent to the gateway are relayed to the route's client, except
  // another attempt's (stale).
  self()->send(gw, event_atom::value, token(77, 0, "he"));
  self()->send(gw, event_atom::value, token(77, 1, "llo", /*attempt=*/3));
  sched().run();
  self()->send(gw, cancel_atom::value,
               CancelWire::from([](schema::CancelRequest::Builder c) { c.setRequestId(77); }));
  sched().run();
  EXPECT_EQ(w->cancelled, (std::vector<uint64_t>{77}));  // gateway -> scheduler -> worker
  // The worker ends it: the final event to the client, released to the
  // scheduler, which tells the gateway; the route is gone after that.
  caf::anon_send(w->sinks[0], event_atom::value, finished(77, 1));
  self()->send(sa, released_atom::value, finished(77, 1));
  sched().run();
  self()->send(gw, event_atom::value, token(77, 2, "late"));  // no route any more: dropped
  sched().run();
  ASSERT_EQ(seen->events.size(), 2u);
  EXPECT_EQ(seen->texts[0], "he");
  EXPECT_TRUE(seen->events[1].is_final());

  // Drain: the gateway refuses new work at once, and answers once the
  // scheduler has drained its worker (nothing runs there any more).
  self()->send(gw, drain_atom::value);
  sched().run();
  EXPECT_TRUE(next<bool>());
  EXPECT_EQ(w->drains, 1);
  auto refused = generate(gw, "default", "tiny", client);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kUnavailable);
}

TEST_F(ServiceActors, RequestsOfALostWorkerArePlacedAgainThenWaitForOne) {
  auto w0 = std::make_shared<Log>(), w1 = std::make_shared<Log>();
  auto gw = keep(sys_->spawn(gateway_behavior, registry(), gateway_options()));
  auto s0 = keep(sys_->spawn(recording_scheduler, w0));
  auto s1 = keep(sys_->spawn(recording_scheduler, w1));
  join(gw, "w0", s0, 100);
  join(gw, "w1", s1, 3000);
  sched().run();
  auto seen = std::make_shared<Seen>();
  auto client = keep(sys_->spawn(recording_sink, seen));
  auto a = generate(gw, "alpha", "tiny", client);
  auto b = generate(gw, "alpha", "tiny", client);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(w0->submitted.size(), 2u);

  caf::anon_send_exit(s0, caf::exit_reason::kill);  // the worker's process died
  sched().run();
  ASSERT_EQ(w1->submitted, (std::vector<uint64_t>{std::min(a.value(), b.value()), std::max(a.value(), b.value())}));
  EXPECT_EQ(w1->attempts, (std::vector<uint32_t>{1, 1}));  // the same ids, a newer attempt
  EXPECT_TRUE(seen->events.empty()) << "placed again invisibly: the client was told nothing";
  auto c = generate(gw, "alpha", "tiny", client);  // new requests skip the lost worker
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(w1->submitted.size(), 3u);
  EXPECT_EQ(w0->submitted.size(), 2u);

  caf::anon_send_exit(s1, caf::exit_reason::kill);  // no worker left: they wait for one
  sched().run();
  EXPECT_TRUE(seen->events.empty());
  sched().trigger_timeouts();  // none joins in time
  sched().run();
  ASSERT_EQ(seen->events.size(), 3u);  // one final each
  for (const RequestEvent& e : seen->events) {
    EXPECT_EQ(e.kind, EventKind::kFailed);
    EXPECT_EQ(e.error.code, ErrorCode::kUnavailable);
    EXPECT_NE(e.error.message.find("no worker could take the request"), std::string::npos) << e.error.message;
  }
}

// Lost mid-stream: the gateway asks the client's sink which tokens it has
// and the next worker gets them to prefill (resume_output), as attempt 1.
// A sink that does not answer: the request starts again from its prompt.
TEST_F(ServiceActors, ARequestLostMidStreamResumesAfterTheTokensItsClientHas) {
  auto w0 = std::make_shared<Log>(), w1 = std::make_shared<Log>();
  auto gw = keep(sys_->spawn(gateway_behavior, registry(), gateway_options()));
  auto s0 = keep(sys_->spawn(recording_scheduler, w0));
  auto s1 = keep(sys_->spawn(recording_scheduler, w1));
  join(gw, "w0", s0, 100);
  join(gw, "w1", s1, 3000);
  sched().run();
  auto seen = std::make_shared<Seen>();
  auto client = keep(sys_->spawn(recording_sink, seen));
  auto a = generate(gw, "alpha", "tiny", client);
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(w0->submitted, std::vector<uint64_t>{a.value()});
  EXPECT_TRUE(w0->resumed[0].empty());
  for (uint32_t i = 0; i < 3; ++i) self()->send(w0->sinks[0], event_atom::value, token(a.value(), i, "x", 0, 11 + int32_t(i)));
  sched().run();
  ASSERT_EQ(seen->events.size(), 3u);

  caf::anon_send_exit(s0, caf::exit_reason::kill);
  sched().run();
  EXPECT_EQ(seen->resume_queries, (std::vector<std::pair<uint64_t, uint32_t>>{{a.value(), 1}}));
  ASSERT_EQ(w1->submitted, std::vector<uint64_t>{a.value()});
  EXPECT_EQ(w1->attempts, std::vector<uint32_t>{1});
  EXPECT_EQ(w1->resumed[0], (std::vector<int32_t>{11, 12, 13}));
  self()->send(gw, metrics_atom::value);
  sched().run();
  const auto metrics = nlohmann::json::parse(next<std::string>());
  EXPECT_EQ(metrics["resumed"], 1);
  EXPECT_EQ(metrics["resumed_tokens"], 3);

  // The next worker is lost too, and the sink does not answer: from the prompt.
  auto s2 = keep(sys_->spawn(recording_scheduler, w0));
  join(gw, "w2", s2, 0);
  sched().run();
  seen->answer_resume = false;
  caf::anon_send_exit(s1, caf::exit_reason::kill);
  sched().run();
  ASSERT_EQ(seen->resume_queries.size(), 2u);
  EXPECT_EQ(seen->resume_queries[1], (std::pair<uint64_t, uint32_t>{a.value(), 2}));
  ASSERT_EQ(w0->submitted.size(), 2u);
  EXPECT_EQ(w0->attempts.back(), 2u);
  EXPECT_TRUE(w0->resumed.back().empty());
}

TEST_F(ServiceActors, WithNoWorkerUpRequestsWaitForOneUntilTheirDeadline) {
  auto w0 = std::make_shared<Log>();
  auto gw = keep(sys_->spawn(gateway_behavior, registry(), gateway_options()));
  auto seen = std::make_shared<Seen>();
  auto client = keep(sys_->spawn(recording_sink, seen));
  // No worker has joined: accepted, held.
  auto a = generate(gw, "alpha", "tiny", client);
  auto b = generate(gw, "alpha", "tiny", client);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(seen->events.empty());
  self()->send(gw, cancel_atom::value, CancelWire::from([&](schema::CancelRequest::Builder c) {
                 c.setRequestId(b.value());
               }));
  sched().run();
  ASSERT_EQ(seen->events.size(), 1u);  // a held request cancelled ends there, once
  EXPECT_EQ(seen->events[0].id, b.value());
  EXPECT_EQ(seen->events[0].reason, FinishReason::kCancelled);
  // A worker joins: the held request goes to it.
  self()->send(gw, add_worker_atom::value, std::string("w0"), keep(sys_->spawn(recording_scheduler, w0)));
  sched().run();
  EXPECT_EQ(w0->submitted, std::vector<uint64_t>{a.value()});
  EXPECT_EQ(sched().trigger_timeouts(), 2u);  // their waits end: nothing left to fail
  sched().run();
  EXPECT_EQ(seen->events.size(), 1u);
}

TEST_F(ServiceActors, AHeldRequestFailsOnceItsWaitEnds) {
  GatewayOptions options = gateway_options();
  options.max_wait_for_worker_ms = 500;
  auto gw = keep(sys_->spawn(gateway_behavior, registry(), options));
  auto seen = std::make_shared<Seen>();
  auto client = keep(sys_->spawn(recording_sink, seen));
  auto a = generate(gw, "alpha", "tiny", client);
  ASSERT_TRUE(a.ok());
  sched().run();
  EXPECT_TRUE(seen->events.empty());
  EXPECT_EQ(sched().trigger_timeouts(), 1u);
  sched().run();
  ASSERT_EQ(seen->events.size(), 1u);
  EXPECT_EQ(seen->events[0].kind, EventKind::kFailed);
  EXPECT_EQ(seen->events[0].error.code, ErrorCode::kUnavailable);
  EXPECT_NE(seen->events[0].error.message.find("no worker could take the request"), std::string::npos);
  // A worker joining later gets nothing: the request ended.
  auto w0 = std::make_shared<Log>();
  self()->send(gw, add_worker_atom::value, std::string("w0"), keep(sys_->spawn(recording_scheduler, w0)));
  sched().run();
  EXPECT_TRUE(w0->submitted.empty());
}

TEST_F(ServiceActors, AWorkerWhoseHeartbeatsStopIsLostAndItsRequestsMove) {
  auto w0 = std::make_shared<Log>(), w1 = std::make_shared<Log>();
  auto gw = keep(sys_->spawn(gateway_behavior, registry(), gateway_options(1000)));
  join(gw, "w0", keep(sys_->spawn(recording_scheduler, w0)), 100);
  join(gw, "w1", keep(sys_->spawn(recording_scheduler, w1)), 3000);
  sched().run();
  auto client = keep(sys_->spawn(recording_sink, std::make_shared<Seen>()));
  auto a = generate(gw, "alpha", "tiny", client);
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(w0->submitted.size(), 1u);
  // w1 keeps reporting every 300 ms; w0 (alive, but its step loop hung, say) stops.
  for (uint64_t k = 1; k <= 3; ++k) {
    sched().advance_time(std::chrono::milliseconds(300));
    sched().run();
    self()->send(gw, load_atom::value, load("w1", 1 + k, 3000, {}));
    sched().run();
    EXPECT_TRUE(w1->submitted.empty()) << "at " << 300 * k << " ms w0 is not yet past the 1000 ms timeout";
  }
  sched().advance_time(std::chrono::milliseconds(300));  // 1200 ms: the next check finds w0 silent too long
  sched().run();
  EXPECT_EQ(w1->submitted, std::vector<uint64_t>{a.value()});
  EXPECT_EQ(w1->attempts, std::vector<uint32_t>{1});
  // A late report from the lost worker does not bring it back.
  self()->send(gw, load_atom::value, load("w0", 2, 0, {}));
  sched().run();
  ASSERT_TRUE(generate(gw, "alpha", "tiny", client).ok());
  EXPECT_EQ(w0->submitted.size(), 1u);
  EXPECT_EQ(w1->submitted.size(), 2u);
}

// A worker inside a long step sends bare heartbeats (its step thread has not
// taken a report): it stays up, its last load figures stay, and its report
// age grows; once the heartbeats stop too, it is lost.
TEST_F(ServiceActors, AWorkerInALongStepHeartbeatsAndStaysUp) {
  auto w0 = std::make_shared<Log>(), w1 = std::make_shared<Log>();
  auto gw = keep(sys_->spawn(gateway_behavior, registry(), gateway_options(1000)));
  join(gw, "w0", keep(sys_->spawn(recording_scheduler, w0)), 100);
  join(gw, "w1", keep(sys_->spawn(recording_scheduler, w1)), 3000);
  sched().run();
  auto client = keep(sys_->spawn(recording_sink, std::make_shared<Seen>()));
  auto a = generate(gw, "alpha", "tiny", client);
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(w0->submitted.size(), 1u);
  auto heartbeat = [](const std::string& worker) {
    return WorkerLoadWire::from([&](schema::WorkerLoad::Builder w) {
      w.setWorker(worker);
      w.setHeartbeat(true);
    });
  };
  for (uint64_t k = 1; k <= 10; ++k) {  // 3 s of heartbeats only from w0, full reports from w1
    sched().advance_time(std::chrono::milliseconds(300));
    sched().run();
    self()->send(gw, load_atom::value, heartbeat("w0"));
    self()->send(gw, load_atom::value, load("w1", 1 + k, 3000, {}));
    sched().run();
  }
  EXPECT_TRUE(w1->submitted.empty()) << "a worker that heartbeats is not lost";
  self()->send(gw, metrics_atom::value);
  sched().run();
  const auto view = nlohmann::json::parse(next<std::string>());
  const auto& w = view["workers"][0];
  ASSERT_EQ(w["id"], "w0");
  EXPECT_EQ(w["up"], true);
  EXPECT_EQ(w["pending_tokens"], 100) << "a heartbeat carries no load figures";
  EXPECT_GE(w["report_age_ms"].get<double>(), 2900.0);
  EXPECT_LE(w["heartbeat_age_ms"].get<double>(), 1.0);
  EXPECT_EQ(w["heartbeats_missed"], 0);
  // The heartbeats stop: lost after the timeout, its request moves.
  for (int k = 0; k < 4; ++k) {
    sched().advance_time(std::chrono::milliseconds(300));
    sched().run();
    self()->send(gw, load_atom::value, load("w1", 20 + uint64_t(k), 3000, {}));
    sched().run();
  }
  EXPECT_EQ(w1->submitted, std::vector<uint64_t>{a.value()});
}

// Workers that come and go do not grow the gateway's list without end: the
// oldest lost ones beyond max_lost_listed are forgotten, and a request on a
// later worker still reaches it (its index moved down).
TEST_F(ServiceActors, TheOldestLostWorkersAreForgotten) {
  GatewayOptions o = gateway_options();
  o.max_lost_listed = 2;
  auto gw = keep(sys_->spawn(gateway_behavior, registry(), o));
  auto dead = std::make_shared<Log>(), live = std::make_shared<Log>();
  std::vector<scheduler_actor> doomed;
  for (int i = 0; i < 4; ++i) {
    doomed.push_back(keep(sys_->spawn(recording_scheduler, dead)));
    join(gw, "d" + std::to_string(i), doomed.back(), 0);
  }
  join(gw, "live", keep(sys_->spawn(recording_scheduler, live)), 10000);
  sched().run();
  for (const auto& d : doomed) caf::anon_send_exit(d, caf::exit_reason::kill);
  sched().run();
  auto client = keep(sys_->spawn(recording_sink, std::make_shared<Seen>()));
  auto a = generate(gw, "alpha", "tiny", client);
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(live->submitted, std::vector<uint64_t>{a.value()});
  // One more comes and goes: the oldest lost one is forgotten, before "live" in the list.
  auto d4 = keep(sys_->spawn(recording_scheduler, dead));
  join(gw, "d4", d4, 0);
  sched().run();
  caf::anon_send_exit(d4, caf::exit_reason::kill);
  sched().run();
  self()->send(gw, metrics_atom::value);
  sched().run();
  const auto view = nlohmann::json::parse(next<std::string>());
  std::vector<std::string> listed;
  for (const auto& w : view["workers"]) listed.push_back(w["id"].get<std::string>() + (w["up"] ? "" : " (lost)"));
  EXPECT_EQ(listed, (std::vector<std::string>{"d3 (lost)", "live", "d4 (lost)"}));
  self()->send(gw, cancel_atom::value, CancelWire::from([&](schema::CancelRequest::Builder c) {
                 c.setRequestId(a.value());
               }));
  sched().run();
  EXPECT_EQ(live->cancelled, std::vector<uint64_t>{a.value()}) << "the cancel reaches the worker that runs it";
}

TEST_F(ServiceActors, AWorkerFetchesAVersionsFilesFromTheRegistryByItsId) {
  const AdapterRecord a = publish("alpha", "a", 1);
  self()->send(registry(), fetch_atom::value, registry_call("", true, a.id.to_string()));
  sched().run();
  auto files = next<AdapterFilesWire>();
  auto d = files.decode();
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE(d->get().isFiles());
  auto f = d->get().getFiles();
  EXPECT_EQ(read_adapter_id(f.getAdapter()), a.id);
  EXPECT_EQ(std::string(f.getSha256().cStr()), a.sha256);
  const std::string config(f.getConfigJson().cStr(), f.getConfigJson().size());
  const std::string weights(reinterpret_cast<const char*>(f.getSafetensors().begin()), f.getSafetensors().size());
  EXPECT_EQ(sha256_hex(config), std::string(f.getConfigSha256().cStr()));
  EXPECT_EQ(sha256_hex(weights), std::string(f.getWeightsSha256().cStr()));
  EXPECT_EQ(config.size() + weights.size(), a.size_bytes);

  self()->send(registry(), fetch_atom::value, registry_call("", true, "alpha/a@9"));
  sched().run();
  auto missing = next<AdapterFilesWire>().decode();
  ASSERT_TRUE(missing.ok());
  ASSERT_TRUE(missing->get().isError());
  EXPECT_EQ(read_error(missing->get().getError()).code, ErrorCode::kNotFound);
}

// The door: a join needs a fresh nonce, the proof of the secret over it and
// the gateway's base fingerprint; only then does the gateway place there.
TEST_F(ServiceActors, AWorkerJoinsThroughTheDoorOnlyWithTheSecretAndTheBase) {
  auto gw = keep(sys_->spawn(gateway_behavior, registry(), gateway_options()));
  ClusterDoorOptions o;
  o.base_model = "tiny";
  o.base_fingerprint = "base-fp";
  o.secret = "sixteen-byte-secret!";
  auto door = keep(sys_->spawn(cluster_door_behavior, gw, registry(), o, job_host_actor{}));
  auto w = std::make_shared<Log>();
  auto s0 = keep(sys_->spawn(recording_scheduler, w));
  auto hello = [&] {
    self()->send(door, hello_atom::value);
    sched().run();
    return next<std::string>();
  };
  auto join = [&](const std::string& nonce, const std::string& proof, const std::string& fingerprint) {
    self()->send(door, join_atom::value, JoinWire::from([&](schema::Join::Builder j) {
                   j.setWorker("w0");
                   j.setBaseFingerprint(fingerprint);
                   j.setNonce(nonce);
                   j.setProof(proof);
                 }),
                 s0, trainer_actor{});
    sched().run();
    Result<bool> out = make_error(ErrorCode::kInternal, "no answer");
    self()->receive(
        [&](JoinAnswerWire& a, load_sink_actor& sink, worker_registry_actor& reg) {
          auto d = a.decode();
          if (d->get().isError())
            out = read_error(d->get().getError());
          else
            out = bool(sink) && bool(reg);
        },
        caf::after(std::chrono::seconds(0)) >> [] {});
    return out;
  };
  auto seen = std::make_shared<Seen>();
  auto client = keep(sys_->spawn(recording_sink, seen));

  const std::string n1 = hello();
  EXPECT_EQ(n1.size(), 32u);
  auto wrong_secret = join(n1, join_proof("another-secret-entirely", n1, "w0"), "base-fp");
  ASSERT_FALSE(wrong_secret.ok());
  EXPECT_NE(wrong_secret.error().message.find("cluster secret"), std::string::npos) << wrong_secret.error().message;
  auto reused = join(n1, join_proof(o.secret, n1, "w0"), "base-fp");  // that nonce is spent
  ASSERT_FALSE(reused.ok());
  EXPECT_NE(reused.error().message.find("nonce"), std::string::npos) << reused.error().message;
  const std::string n2 = hello();
  auto other_base = join(n2, join_proof(o.secret, n2, "w0"), "other-fp");
  ASSERT_FALSE(other_base.ok());
  EXPECT_NE(other_base.error().message.find("other-fp"), std::string::npos) << other_base.error().message;
  EXPECT_NE(other_base.error().message.find("base-fp"), std::string::npos) << other_base.error().message;
  // Refused joins placed nothing: with no worker the request is held.
  ASSERT_TRUE(generate(gw, "default", "tiny", client).ok());
  EXPECT_TRUE(w->submitted.empty());

  const std::string n3 = hello();
  auto joined = join(n3, join_proof(o.secret, n3, "w0"), "base-fp");
  ASSERT_TRUE(joined.ok()) << joined.error().to_string();
  EXPECT_TRUE(joined.value()) << "accepted: the load sink and the registry's worker face";
  EXPECT_EQ(w->submitted.size(), 1u) << "the held request went to the worker that joined";
}

// A leaving worker: what waits in its scheduler goes back to the gateway
// (requeue) and runs elsewhere as a newer attempt; what runs there finishes.
TEST_F(ServiceActors, ALeavingWorkerHandsBackWhatWaitsAndTheGatewayPlacesItElsewhere) {
  auto w0 = std::make_shared<Log>(), w1 = std::make_shared<Log>();
  auto gw = keep(sys_->spawn(gateway_behavior, registry(), gateway_options()));
  auto worker0 = keep(sys_->spawn(recording_worker, w0));
  SchedulerActorOptions o;
  o.worker_id = "w0";
  o.limits.vocab_size = 260;
  o.limits.num_kv_blocks = 16;
  o.max_in_worker = 1;
  auto s0 = keep(sys_->spawn(scheduler_behavior, worker0, caf::actor_cast<load_sink_actor>(gw), o));
  auto s1 = keep(sys_->spawn(recording_scheduler, w1));
  self()->send(gw, add_worker_atom::value, std::string("w0"), s0);
  self()->send(gw, add_worker_atom::value, std::string("w1"), s1);
  self()->send(gw, load_atom::value, load("w0", 1, 0, {}));
  self()->send(gw, load_atom::value, load("w1", 1, 100000, {}));  // busy: w0 gets both
  sched().run();
  auto seen = std::make_shared<Seen>();
  auto client = keep(sys_->spawn(recording_sink, seen));
  auto a = generate(gw, "default", "tiny", client);
  auto b = generate(gw, "default", "tiny", client);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(w0->submitted, (std::vector<uint64_t>{a.value()}));  // b waits in w0's scheduler

  self()->send(gw, drain_atom::value, std::string("nobody"));
  sched().run();
  EXPECT_FALSE(next<bool>());
  self()->send(gw, drain_atom::value, std::string("w0"));
  sched().run();
  EXPECT_TRUE(next<bool>());
  EXPECT_EQ(w1->submitted, (std::vector<uint64_t>{b.value()}));  // b moved
  EXPECT_EQ(w1->attempts, (std::vector<uint32_t>{1}));
  EXPECT_TRUE(w0->cancelled.empty()) << "a runs on to its end";
  EXPECT_EQ(w0->drains, 0) << "the worker drains only once a has finished";
  caf::anon_send(s0, released_atom::value, finished(a.value(), 8));
  sched().run();
  EXPECT_EQ(w0->drains, 1);
  auto c = generate(gw, "default", "tiny", client);  // w0 takes no more, however idle
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(w1->submitted.size(), 2u);
  EXPECT_TRUE(seen->events.empty()) << "the client saw none of this";
}

// A worker that refuses as unavailable (it began leaving before its report
// said so): the gateway places the request on another one, not fails it.
TEST_F(ServiceActors, ARequestRefusedByADrainingWorkerGoesToAnother) {
  auto w0 = std::make_shared<Log>(), w1 = std::make_shared<Log>();
  auto gw = keep(sys_->spawn(gateway_behavior, registry(), gateway_options()));
  auto worker0 = keep(sys_->spawn(recording_worker, w0));
  SchedulerActorOptions o;
  o.worker_id = "w0";
  o.limits.vocab_size = 260;
  o.limits.num_kv_blocks = 16;
  auto s0 = keep(sys_->spawn(scheduler_behavior, worker0, keep(sys_->spawn(ignoring_load_sink, w0)), o));
  auto s1 = keep(sys_->spawn(recording_scheduler, w1));
  self()->send(s0, drain_atom::value);  // draining, but the gateway has not heard
  sched().run();
  EXPECT_TRUE(next<bool>());
  join(gw, "w0", s0, 0);
  join(gw, "w1", s1, 100000);
  sched().run();
  auto seen = std::make_shared<Seen>();
  auto client = keep(sys_->spawn(recording_sink, seen));
  auto a = generate(gw, "default", "tiny", client);
  ASSERT_TRUE(a.ok()) << a.error().to_string();
  EXPECT_TRUE(w0->submitted.empty());
  EXPECT_EQ(w1->submitted, (std::vector<uint64_t>{a.value()}));
}

// A cluster worker's scheduler before its join completes (or while its
// gateway is gone) has no load sink: final events and requeues wait for the
// next one, so the gateway never keeps a route (and a pinned version) forever.
TEST_F(ServiceActors, ASchedulerWithoutASinkKeepsFinalEventsForTheNextOne) {
  auto w = std::make_shared<Log>(), sink_log = std::make_shared<Log>();
  auto worker = keep(sys_->spawn(recording_worker, w));
  SchedulerActorOptions o;
  o.worker_id = "w0";
  o.limits.vocab_size = 260;
  o.limits.num_kv_blocks = 16;
  o.max_in_worker = 1;
  auto sa = keep(sys_->spawn(scheduler_behavior, worker, load_sink_actor{}, o));
  auto seen = std::make_shared<Seen>();
  auto client = keep(sys_->spawn(recording_sink, seen));
  for (uint64_t id : {1u, 2u}) {
    Request r = request();
    r.id = id;
    self()->send(sa, submit_atom::value, encode_submit(r), client);
    sched().run();
    ASSERT_TRUE(read_accepted(next<AcceptedWire>()).ok());
  }
  self()->send(sa, leave_atom::value);  // 2 waits: it is handed back
  sched().run();
  self()->send(sa, released_atom::value, finished(1, 8));    // 1 ends before any sink is attached
  self()->send(sa, load_atom::value, load("w0", 1, 0, {}));  // a load report is only dropped
  sched().run();
  EXPECT_EQ(w->submitted, (std::vector<uint64_t>{1})) << "2 never reached the worker";
  auto sink = keep(sys_->spawn(ignoring_load_sink, sink_log));
  self()->send(sa, attach_atom::value, sink);
  sched().run();
  EXPECT_EQ(sink_log->released, (std::vector<uint64_t>{1}));
  EXPECT_EQ(sink_log->requeued, (std::vector<std::pair<uint64_t, uint32_t>>{{2, 0}}));
}

// A request placed again keeps its deadline: the next attempt gets what is
// left of its timeout, counted from when the gateway accepted it.
TEST_F(ServiceActors, ARequestPlacedAgainKeepsItsDeadline) {
  auto w0 = std::make_shared<Log>(), w1 = std::make_shared<Log>();
  auto gw = keep(sys_->spawn(gateway_behavior, registry(), gateway_options()));
  auto s0 = keep(sys_->spawn(recording_scheduler, w0));
  auto s1 = keep(sys_->spawn(recording_scheduler, w1));
  join(gw, "w0", s0, 0);
  join(gw, "w1", s1, 100000);
  sched().run();
  auto seen = std::make_shared<Seen>();
  auto client = keep(sys_->spawn(recording_sink, seen));
  Request r = request();
  r.timeout_ms = 5000;
  self()->send(gw, generate_atom::value, generate_wire("default", false, "tiny", r), client);
  sched().run();
  ASSERT_TRUE(read_accepted(next<AcceptedWire>()).ok());
  ASSERT_EQ(w0->timeouts.size(), 1u);
  std::this_thread::sleep_for(std::chrono::milliseconds(60));  // it ran on w0 a while
  caf::anon_send_exit(s0, caf::exit_reason::kill);
  sched().run();
  ASSERT_EQ(w1->timeouts.size(), 1u);
  EXPECT_LE(w1->timeouts[0], 5000.0 - 60.0) << "the time on the lost worker counts";
  EXPECT_GT(w1->timeouts[0], 0.0);
}

TEST(AttemptFilter, EachTokenIndexReachesTheClientOnceAndLostAttemptsAreIgnored) {
  AttemptFilter f;
  EXPECT_TRUE(f.pass(7, 0, false, true, 0));
  EXPECT_TRUE(f.pass(7, 0, false, true, 1));
  // The worker is lost; attempt 1 starts again from the prompt.
  EXPECT_FALSE(f.pass(7, 1, false, true, 0));  // the client has it
  EXPECT_FALSE(f.pass(7, 1, false, true, 1));
  EXPECT_FALSE(f.pass(7, 0, false, true, 2));  // a late event of the lost attempt
  EXPECT_TRUE(f.pass(7, 1, false, true, 2));   // new to the client
  EXPECT_FALSE(f.pass(7, 0, true, false, 0));  // the lost attempt's final: ignored
  EXPECT_TRUE(f.pass(7, 1, true, false, 0));   // the one final answer
  EXPECT_EQ(f.tracked(), 0u);
  EXPECT_TRUE(f.pass(8, 0, false, false, 0));  // not a token (prompt logits): passes
  EXPECT_EQ(f.tracked(), 1u);
}

TEST(AttemptFilter, TheResumePointIsTheTokensTheClientHasAndEndsTheLostAttempt) {
  AttemptFilter f;
  EXPECT_TRUE(f.resume_point(9, 1).empty());  // nothing came yet
  EXPECT_FALSE(f.pass(9, 0, false, true, 0, 5)) << "the lost attempt's first token, late";
  EXPECT_TRUE(f.pass(9, 1, true, false, 0));
  EXPECT_TRUE(f.pass(7, 0, false, true, 0, 100));
  EXPECT_TRUE(f.pass(7, 0, false, true, 1, 101));
  EXPECT_EQ(f.resume_point(7, 1), (std::vector<int32_t>{100, 101}));
  EXPECT_FALSE(f.pass(7, 0, false, true, 2, 102)) << "the lost attempt's late token would be a second branch";
  EXPECT_FALSE(f.pass(7, 1, false, true, 1, 101));  // a resumed request cut back one token: sent again, dropped
  EXPECT_TRUE(f.pass(7, 1, false, true, 2, 202));
  EXPECT_EQ(f.resume_point(7, 2), (std::vector<int32_t>{100, 101, 202}));
  EXPECT_TRUE(f.pass(7, 2, true, false, 0));
  EXPECT_EQ(f.tracked(), 0u);
}

}  // namespace
}  // namespace myriad::actors
