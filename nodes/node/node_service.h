// One node's serving core, under every front end (the OpenAI HTTP API now;
// the Cap'n Proto RPC API and the CLI client later): the base model and its
// tokenizer, the adapter store, the host cache in front of it, and one
// EngineWorker stepping a CPU or CUDA executor. Front ends resolve a model
// name for a caller's tenant, turn text into token ids, submit, and receive
// the request's events through a callback.
//
// Tenancy: a caller resolves only its own tenant's adapters (an admin any);
// another tenant's adapter answers kNotFound exactly like a missing one.
//
// Underneath it is the service's actor system (actors/service_actors.h): a
// registry actor over the store (with one adapter actor per adapter), a
// gateway actor, and per device a scheduler actor and a worker actor owning
// the executor and its engine. This class is the front ends' synchronous
// face of it: each call is one request to an actor (resolve, publish,
// generate), answered on the caller's thread; events come back through a
// relay actor to the request's callback. CAF stays out of this header.
//
// Thread-safe: every method may be called from any thread; event callbacks
// run on the worker thread and must only hand the event on (copy it, post it
// to a connection's executor).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/adapter_id.h"
#include "runtime/adapter_store.h"
#include "runtime/checkpoint.h"
#include "runtime/engine_events.h"
#include "runtime/engine_worker.h"
#include "runtime/executor.h"
#include "runtime/moe/mixture.h"
#include "runtime/placement.h"
#include "runtime/sampling_params.h"
#include "runtime/scheduler_config.h"
#include "runtime/tokenizer.h"
#include "fine_tuning.h"
#include "mixture_builds.h"
#include "tenants.h"

