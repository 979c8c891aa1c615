#include "actors/capnp_bytes.h"

#include <kj/exception.h>

#include <string>

namespace myriad::actors {

Result<WireReader> WireReader::parse(const WireBytes& bytes) {
  if (bytes.empty() || bytes.size() % sizeof(capnp::word) != 0)
    return make_error(ErrorCode::kInvalidArgument,
                      "Cap'n Proto message of " + std::to_string(bytes.size()) + " bytes is not a whole number of 8-byte words");
  WireReader r;
  r.words_ = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
  std::memcpy(r.words_.begin(), bytes.data(), bytes.size());
  // Cap'n Proto reports malformed segment tables by exception: turn it into an Error here, at the edge.
  kj::Maybe<kj::Exception> failure = kj::runCatchingExceptions([&]() {
    r.reader_ = kj::heap<capnp::FlatArrayMessageReader>(r.words_.asPtr());
  });
  KJ_IF_MAYBE(e, failure) {
    return make_error(ErrorCode::kInvalidArgument, std::string("malformed Cap'n Proto message: ") + e->getDescription().cStr());
  }
  return r;
}

}  // namespace myriad::actors
