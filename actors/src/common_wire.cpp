#include "actors/common_wire.h"

namespace myriad::actors {

schema::FinishReason to_schema(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return schema::FinishReason::STOP;
    case FinishReason::kLength:
      return schema::FinishReason::LENGTH;
    case FinishReason::kCancelled:
      return schema::FinishReason::CANCELLED;
    case FinishReason::kDeadline:
      return schema::FinishReason::DEADLINE;
  }
  assertion_failed(__FILE__, __LINE__, "known enumerant",
                   "unknown FinishReason " + std::to_string(int(reason)));
}

Result<FinishReason> from_schema(schema::FinishReason reason) {
  switch (reason) {
    case schema::FinishReason::STOP:
      return FinishReason::kStop;
    case schema::FinishReason::LENGTH:
      return FinishReason::kLength;
    case schema::FinishReason::CANCELLED:
      return FinishReason::kCancelled;
    case schema::FinishReason::DEADLINE:
      return FinishReason::kDeadline;
  }
  return make_error(ErrorCode::kInvalidArgument, "unknown finish reason " + std::to_string(unsigned(reason)));
}

schema::ErrorCode to_schema(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return schema::ErrorCode::INVALID_ARGUMENT;
    case ErrorCode::kBadFile:
      return schema::ErrorCode::BAD_FILE;
    case ErrorCode::kNotFound:
      return schema::ErrorCode::NOT_FOUND;
    case ErrorCode::kUnsupported:
      return schema::ErrorCode::UNSUPPORTED;
    case ErrorCode::kResourceExhausted:
      return schema::ErrorCode::RESOURCE_EXHAUSTED;
    case ErrorCode::kIo:
      return schema::ErrorCode::IO;
    case ErrorCode::kCancelled:
      return schema::ErrorCode::CANCELLED;
    case ErrorCode::kDeadlineExceeded:
      return schema::ErrorCode::DEADLINE_EXCEEDED;
    case ErrorCode::kInternal:
      return schema::ErrorCode::INTERNAL;
    case ErrorCode::kOverloaded:
      return schema::ErrorCode::OVERLOADED;
    case ErrorCode::kUnavailable:
      return schema::ErrorCode::UNAVAILABLE;
  }
  assertion_failed(__FILE__, __LINE__, "known enumerant", "unknown ErrorCode " + std::to_string(int(code)));
}

void write_error(const Error& error, schema::Error::Builder out) {
  out.setCode(to_schema(error.code));
  out.setMessage(error.message);
}

Error read_error(schema::Error::Reader in) {
  std::string message = as_string(in.getMessage());
  switch (in.getCode()) {
    case schema::ErrorCode::INVALID_ARGUMENT:
      return make_error(ErrorCode::kInvalidArgument, std::move(message));
    case schema::ErrorCode::BAD_FILE:
      return make_error(ErrorCode::kBadFile, std::move(message));
    case schema::ErrorCode::NOT_FOUND:
      return make_error(ErrorCode::kNotFound, std::move(message));
    case schema::ErrorCode::UNSUPPORTED:
      return make_error(ErrorCode::kUnsupported, std::move(message));
    case schema::ErrorCode::RESOURCE_EXHAUSTED:
      return make_error(ErrorCode::kResourceExhausted, std::move(message));
    case schema::ErrorCode::IO:
      return make_error(ErrorCode::kIo, std::move(message));
    case schema::ErrorCode::CANCELLED:
      return make_error(ErrorCode::kCancelled, std::move(message));
    case schema::ErrorCode::DEADLINE_EXCEEDED:
      return make_error(ErrorCode::kDeadlineExceeded, std::move(message));
    case schema::ErrorCode::INTERNAL:
      return make_error(ErrorCode::kInternal, std::move(message));
    case schema::ErrorCode::UNAUTHENTICATED:
      return make_error(ErrorCode::kInternal, "unauthenticated: " + message);
    case schema::ErrorCode::UNAVAILABLE:
      return make_error(ErrorCode::kUnavailable, std::move(message));
    case schema::ErrorCode::OVERLOADED:
      return make_error(ErrorCode::kOverloaded, std::move(message));
  }
  return make_error(ErrorCode::kInternal,
                    "error code " + std::to_string(unsigned(in.getCode())) + ": " + message);
}

void write_adapter_id(const AdapterId& id, schema::AdapterId::Builder out) {
  out.setTenant(id.tenant);
  out.setName(id.name);
  out.setVersion(id.version);
}

AdapterId read_adapter_id(schema::AdapterId::Reader in) {
  return AdapterId{as_string(in.getTenant()), as_string(in.getName()), in.getVersion()};
}

void write_sampling(const SamplingParams& params, schema::SamplingParams::Builder out) {
  out.setTemperature(params.temperature);
  out.setTopK(params.top_k);
  out.setTopP(params.top_p);
  out.setSeed(params.seed);
  out.setRepetitionPenalty(params.repetition_penalty);
  out.setPresencePenalty(params.presence_penalty);
  out.setFrequencyPenalty(params.frequency_penalty);
  out.setTopLogprobs(params.top_logprobs);
}

SamplingParams read_sampling(schema::SamplingParams::Reader in) {
  SamplingParams p;
  p.temperature = in.getTemperature();
  p.top_k = in.getTopK();
  p.top_p = in.getTopP();
  p.seed = in.getSeed();
  p.repetition_penalty = in.getRepetitionPenalty();
  p.presence_penalty = in.getPresencePenalty();
  p.frequency_penalty = in.getFrequencyPenalty();
  p.top_logprobs = in.getTopLogprobs();
  return p;
}

}  // namespace myriad::actors
