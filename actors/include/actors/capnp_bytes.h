// Cap'n Proto messages as the byte vectors CAF carries between actors and
// nodes. CAF 0.17 serializes std::vector<char> natively (not
// std::vector<uint8_t>), so that is the wire type. Decoding copies into
// word-aligned memory first, as FlatArrayMessageReader requires, and rejects
// malformed bytes with an Error instead of throwing.
#pragma once

#include <capnp/message.h>
#include <capnp/serialize.h>

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

// Owns the aligned copy and the reader over it.
class WireReader {
 public:
  static Result<WireReader> parse(const WireBytes& bytes);
  template <class T>
  typename T::Reader root() { return reader_->getRoot<T>(); }

  WireReader(WireReader&&) = default;
  WireReader& operator=(WireReader&&) = default;

 private:
  WireReader() = default;
  kj::Array<capnp::word> words_;
  kj::Own<capnp::FlatArrayMessageReader> reader_;
};

}  // namespace myriad::actors
