#include "actors/capnp_bytes.h"

#include <kj/exception.h>

#include <algorithm>
#include <string>

namespace myriad::actors {

Result<WireReader> WireReader::parse(const WireBytes& bytes) {
  if (bytes.empty() || bytes.size() % sizeof(capnp::word) != 0)
    return make_error(ErrorCode::kInvalidArgument, "Cap'n Proto message of " + std::to_string(bytes.size()) +
                                                       " bytes is not a whole number of 8-byte words");
  WireReader r;
  r.words_ = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
  std::memcpy(r.words_.begin(), bytes.data(), bytes.size());
  // Cap'n Proto reports malformed segment tables by exception: turn it into an Error here, at the edge.
  capnp::ReaderOptions options;
  options.traversalLimitInWords =
      std::max<uint64_t>(options.traversalLimitInWords, 4 * uint64_t(r.words_.size()));
  MYRIAD_TRY(run_capnp_guarded("malformed Cap'n Proto message", [&]() {
    r.reader_ = kj::heap<capnp::FlatArrayMessageReader>(r.words_.asPtr(), options);
  }));
  return r;
}

Status run_capnp_guarded(const char* what, kj::FunctionParam<void()> fn) {
  kj::Maybe<kj::Exception> failure = kj::runCatchingExceptions([&]() { fn(); });
  KJ_IF_MAYBE (e, failure) {
    return make_error(ErrorCode::kInvalidArgument, std::string(what) + ": " + e->getDescription().cStr());
  }
  return ok_status();
}

}  // namespace myriad::actors
