// The ping actor answers Cap'n Proto Pings locally and across two actor
// systems connected through CAF's middleman on 127.0.0.1.
#include "actors/ping_actor.h"

#include <gtest/gtest.h>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <chrono>
#include <string>

#include "schema/ping.capnp.h"

namespace myriad::actors {
namespace {

caf::actor_system_config& with_middleman(caf::actor_system_config& cfg) {
  cfg.load<caf::io::middleman>();
  cfg.set("scheduler.max-threads", 2);
  return cfg;
}

// Sends one ping from `sys` to `target` and returns the decoded pong.
Result<PongView> ping_once(caf::actor_system& sys, const ping_actor& target, uint64_t seq,
                           const std::string& payload) {
  caf::scoped_actor self{sys};
  Result<PongView> out = make_error(ErrorCode::kInternal, "no reply");
  self->request(target, std::chrono::seconds(10), ping_atom::value,
                make_ping(seq, payload, 42 + int64_t(seq)))
      .receive([&](const WireBytes& reply) { out = read_pong(reply); },
               [&](caf::error& err) { out = make_error(ErrorCode::kInternal, sys.render(err)); });
  return out;
}

TEST(PingActor, AnswersLocally) {
  caf::actor_system_config cfg;
  caf::actor_system sys{with_middleman(cfg)};
  auto pinger = sys.spawn(ping_behavior, std::string("local"));
  for (uint64_t i = 1; i <= 3; ++i) {
    auto pong = ping_once(sys, pinger, i, "hello " + std::to_string(i));
    ASSERT_TRUE(pong.ok()) << pong.error().message;
    EXPECT_EQ(pong->seq, i);
    EXPECT_EQ(pong->payload, "hello " + std::to_string(i));
    EXPECT_EQ(pong->sent_at_ns, 42 + int64_t(i));
    EXPECT_EQ(pong->responder, "local");
    EXPECT_EQ(pong->count, i);  // state persists across messages
  }
  caf::anon_send_exit(pinger, caf::exit_reason::user_shutdown);
}

TEST(PingActor, MalformedBytesGetAnErrorAndTheActorLivesOn) {
  caf::actor_system_config cfg;
  caf::actor_system sys{with_middleman(cfg)};
  auto pinger = sys.spawn(ping_behavior, std::string("local"));
  {
    caf::scoped_actor self{sys};
    std::string error_text;
    self->request(pinger, std::chrono::seconds(10), ping_atom::value, WireBytes{'x', 'y', 'z'})
        .receive([&](const WireBytes&) { error_text = "unexpected reply"; },
                 [&](caf::error& err) { error_text = sys.render(err); });
    EXPECT_NE(error_text.find("not a whole number of 8-byte words"), std::string::npos) << error_text;
  }
  auto pong = ping_once(sys, pinger, 7, "still alive");
  ASSERT_TRUE(pong.ok()) << pong.error().message;
  EXPECT_EQ(pong->payload, "still alive");
  caf::anon_send_exit(pinger, caf::exit_reason::user_shutdown);
}

TEST(PingActor, AnswersAcrossTwoActorSystemsThroughTheMiddleman) {
  caf::actor_system_config server_cfg;
  caf::actor_system server{with_middleman(server_cfg)};
  auto pinger = server.spawn(ping_behavior, std::string("server"));
  auto port = server.middleman().publish(pinger, 0, "127.0.0.1");
  ASSERT_TRUE(port) << server.render(port.error());
  ASSERT_NE(*port, 0);
  {
    caf::actor_system_config client_cfg;
    caf::actor_system client{with_middleman(client_cfg)};
    auto remote = client.middleman().remote_actor<ping_actor>("127.0.0.1", *port);
    ASSERT_TRUE(remote) << client.render(remote.error());
    const std::string payload(1 << 20, 'p');  // 1 MiB crosses the wire intact
    auto pong = ping_once(client, *remote, 99, payload);
    ASSERT_TRUE(pong.ok()) << pong.error().message;
    EXPECT_EQ(pong->seq, 99u);
    EXPECT_EQ(pong->payload, payload);
    EXPECT_EQ(pong->responder, "server");
  }
  caf::anon_send_exit(pinger, caf::exit_reason::user_shutdown);
}

TEST(CapnpWire, RoundTripsAndRejectsTruncation) {
  WireBytes bytes = make_ping(5, "abc", 123);
  auto reader = WireReader::parse(bytes);
  ASSERT_TRUE(reader.ok());
  auto ping = reader->root<schema::Ping>();
  EXPECT_EQ(ping.getSeq(), 5u);
  EXPECT_EQ(ping.getSentAtNs(), 123);
  bytes.resize(8);  // a segment table promising more words than present
  auto bad = WireReader::parse(bytes);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("malformed Cap'n Proto message"), std::string::npos)
      << bad.error().message;
}

}  // namespace
}  // namespace myriad::actors