namespace myriad::node {

class AdapterTraffic;

// TLS between a cluster's gateway and workers (CAF's OpenSSL module): this
// member's certificate and key, and the CA every member's certificate must
// chain to (each side checks the other's). All three, or none (plain TCP).
struct ClusterTls {
  std::string certificate;  // PEM
  std::string key;          // PEM, unencrypted
  std::string ca;           // PEM: the cluster's CA
  bool enabled() const { return !certificate.empty(); }
};

struct NodeOptions {
  // all: the whole service with one local worker. gateway: no local worker;
  // workers join on `cluster_host:cluster_port` (ClusterWorker).
  std::string role = "all";
  std::string model_dir;
  std::string model_name;      // "" = the model folder's name
  std::string data_dir;        // the adapter store (created if missing)
  std::string device = "cpu";  // cpu | cuda
  int32_t slots = 8;           // adapter slots on the device
  int32_t max_adapter_rank = 64;
  int32_t kv_blocks = 0;       // 0 = enough for max_running requests of the full context, capped
  int32_t max_running = 32;    // sequences in the batch
  int32_t max_waiting = 1024;  // requests queued ahead of the worker; more are refused (overloaded, 429)
  int32_t max_tokens_per_step = 512;
  double quantum_ms = 50.0;
  // timeslice: the scheduler actor keeps each worker's active set (at most
  // `slots` adapters' requests enter its engine); fifo: requests enter in
  // arrival order and the engine time-slices what it holds.
  std::string admission = "timeslice";
  int threads = 0;  // CPU threads, 0 = every core
  size_t host_cache_bytes = size_t(2) << 30;
  // gateway: where workers join (port 0 picks one) and the cluster secret
  // (empty: joins from this host only, cluster_host must be a loopback address).
  std::string cluster_host = "127.0.0.1";
  uint16_t cluster_port = 0;
  std::string cluster_secret;
  ClusterTls cluster_tls;           // TLS on the cluster port (gateway and workers alike)
  double heartbeat_timeout_ms = 0;  // GatewayOptions::heartbeat_timeout_ms
  double max_wait_for_worker_ms = 30000;  // GatewayOptions::max_wait_for_worker_ms
  PlacementPolicy placement = PlacementPolicy::kAffinity;  // PlacementOptions::policy
  // Fine-tuning jobs (fine_tuning.h; role all on a CPU device): steps between
  // published versions, jobs training at once, and training's share of the
  // worker's busy time while requests run.
  int64_t fine_tuning_publish_every = 10;
  int32_t max_training_jobs = 4;
  double training_share = 0.25;
};

// The base model's fingerprint: sha256 of its config.json, which every stored
// adapter records and every worker of a cluster must match.
Result<std::string> base_fingerprint_of(const std::string& model_dir);
// The executor (cpu or cuda) for these options, with the engine's KV pool and slots.
Result<std::unique_ptr<Executor>> make_executor(const NodeOptions& options, std::shared_ptr<const Checkpoint> checkpoint,
                                                const SchedulerConfig& config);

// The worker's engine configuration for these options over this model: the
// KV pool (enough for max_running requests of the whole context when that is
// small, else 64k positions) and the scheduler's limits. NodeService and
// bench/service_load's bare-engine arm both size the engine with it.
SchedulerConfig worker_scheduler_config(const NodeOptions& options, const ModelConfig& model);

// A stored mixture of expert adapters with its parsed router.
struct MixtureRoute {
  MixtureRecord record;
  moe::Mixture router;
  // A hidden-state mixture: routed in each request's own prefill (skip_tokens 0).
  std::shared_ptr<const PrefillRouter> in_prefill;
};

// What a request names: the base model, one published adapter version, or a
// mixture of experts (routed per request: NodeService::route).
struct ModelRef {
  bool base = true;
  AdapterRecord adapter;                        // when !base and !mixture
  std::shared_ptr<const MixtureRoute> mixture;  // a mixture (base is false)
  std::string name() const {
    return mixture ? mixture->record.qualified_name() : base ? std::string() : adapter.id.to_string();
  }
};

// One expert a request to a mixture was routed to.
struct RoutedExpert {
  AdapterId id;        // the pinned expert version
  std::string name;    // the expert's name in the mixture (expert-I)
  double weight = 1;   // its mixing weight (they sum to 1)
};

// Where one adapter version is on one worker, as that worker last reported
// (AdapterResidency in schema/messages.capnp).
struct VersionPlacement {
  std::string worker;  // "" = no worker has reported it: only in the store
  std::string where;   // store | fetching | host_cache | loading | slot | evicted | failed
  int32_t slot = -1;   // loading, slot
  std::string error;   // failed: why
};

// One version of an adapter as its adapter actor knows it now.
struct VersionStatus {
  uint64_t version = 0;
  uint32_t pins = 0;      // requests running on it
  bool deleting = false;  // a delete waits for the pins to end
  std::vector<VersionPlacement> residency;
};

struct GenerateCall {
  ModelRef model;
  // Non-empty: a per-row mixture of these versions (a routed mixture of
  // experts) instead of `model`'s adapter.
  std::vector<RoutedExpert> experts;
  // Set: `experts` are all of a hidden-state mixture's (weights 0), chosen
  // by this router in the request's own prefill; its events carry the choice.
  std::shared_ptr<const PrefillRouter> prefill_router;
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  std::vector<LogitBias> logit_bias;  // Request::logit_bias
  uint32_t max_tokens = 16;
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;  // besides the model's EOS ids (those only without ignore_eos)
  uint32_t min_tokens = 0;              // Request::min_tokens
  bool ignore_eos = false;
  double timeout_ms = kNoDeadline;
  // Logits of the prompt's positions as kLogits events (echo with logprobs);
  // with it max_tokens may be 0 (score the prompt only).
  LogitsRequest prompt_logits = LogitsRequest::kNone;
};

class NodeService {
 public:
  using EventCallback = std::function<void(const RequestEvent&)>;
  class Dispatch;  // (opaque) routes events to the callback each request was submitted with
  struct Actors;   // (opaque) the actor system and the service's actors

  static Result<std::unique_ptr<NodeService>> start(const NodeOptions& options);
  ~NodeService();

