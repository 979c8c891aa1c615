// What a node's actor wiring shares between roles (node_service.cpp for all
// and gateway, cluster_worker.cpp for worker). Includes CAF: only those two
// translation units include it.
#pragma once

#include <string>

#include "actors/scheduler_actor.h"
#include "node_service.h"

namespace myriad::node {

// A worker's scheduler actor's limits for these options over this model.
actors::SchedulerActorOptions scheduler_options(const NodeOptions& options, const SchedulerConfig& config,
                                                const ModelConfig& model, const std::string& worker_id);

// The CAF configuration every role starts from (message types, scheduler policy, quiet logs).
caf::actor_system_config& service_config(caf::actor_system_config& cfg);

bool is_loopback(const std::string& host);

// Loads CAF's middleman, and with TLS its OpenSSL module configured with
// `tls`; an Error naming the file when one of them cannot be read.
Status load_cluster_modules(caf::actor_system_config& cfg, const ClusterTls& tls);

}  // namespace myriad::node
