# The first message pair between actors and nodes: proves the generated-code
# and actor plumbing end to end. Fields are only ever appended.
@0xac7045beb1b05c61;

$import "/capnp/c++.capnp".namespace("myriad::schema");

struct Ping {
  seq @0 :UInt64;        # echoed back in the Pong
  payload @1 :Data;      # arbitrary bytes, echoed back
  sentAtNs @2 :Int64;    # sender's clock (ns), echoed back for round-trip timing
}

struct Pong {
  seq @0 :UInt64;        # the Ping's seq
  payload @1 :Data;      # the Ping's payload
  sentAtNs @2 :Int64;    # the Ping's sentAtNs
  responder @3 :Text;    # name of the actor that answered
  count @4 :UInt64;      # pings this actor has answered, this one included
}
