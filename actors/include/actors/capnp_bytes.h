// Cap'n Proto messages as the byte vectors CAF carries between actors and
// nodes. CAF 0.17 serializes std::vector<char> natively (not
// std::vector<uint8_t>), so that is the wire type. Decoding copies into
// word-aligned memory first, as FlatArrayMessageReader requires, and rejects
// malformed bytes with an Error instead of throwing. The segment table is
// checked here; pointers are checked as they are read (and may throw):
// TypedWire::decode (typed_wire.h) checks every pointer up front, so readers
// of a decoded message never meet a throw.
#pragma once

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/function.h>

#include <cstring>
#include <vector>

#include "runtime/result.h"

namespace myriad::actors {

using WireBytes = std::vector<char>;

inline WireBytes to_wire(capnp::MessageBuilder& message) {
  const kj::Array<capnp::word> words = capnp::messageToFlatArray(message);
  const auto bytes = words.asBytes();
  return WireBytes(reinterpret_cast<const char*>(bytes.begin()), reinterpret_cast<const char*>(bytes.end()));
}

// Runs `fn` (reads of a Cap'n Proto message) and turns a kj::Exception it
// throws into an Error "<what>: <description>". The one place where the
// actors layer catches Cap'n Proto's exceptions (malformed input).
Status run_capnp_guarded(const char* what, kj::FunctionParam<void()> fn);

// Owns the aligned copy and the reader over it.
class WireReader {
 public:
  // The traversal limit (Cap'n Proto's guard against pointer amplification)
  // is max(its default of 64 MiB, 4x the message): a checked decode reads
  // every word once and its reader once more, so a large message stays
  // readable while a small one is bounded as before.
  static Result<WireReader> parse(const WireBytes& bytes);
  template <class T>
  typename T::Reader root() {
    return reader_->getRoot<T>();
  }

  WireReader(WireReader&&) = default;
  WireReader& operator=(WireReader&&) = default;

 private:
  WireReader() = default;
  kj::Array<capnp::word> words_;
  kj::Own<capnp::FlatArrayMessageReader> reader_;
};

}  // namespace myriad::actors
