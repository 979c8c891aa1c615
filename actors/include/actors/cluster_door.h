// The cluster's door: the one actor a gateway publishes on --cluster, where
// workers on other hosts join. A connection first asks hello for a one-time
// nonce, then joins with its id, its base model's fingerprint and a proof of
// the cluster secret over that nonce (join_proof), handing over its
// scheduler. The door checks all three before the gateway places anything
// there; accepted, the worker receives the gateway as its load sink and the
// registry's worker face (residency reports, adapter fetches).
//
//   hello ──> nonce (kept until used, at most kMaxNonces outstanding)
//   join ─ unknown nonce ───────────────> refused (invalidArgument)
//        ─ wrong proof (with a secret) ─> refused (invalidArgument, "cluster secret")
//        ─ other base fingerprint ──────> refused (invalidArgument, both fingerprints named)
//        ─ else ─> gateway: add_worker(id, scheduler) ─> accepted
//                  (and its trainer, when it has one, to the job host)
//
// Without a secret no proof is asked: the caller then publishes the door on
// a loopback address only (nodes/node: "none means loopback-only joins").
#pragma once

#include <cstdint>
#include <deque>
#include <random>
#include <string>

#include "actors/service_actors.h"

namespace myriad::actors {

struct ClusterDoorOptions {
  std::string base_model;        // the gateway's name for the base
  std::string base_fingerprint;  // sha256 of the base's config.json: workers must match it
  std::string secret;            // the cluster secret's bytes; empty = no proof asked
};

struct ClusterDoorState {
  static constexpr size_t kMaxNonces = 1024;
  ClusterDoorOptions options;
  gateway_actor gateway;
  job_host_actor jobs;  // where joining workers' trainers go (null: the gateway runs no fine-tuning)
  worker_registry_actor face;  // what members get of the registry (linked: ends with the door); the door
                               // keeps no registry handle of its own: see registry_face
  std::deque<std::string> nonces;  // given out by hello, not yet used; oldest first
  std::mt19937_64 rng{std::random_device{}()};
};

// Hex sha256 of "myriad-join:" secret ":" nonce ":" worker: what a worker
// sends as Join.proof (the secret itself never crosses the network).
std::string join_proof(const std::string& secret, const std::string& nonce, const std::string& worker);

cluster_door_actor::behavior_type cluster_door_behavior(cluster_door_actor::stateful_pointer<ClusterDoorState> self,
                                                        gateway_actor gateway, registry_actor registry,
                                                        ClusterDoorOptions options, job_host_actor jobs);

}  // namespace myriad::actors