  const std::string& model_name() const { return model_name_; }
  const ModelConfig& model_config() const { return checkpoint_->config(); }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  int64_t context_length() const { return checkpoint_->config().max_position_embeddings; }
  // Alternatives per token (top_logprobs) this node's executor reports: the
  // CPU's sampler gives up to kMaxTopLogprobs, the CUDA one none yet.
  uint32_t max_top_logprobs() const { return device_ == "cpu" ? kMaxTopLogprobs : 0; }
  // Whether this node's executor applies logit_bias (the CPU's does, the
  // CUDA one not yet).
  bool applies_logit_bias() const { return device_ == "cpu"; }

  // "base-name", "tenant/name", "tenant/name@N", "tenant/name@latest", or a
  // bare "name" of the caller's tenant. kNotFound names the model.
  Result<ModelRef> resolve(std::string_view model, const Caller& caller) const;
  // The base model and the adapters the caller may use.
  Result<std::vector<ModelRef>> models(const Caller& caller) const;

  Result<std::vector<int32_t>> encode_prompt(std::string_view text) const;
  // Renders the model's chat template over OpenAI-style messages (with the
  // generation prompt) and encodes it.
  Result<std::vector<int32_t>> encode_chat(const nlohmann::json& messages) const;

  // Accepted: its id; events follow through `on_event`, ending with exactly
  // one final event. An Error: refused (no events).
  Result<RequestId> generate(GenerateCall call, EventCallback on_event);
  void cancel(RequestId id);

  // Adapter management for a caller's tenant (admins may name any tenant).
  Result<AdapterRecord> add_adapter_from_path(const Caller& caller, std::string_view name,
                                              const std::string& path);
  Result<AdapterRecord> add_adapter_bytes(const Caller& caller, std::string_view name,
                                          std::string_view config_json, std::string_view safetensors);
  // Every version when `name` has none; kNotFound like resolve(). Waits for
  // running requests that pinned a deleted version. Answers what it deleted.
  Result<std::vector<AdapterRecord>> delete_adapter(const Caller& caller, std::string_view name);
  Status remove_adapter(const Caller& caller, std::string_view name) {
    auto removed = delete_adapter(caller, name);
    return removed.ok() ? Status() : Status(removed.error());
  }
  // Every version of every adapter the caller may use, by tenant, name, version.
  Result<std::vector<AdapterRecord>> list_adapters(const Caller& caller) const;
  // Pins and residency of every version of `tenant/name` (which the caller
  // may use: list_adapters named it), from its adapter actor.
  Result<std::vector<VersionStatus>> adapter_status(const Caller& caller, const AdapterId& adapter) const;
  // Every version of `name` (a version in the name is ignored), oldest first; kNotFound when none.
  Result<std::vector<AdapterRecord>> adapter_versions(const Caller& caller, std::string_view name) const;
  // Mixtures of experts (docs/moe.md): `dir` is a `myriad moe create`
  // folder on the node; each expert is published as the adapter
  // "<name>.<expert-I>" and the router stored as tenant/name (replacing a
  // mixture of that name). Only TF-IDF mixtures: hidden-state ones need a
  // base pass per request that the node does not run (kUnsupported).
  Result<MixtureRecord> add_mixture_from_path(const Caller& caller, std::string_view name, const std::string& dir);
  // Stores `router` as tenant/name over experts already published (a
  // mixture build's jobs published them).
  Result<MixtureRecord> add_mixture(const Caller& caller, std::string_view name, const moe::Mixture& router,
                                    std::vector<AdapterId> experts);
  // kInvalidArgument when `name` cannot name a new mixture of the caller's
  // (malformed, versioned, or an adapter's name).
  Status check_mixture_name(const Caller& caller, std::string_view name) const;
  Result<std::vector<MixtureRecord>> list_mixtures(const Caller& caller) const;
  Status delete_mixture(const Caller& caller, std::string_view name);
  // The experts for a prompt's text (embedded without special tokens, as
  // the corpus was); top_k overrides the mixture's (1..its k, at most 4).
  // A hidden-state mixture: all its experts, weight 0 (prefill_router picks).
  Result<std::vector<RoutedExpert>> route(const ModelRef& mixture, std::string_view text,
                                          std::optional<int32_t> top_k = std::nullopt) const;
  // The same from token ids (a leading BOS is skipped).
  // A hidden-state mixture's router for a request running `prompt` (its
  // leading BOS attended to, not averaged); null for a TF-IDF mixture.
  std::shared_ptr<const PrefillRouter> prefill_router(const ModelRef& mixture, const std::vector<int32_t>& prompt,
                                                      std::optional<int32_t> top_k = std::nullopt) const;
  Result<std::vector<RoutedExpert>> route_ids(const ModelRef& mixture, std::vector<int32_t> ids,
                                              std::optional<int32_t> top_k = std::nullopt) const;

