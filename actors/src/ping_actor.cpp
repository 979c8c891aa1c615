#include "actors/ping_actor.h"

#include "schema/ping.capnp.h"

namespace myriad::actors {

ping_actor::behavior_type ping_behavior(ping_actor::stateful_pointer<PingState> self, std::string name) {
  self->state.name = std::move(name);
  return {
      [self](ping_atom, const WireBytes& bytes) -> caf::result<WireBytes> {
        auto parsed = WireReader::parse(bytes);
        if (!parsed) return caf::make_error(caf::sec::invalid_argument, parsed.error().message);
        auto ping = parsed->root<schema::Ping>();
        capnp::MallocMessageBuilder out;
        auto pong = out.initRoot<schema::Pong>();
        pong.setSeq(ping.getSeq());
        pong.setPayload(ping.getPayload());
        pong.setSentAtNs(ping.getSentAtNs());
        pong.setResponder(self->state.name);
        pong.setCount(++self->state.answered);
        return to_wire(out);
      },
  };
}

WireBytes make_ping(uint64_t seq, const std::string& payload, int64_t sent_at_ns) {
  capnp::MallocMessageBuilder msg;
  auto ping = msg.initRoot<schema::Ping>();
  ping.setSeq(seq);
  ping.setPayload(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(payload.data()), payload.size()));
  ping.setSentAtNs(sent_at_ns);
  return to_wire(msg);
}

Result<PongView> read_pong(const WireBytes& bytes) {
  auto parsed = WireReader::parse(bytes);
  if (!parsed) return parsed.error();
  auto pong = parsed->root<schema::Pong>();
  PongView v;
  v.seq = pong.getSeq();
  auto data = pong.getPayload();
  v.payload.assign(reinterpret_cast<const char*>(data.begin()), data.size());
  v.sent_at_ns = pong.getSentAtNs();
  v.responder = pong.getResponder().cStr();
  v.count = pong.getCount();
  return v;
}

}  // namespace myriad::actors
