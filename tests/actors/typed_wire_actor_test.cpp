// TypedWire messages through CAF actors: locally, and across two actor
// systems connected by the middleman on 127.0.0.1, which works only when both
// registered the kinds (register_message_types). CAF also refuses a kind the
// receiver's interface does not name, before any of our code runs.
#include <gtest/gtest.h>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <chrono>
#include <string>

#include "actors/event_wire.h"
#include "actors/message_types.h"
#include "actors/request_wire.h"

namespace myriad::actors {
namespace {

// A stand-in worker: answers a SubmitRequest with its final event (length,
// as many tokens as max_tokens, the prompt's length as text), echoing the
// attempt. Malformed input gets a caf::error naming the problem.
using submit_actor = caf::typed_actor<caf::replies_to<SubmitWire>::with<EventWire>>;

// (The name argument exists because CAF 0.17 spawns an argument-less
// function through a null pointer, which UBSan reports.)
submit_actor::behavior_type fake_worker(std::string /*name*/) {
  return {
      [](const SubmitWire& wire) -> caf::result<EventWire> {
        auto decoded = wire.decode();
        if (!decoded) return caf::make_error(caf::sec::invalid_argument, decoded.error().message);
        auto request = read_submit(decoded->get());
        if (!request) return caf::make_error(caf::sec::invalid_argument, request.error().message);
        const std::string text = "prompt of " + std::to_string(request->prompt.size());
        RequestEvent done;
        done.id = request->id;
        done.kind = EventKind::kFinished;
        done.reason = FinishReason::kLength;
        done.num_output_tokens = request->max_tokens;
        done.text = text;
        done.queue_ms = 0.5;
        return encode_event(done, decoded->get().getAttempt());
      },
  };
}

caf::actor_system_config& configure(caf::actor_system_config& cfg) {
  register_message_types(cfg);
  cfg.load<caf::io::middleman>();
  cfg.set("scheduler.max-threads", 2);
  return cfg;
}

// Sends `wire` to `target` from `sys`; the decoded reply, or an Error.
Result<OwnedEvent> submit_once(caf::actor_system& sys, const submit_actor& target, const SubmitWire& wire) {
  caf::scoped_actor self{sys};
  Result<OwnedEvent> out = make_error(ErrorCode::kInternal, "no reply");
  self->request(target, std::chrono::seconds(10), wire)
      .receive(
          [&](const EventWire& reply) {
            auto decoded = reply.decode();
            if (!decoded) {
              out = decoded.error();
              return;
            }
            out = read_event(decoded->get());
          },
          [&](caf::error& err) { out = make_error(ErrorCode::kInternal, sys.render(err)); });
  return out;
}

Request make_request(size_t prompt_len) {
  Request r;
  r.id = 4242;
  r.adapters = {AdapterUse{AdapterId{"alpha", "chat", 2}, 1.0f}};
  r.prompt.assign(prompt_len, 11);
  r.max_tokens = 64;
  r.stop = {"\n"};
  return r;
}

TEST(TypedWireActor, SubmitAnsweredLocally) {
  caf::actor_system_config cfg;
  caf::actor_system sys{configure(cfg)};
  auto worker = sys.spawn(fake_worker, std::string("worker"));
  auto event = submit_once(sys, worker, encode_submit(make_request(5), 3));
  ASSERT_TRUE(event.ok()) << event.error().message;
  const RequestEvent e = event->view();
  EXPECT_EQ(e.id, 4242u);
  EXPECT_EQ(e.kind, EventKind::kFinished);
  EXPECT_EQ(e.reason, FinishReason::kLength);
  EXPECT_EQ(e.num_output_tokens, 64u);
  EXPECT_EQ(e.text, "prompt of 5");
  EXPECT_EQ(event->attempt(), 3u);
  caf::anon_send_exit(worker, caf::exit_reason::user_shutdown);
}

TEST(TypedWireActor, AnotherKindIsRefusedByCafAndAMislabelledOneByDecode) {
  caf::actor_system_config cfg;
  caf::actor_system sys{configure(cfg)};
  auto worker = sys.spawn(fake_worker, std::string("worker"));
  {
    // A CancelWire is not in the worker's interface: a typed handle does not
    // compile with it, and through an untyped handle CAF refuses it.
    caf::scoped_actor self{sys};
    std::string error_text;
    const CancelWire cancel = CancelWire::from([](schema::CancelRequest::Builder b) { b.setRequestId(1); });
    self->request(caf::actor_cast<caf::actor>(worker), std::chrono::seconds(10), cancel)
        .receive([&](const EventWire&) { error_text = "unexpected reply"; },
                 [&](caf::error& err) { error_text = sys.render(err); });
    EXPECT_NE(error_text.find("unexpected_message"), std::string::npos) << error_text;
  }
  // The cancel's bytes relabelled as a SubmitWire pass CAF's check (same C++
  // type) but not decode's.
  const CancelWire cancel = CancelWire::from([](schema::CancelRequest::Builder b) { b.setRequestId(1); });
  auto event = submit_once(sys, worker, SubmitWire::adopt(cancel.kind(), cancel.bytes()));
  ASSERT_FALSE(event.ok());
  EXPECT_NE(event.error().message.find("expected a SubmitRequest message"), std::string::npos)
      << event.error().message;
  // The worker lives on.
  EXPECT_TRUE(submit_once(sys, worker, encode_submit(make_request(1))).ok());
  caf::anon_send_exit(worker, caf::exit_reason::user_shutdown);
}

TEST(TypedWireActor, SubmitAnsweredAcrossTwoActorSystemsThroughTheMiddleman) {
  caf::actor_system_config server_cfg;
  caf::actor_system server{configure(server_cfg)};
  auto worker = server.spawn(fake_worker, std::string("worker"));
  auto port = server.middleman().publish(worker, 0, "127.0.0.1");
  ASSERT_TRUE(port) << server.render(port.error());
  {
    caf::actor_system_config client_cfg;
    caf::actor_system client{configure(client_cfg)};
    auto remote = client.middleman().remote_actor<submit_actor>("127.0.0.1", *port);
    ASSERT_TRUE(remote) << client.render(remote.error());
    const size_t prompt_len = 100'000;  // 400 KB of ids cross the wire intact
    auto event = submit_once(client, *remote, encode_submit(make_request(prompt_len), 1));
    ASSERT_TRUE(event.ok()) << event.error().message;
    EXPECT_EQ(event->view().text, "prompt of " + std::to_string(prompt_len));
    EXPECT_EQ(event->view().num_output_tokens, 64u);
    EXPECT_EQ(event->attempt(), 1u);
  }
  caf::anon_send_exit(worker, caf::exit_reason::user_shutdown);
}

}  // namespace
}  // namespace myriad::actors
