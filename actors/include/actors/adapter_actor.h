// The adapter actor: one per registered adapter (tenant/name), spawned by the
// registry. It knows, per version, which requests pin it, whether a delete
// waits, and where the version is on each worker (the latest residency
// report of each, by seq). Per version and worker:
//
//   (published) ── pin ──> PINNED(n) ── unpin to 0 ──> (published)
//        │                    │
//        └──── retire ────────┴──> RETIRING (pins refused: notFound) ── pins reach 0 ──> retired (answered)
//
//   residency (per worker): store ─> fetching ─> hostCache ─> loading(s) ─> slot(s) ─> hostCache ─> evicted
//                           any step ─> failed;  a report older than the last one (seq) is ignored
//
// State lives in the actor (CAF runs one message at a time): no locks.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "actors/service_actors.h"

namespace myriad::actors {

struct AdapterActorState {
  struct Version {
    std::set<uint64_t> pins;                     // request ids
    bool retiring = false;                       // no new pin; a delete waits for the pins to end
    bool retired = false;                        // deleted: not shown, pins still refused
    std::map<std::string, ResidencyWire> where;  // worker id -> its latest report
    std::map<std::string, uint64_t> seq;         // worker id -> that report's seq
  };
  struct PendingRetire {
    std::vector<uint64_t> versions;
    caf::typed_response_promise<bool> promise;
  };
  std::string tenant, name;
  std::map<uint64_t, Version> versions;
  std::vector<PendingRetire> retires;
};

adapter_actor::behavior_type adapter_behavior(adapter_actor::stateful_pointer<AdapterActorState> self,
                                              std::string tenant, std::string name);

}  // namespace myriad::actors