  // Fine-tuning jobs and their files: null where this node cannot train
  // (fine_tuning_unavailable() says why).
  FineTuning* fine_tuning() { return fine_tuning_.get(); }
  const std::string& fine_tuning_unavailable() const { return fine_tuning_unavailable_; }
  // Mixtures built on this node from an uploaded corpus (mixture_builds.h):
  // null where fine-tuning is unavailable.
  MixtureBuilds* mixture_builds() { return mixture_builds_.get(); }

  // What clients got from each adapter (adapter_traffic.h), on any role.
  const AdapterTraffic& adapter_traffic() const { return *traffic_; }

  // The served base's fingerprint, which every stored adapter records.
  const std::string& base_fingerprint() const { return base_fingerprint_; }

  // Stops accepting and finishes what is in flight: returns once every
  // accepted request's final event has reached its callback.
  void drain();
  bool draining() const { return draining_.load(); }
  // Live counts of the worker (steps, in flight, queued, running).
  EngineWorkerStats stats();
  // The engine's metrics (EngineMetrics::to_json) of the worker, and the
  // gateway's view of every worker ("gateway").
  std::string metrics_json();
  // The gateway's view of every worker (GET /admin/cluster): {"workers": [...],
  // "held", "routes", "placed_again", ...}; asks only the gateway, not an engine.
  nlohmann::json cluster_view();
  // Workers up and workers ever joined, as the gateway sees them.
  std::pair<uint32_t, uint32_t> worker_counts();
  // gateway role: the port workers join on (0 otherwise).
  uint16_t cluster_port() const { return cluster_port_; }
  // Drains one worker of the cluster by id (POST /admin/drain?worker=ID):
  // placed on no more, its waiting requests move, its running ones finish.
  // kNotFound when no worker of that id is up.
  Status drain_worker(const std::string& worker_id);

 private:
  NodeService() = default;
  // The stored mixture `model` names for the caller (nullptr when none).
  Result<std::shared_ptr<const MixtureRoute>> mixture_named(std::string_view model, const Caller& caller) const;
  Status check_routes_in_prefill(const moe::Mixture& mixture, const std::string& dir) const;

  std::string model_name_;
  std::string device_;  // NodeOptions::device
  std::shared_ptr<const Checkpoint> checkpoint_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::string chat_template_;
  std::string base_fingerprint_;
  std::vector<int32_t> eos_ids_;
  std::shared_ptr<AdapterStore> store_;  // mixtures (adapters go through the registry actor)
  // Parsed routers by tenant/name, valid while created_unix_ms matches the store's.
  mutable std::mutex mixtures_mu_;
  mutable std::unordered_map<std::string, std::shared_ptr<const MixtureRoute>> mixtures_;
  std::shared_ptr<Dispatch> dispatch_;
  std::shared_ptr<AdapterTraffic> traffic_;
  // Before actors_: destroyed after the worker that runs its TrainingWork.
  std::unique_ptr<FineTuning> fine_tuning_;
  std::unique_ptr<MixtureBuilds> mixture_builds_;  // after fine_tuning_: destroyed first (it watches the jobs)
  std::string fine_tuning_unavailable_;
  std::unique_ptr<Actors> actors_;
  std::atomic<uint64_t> next_id_{0};
  std::atomic<bool> draining_{false};
  uint16_t cluster_port_ = 0;
};

}  // namespace myriad::node
