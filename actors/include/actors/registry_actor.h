// The registry actor: owns the adapter store (SQLite catalog + content-
// addressed files, runtime/adapter_store.h) and one adapter actor per
// registered adapter. Names resolve here for a caller's tenant (another
// tenant's adapter answers notFound exactly like a missing one; an admin
// sees all); a resolve that asks to pin goes on to the adapter actor, which
// refuses a version being deleted. A delete first retires the versions at
// their adapter actor (answered once no running request pins them), then
// removes them from the store, then answers.
//
// Names resolve from an in-memory index of the catalog (registry_index.h);
// publishes and deletes write the store first. Store calls block on disk
// I/O (fsync, hashing): spawn it detached (its own thread) outside tests.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>

#include "actors/registry_index.h"
#include "actors/service_actors.h"
#include "runtime/adapter_store.h"

namespace myriad::actors {

struct RegistryState {
  std::shared_ptr<AdapterStore> store;
  std::string base_model;  // the name that resolves to the base
  RegistryIndex index;     // the catalog in memory; the store stays the record
  std::map<std::pair<std::string, std::string>, adapter_actor> adapters;  // (tenant, name) -> its actor
};

registry_actor::behavior_type registry_behavior(registry_actor::stateful_pointer<RegistryState> self,
                                                std::shared_ptr<AdapterStore> store, std::string base_model);

}  // namespace myriad::actors
