// Converters between the runtime's shared value types and schema/common.capnp:
// FinishReason, ErrorCode and Error, AdapterId, SamplingParams. One-to-one
// both ways, except where a comment says otherwise. Reading never throws:
// callers read messages already checked by TypedWire::decode.
#pragma once

#include <string>
#include <vector>

#include "runtime/adapter_id.h"
#include "runtime/request.h"
#include "runtime/result.h"
#include "runtime/sampling_params.h"
#include "schema/common.capnp.h"

namespace myriad::actors {

// A Cap'n Proto Text as a std::string (copies).
inline std::string as_string(capnp::Text::Reader text) { return std::string(text.begin(), text.size()); }

// A Cap'n Proto list of scalars as a std::vector (copies; the list's
// iterators are not standard input iterators, so no assign(begin, end)).
template <class T, class ListReader>
std::vector<T> to_vector(ListReader list) {
  std::vector<T> out;
  out.reserve(list.size());
  for (auto v : list) out.push_back(v);
  return out;
}

schema::FinishReason to_schema(FinishReason reason);
// kInvalidArgument for an enumerant this build does not know (a newer sender).
Result<FinishReason> from_schema(schema::FinishReason reason);

schema::ErrorCode to_schema(ErrorCode code);

void write_error(const Error& error, schema::Error::Builder out);
// Total: a service-only code (unauthenticated, unavailable) or one this build
// does not know becomes kInternal, the message prefixed with the code's name
// so nothing is lost for a person reading it.
Error read_error(schema::Error::Reader in);

void write_adapter_id(const AdapterId& id, schema::AdapterId::Builder out);
AdapterId read_adapter_id(schema::AdapterId::Reader in);

void write_sampling(const SamplingParams& params, schema::SamplingParams::Builder out);
SamplingParams read_sampling(schema::SamplingParams::Reader in);

}  // namespace myriad::actors
