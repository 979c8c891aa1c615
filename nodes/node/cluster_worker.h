// `myriad-node --role worker`: one device's engine that joins a gateway on
// another host (or this one) through CAF's middleman and serves what the
// gateway places on it. It opens no HTTP or RPC listener.
//
//   start: load the base, start the engine, then join (hello, join with the
//          proof of the cluster secret and the base fingerprint); a refused
//          join is an Error (the process exits 1 naming why); a gateway not
//          up yet is waited for.
//   serving: adapters are fetched from the gateway's registry on first use
//          into a content-addressed disk cache (FetchedAdapters, hashes
//          checked) and the host cache; load reports (its heartbeat) every
//          100 ms go to the gateway.
//   gateway lost: requests running here finish (their clients are gone);
//          the worker joins again, every second, until a gateway answers.
//   leave (SIGTERM): waiting requests go back to the gateway to run
//          elsewhere, running ones finish, then leave() returns.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "node_service.h"
#include "runtime/result.h"

namespace myriad::node {

struct ClusterWorkerOptions {
  NodeOptions node;           // model_dir, device, slots, threads, engine sizes; data_dir: the adapter cache ("" = a private temporary folder)
  std::string join_host;      // the gateway's --cluster address
  uint16_t join_port = 0;
  std::string cluster_secret;  // the same bytes as the gateway's; empty when it has none
  std::string worker_id;       // "" = <hostname>/<pid>
  double rejoin_interval_ms = 1000;
  // The gateway's cluster port must finish CAF's handshake within this; else
  // the worker exits with an error (a gateway speaking TLS to a worker that
  // does not, or one that accepts and never answers, would hang it forever).
  double handshake_timeout_ms = 10000;
};

class ClusterWorker {
 public:
  struct Parts;  // (opaque) the actor system, the worker's actors, the join thread

  static Result<std::unique_ptr<ClusterWorker>> start(const ClusterWorkerOptions& options);
  ~ClusterWorker();

  const std::string& id() const { return id_; }
  // Leaves the cluster: what waits here moves to other workers, what runs
  // finishes; returns once nothing runs here.
  void leave();

 private:
  ClusterWorker() = default;
  std::string id_;
  std::unique_ptr<Parts> parts_;
};

}  // namespace myriad::node
