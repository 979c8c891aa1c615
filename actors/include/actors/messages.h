// The message kinds actors exchange (schema/messages.capnp), each as its own
// TypedWire type, so CAF dispatches on the kind and decode() checks it again.
// Registered with CAF by message_types.h; converters from and to the
// runtime's types: request_wire.h, event_wire.h, adapter_info_wire.h.
#pragma once

#include "actors/typed_wire.h"
#include "schema/api.capnp.h"
#include "schema/messages.capnp.h"

namespace myriad::actors {

using SubmitWire = TypedWire<schema::SubmitRequest>;  // gateway -> scheduler: admit a request
using CancelWire = TypedWire<schema::CancelRequest>;  // gateway -> scheduler: stop a request
using EventWire = TypedWire<schema::RequestEvent>;    // worker -> gateway: a token, logits or the final event
using ResidencyWire =
    TypedWire<schema::AdapterResidency>;               // worker -> adapter actor, gateway: where a version is
using WorkerLoadWire = TypedWire<schema::WorkerLoad>;  // worker -> gateway: load, for placement
using AdapterInfoWire = TypedWire<schema::api::AdapterInfo>;  // registry -> gateway: one published version
using TrainJobWire = TypedWire<schema::TrainJob>;            // gateway -> a worker's trainer: train this job
using TrainProgressWire = TypedWire<schema::TrainProgress>;  // trainer -> gateway: one optimizer step
using TrainVersionWire = TypedWire<schema::TrainVersion>;    // trainer -> gateway: a version and its checkpoint
using RunCallWire = TypedWire<schema::RunCall>;              // gateway -> a worker's trainer: a training run's call
using RunAnswerWire = TypedWire<schema::RunAnswer>;          // trainer -> gateway: that call's answer

}  // namespace myriad::actors
