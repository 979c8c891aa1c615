#include "actors/cluster_door.h"

#include <algorithm>

#include "actors/common_wire.h"
#include "runtime/log.h"
#include "runtime/sha256.h"

namespace myriad::actors {

namespace {

// Compares without stopping at the first difference (the proof is a secret's digest).
bool same_digest(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

JoinAnswerWire refused_join(const Error& e, const std::string& base_model) {
  return JoinAnswerWire::from([&](schema::JoinAnswer::Builder a) {
    write_error(e, a.initError());
    a.setBaseModel(base_model);
  });
}

// What members receive instead of the registry's own handle: the registry
// is detached (its own thread), and a handle sent to another node pins its
// actor in CAF's actor registry, so the system's shutdown would wait on that
// thread for good. This face, linked to the door, forwards the two calls.
worker_registry_actor::behavior_type registry_face(worker_registry_actor::pointer self, registry_actor registry) {
  return {
      [self, registry](residency_atom, const ResidencyWire& wire) { self->send(registry, residency_atom::value, wire); },
      [self, registry](fetch_atom, const RegistryCallWire& wire) {
        return self->delegate(registry, fetch_atom::value, wire);
      },
  };
}

}  // namespace

std::string join_proof(const std::string& secret, const std::string& nonce, const std::string& worker) {
  return sha256_hex("myriad-join:" + secret + ":" + nonce + ":" + worker);
}

cluster_door_actor::behavior_type cluster_door_behavior(cluster_door_actor::stateful_pointer<ClusterDoorState> self,
                                                        gateway_actor gateway, registry_actor registry,
                                                        ClusterDoorOptions options, job_host_actor jobs) {
  self->state.gateway = std::move(gateway);
  self->state.jobs = std::move(jobs);
  self->state.options = std::move(options);
  self->state.face = self->spawn<caf::linked>(registry_face, std::move(registry));
  using Joined = std::tuple<JoinAnswerWire, load_sink_actor, worker_registry_actor>;
  return {
      [self](hello_atom) {
        auto& s = self->state;
        char hex[33];
        std::snprintf(hex, sizeof hex, "%016llx%016llx", static_cast<unsigned long long>(s.rng()),
                      static_cast<unsigned long long>(s.rng()));
        if (s.nonces.size() >= ClusterDoorState::kMaxNonces) s.nonces.pop_front();
        s.nonces.emplace_back(hex);
        return std::string(hex);
      },
      [self](join_atom, const JoinWire& wire, const scheduler_actor& scheduler, const trainer_actor& trainer) -> Joined {
        auto& s = self->state;
        const std::string& base = s.options.base_model;
        auto d = wire.decode();
        if (!d) return {refused_join(d.error(), base), load_sink_actor{}, worker_registry_actor{}};
        auto join = d->get();
        const std::string worker = as_string(join.getWorker());
        const std::string nonce = as_string(join.getNonce());
        auto refuse = [&](std::string why) -> Joined {
          log_warn("cluster: refused the join of worker '{}': {}", worker, why);
          return {refused_join(make_error(ErrorCode::kInvalidArgument, std::move(why)), base), load_sink_actor{}, worker_registry_actor{}};
        };
        auto used = std::find(s.nonces.begin(), s.nonces.end(), nonce);
        if (nonce.empty() || used == s.nonces.end())
          return refuse("join refused: its nonce was not given by this gateway (ask hello first, once per join)");
        s.nonces.erase(used);
        if (worker.empty() || worker.size() > 256) return refuse("join refused: the worker id must be 1..256 bytes");
        if (!s.options.secret.empty() &&
            !same_digest(as_string(join.getProof()), join_proof(s.options.secret, nonce, worker)))
          return refuse("join refused: the proof of the cluster secret is wrong (is --cluster-secret the same file?)");
        const std::string fingerprint = as_string(join.getBaseFingerprint());
        if (fingerprint != s.options.base_fingerprint)
          return refuse("join refused: the worker's base model (config.json sha256 " + fingerprint +
                        ") is not the gateway's " + base + " (" + s.options.base_fingerprint + ")");
        if (!scheduler) return refuse("join refused: no scheduler");
        log_info("cluster: worker '{}' joined ({}, {} slots)", worker, as_string(join.getDevice()),
                 join.getSlots());
        self->send(s.gateway, add_worker_atom::value, worker, scheduler);
        if (trainer && s.jobs) self->send(s.jobs, add_worker_atom::value, worker, trainer);
        return {JoinAnswerWire::from([&](schema::JoinAnswer::Builder a) {
                  a.setAccepted();
                  a.setBaseModel(base);
                }),
                caf::actor_cast<load_sink_actor>(s.gateway), s.face};
      },
  };
}

}  // namespace myriad::actors
