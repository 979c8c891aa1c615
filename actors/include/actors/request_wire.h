// runtime Request <-> schema SubmitRequest (messages.capnp), field for field.
// The gateway writes one per placement attempt; the scheduler actor reads it
// back into the Request its Engine takes. Ranges are not checked here
// (validate_request does that at submit, with the engine's limits); only what
// cannot become a Request at all is an Error.
#pragma once

#include <cstdint>

#include "actors/messages.h"
#include "runtime/request.h"

namespace myriad::actors {

void write_submit(const Request& request, uint32_t attempt, schema::SubmitRequest::Builder out);
// kInvalidArgument for an enumerant this build does not know (promptLogits).
// The attempt is the message's getAttempt().
Result<Request> read_submit(schema::SubmitRequest::Reader in);

SubmitWire encode_submit(const Request& request, uint32_t attempt = 0);

}  // namespace myriad::actors
