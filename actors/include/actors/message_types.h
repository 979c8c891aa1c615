// Registers every TypedWire message kind (messages.h) with CAF 0.17.6: one
// type-ID block, names taken from the aliases, so two actor systems (two
// processes, two hosts) that both call register_message_types agree on every
// name. A kind left out still compiles, then fails at run time with
// "unexpected_message" (DEPENDENCIES.md): add each new kind here, once.
//
// Include only where an actor_system_config is built (CAF headers are heavy).
#pragma once

#include <caf/actor_system_config.hpp>
#include <caf/type_id.hpp>

#include "actors/service_actors.h"

CAF_BEGIN_TYPE_ID_BLOCK(myriad_actors, caf::first_custom_type_id)
CAF_ADD_TYPE_ID(myriad_actors, (myriad::actors::SubmitWire))
CAF_ADD_TYPE_ID(myriad_actors, (myriad::actors::CancelWire))
CAF_ADD_TYPE_ID(myriad_actors, (myriad::actors::EventWire))
CAF_ADD_TYPE_ID(myriad_actors, (myriad::actors::ResidencyWire))
CAF_ADD_TYPE_ID(myriad_actors, (myriad::actors::WorkerLoadWire))
CAF_ADD_TYPE_ID(myriad_actors, (myriad::actors::AdapterInfoWire))
CAF_ADD_TYPE_ID(myriad_actors, (myriad::actors::GenerateWire))
CAF_ADD_TYPE_ID(myriad_actors, (myriad::actors::AcceptedWire))
CAF_ADD_TYPE_ID(myriad_actors, (myriad::actors::RegistryCallWire))
CAF_ADD_TYPE_ID(myriad_actors, (myriad::actors::AdapterAnswerWire))
CAF_ADD_TYPE_ID(myriad_actors, (myriad::actors::AdapterListWire))
CAF_ADD_TYPE_ID(myriad_actors, (myriad::actors::PinWire))
CAF_ADD_TYPE_ID(myriad_actors, (myriad::actors::RetireWire))
CAF_ADD_TYPE_ID(myriad_actors, (myriad::actors::AdapterStatusWire))
CAF_ADD_TYPE_ID(myriad_actors, (myriad::actors::event_sink_actor))
CAF_ADD_TYPE_ID(myriad_actors, (myriad::actors::scheduler_actor))
CAF_ADD_TYPE_ID(myriad_actors, (myriad::actors::AdapterFilesWire))
CAF_ADD_TYPE_ID(myriad_actors, (myriad::actors::JoinWire))
CAF_ADD_TYPE_ID(myriad_actors, (myriad::actors::JoinAnswerWire))
CAF_ADD_TYPE_ID(myriad_actors, (myriad::actors::load_sink_actor))
CAF_ADD_TYPE_ID(myriad_actors, (myriad::actors::worker_registry_actor))
CAF_ADD_TYPE_ID(myriad_actors, (myriad::actors::ResumeWire))
CAF_ADD_TYPE_ID(myriad_actors, (myriad::actors::TrainJobWire))
CAF_ADD_TYPE_ID(myriad_actors, (myriad::actors::TrainProgressWire))
CAF_ADD_TYPE_ID(myriad_actors, (myriad::actors::TrainVersionWire))
CAF_ADD_TYPE_ID(myriad_actors, (myriad::actors::job_sink_actor))
CAF_ADD_TYPE_ID(myriad_actors, (myriad::actors::trainer_actor))
CAF_ADD_TYPE_ID(myriad_actors, (myriad::actors::RunCallWire))
CAF_ADD_TYPE_ID(myriad_actors, (myriad::actors::RunAnswerWire))
CAF_ADD_TYPE_ID(myriad_actors, (myriad::actors::run_sink_actor))
CAF_END_TYPE_ID_BLOCK(myriad_actors)

namespace myriad::actors {

inline caf::actor_system_config& register_message_types(caf::actor_system_config& cfg) {
  return cfg.add_message_types<caf::id_block::myriad_actors>();
}

}  // namespace myriad::actors
