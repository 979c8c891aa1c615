#include "node_service.h"

#include <algorithm>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/all.hpp>
#include <chrono>
#include <functional>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "actors/attempt_filter.h"
#include "actors/cluster_door.h"
#include "cluster_jobs.h"
#include "actors/event_wire.h"
#include "actors/gateway_actor.h"
#include "actors/message_types.h"
#include "actors/registry_actor.h"
#include "actors/scheduler_actor.h"
#include "actors/service_wire.h"
#include "actors/worker_actor.h"
#include "adapter_traffic.h"
#include "service_wiring.h"
#include "gpu/cpu/cpu_executor.h"
#include "gpu/executor_factory.h"
#include "gpu/cpu/lora_trainer.h"
#include "runtime/chat_template.h"
#include "runtime/log.h"
#include "runtime/peft_adapter.h"
#include "runtime/sha256.h"
#ifdef MYRIAD_HAVE_CUDA
#include "gpu/cuda/cuda_executor.h"
#include "gpu/cuda/lora_trainer.h"
#endif

namespace myriad::node {

// Routes events to the callback each request was submitted with (on the
// relay actor's thread); forgets it after the final event. drain() waits
// here until every callback has had its final event.
class NodeService::Dispatch {
 public:
  void add(RequestId id, EventCallback cb) {
    std::lock_guard lock(mu_);
    callbacks_[id] = std::move(cb);
  }
  void remove(RequestId id) {
    std::lock_guard lock(mu_);
    callbacks_.erase(id);
    if (callbacks_.empty()) idle_.notify_all();
  }
  void on_event(const RequestEvent& e) {
    EventCallback cb;
    {
      std::lock_guard lock(mu_);
      auto it = callbacks_.find(e.id);
      if (it == callbacks_.end()) return;
      cb = e.is_final() ? std::move(it->second) : it->second;
      if (e.is_final()) callbacks_.erase(it);
    }
    cb(e);
    if (e.is_final()) {
      std::lock_guard lock(mu_);
      if (callbacks_.empty()) idle_.notify_all();
    }
  }
  size_t open() {
    std::lock_guard lock(mu_);
    return callbacks_.size();
  }
  void wait_idle() {
    std::unique_lock lock(mu_);
    idle_.wait(lock, [&] { return callbacks_.empty(); });
  }

 private:
  std::mutex mu_;
  std::condition_variable idle_;
  std::unordered_map<RequestId, EventCallback> callbacks_;
};

namespace {

using namespace myriad::actors;

// The front ends' event sink: decodes each event and hands it to Dispatch.
event_sink_actor::behavior_type relay_behavior(std::shared_ptr<NodeService::Dispatch> dispatch);

}  // namespace

struct NodeService::Actors {
  caf::actor_system_config config;
  std::unique_ptr<caf::actor_system> system;
  registry_actor registry;
  gateway_actor gateway;
  scheduler_actor scheduler;  // role all: the one local worker's
  worker_actor worker;
  event_sink_actor relay;
  cluster_door_actor door;  // role gateway: where workers join
  // Run first when these actors go: what else holds actor handles lets go
  // (a gateway's fine-tuning runner), so nothing outlives the system.
  std::function<void()> before_shutdown;

  // One request to an actor, answered on this thread; kUnavailable when no
  // answer comes within a minute (a front end's thread must not hang on a
  // lost answer).
  template <class Reply, class Handle, class... Ts>
  Result<Reply> ask(const Handle& to, Ts&&... xs) {
    return ask_within<Reply>(std::chrono::seconds(60), to, std::forward<Ts>(xs)...);
  }
  template <class Reply, class Timeout, class Handle, class... Ts>
  Result<Reply> ask_within(Timeout timeout, const Handle& to, Ts&&... xs) {
    caf::scoped_actor self{*system};
    Result<Reply> out = make_error(ErrorCode::kInternal, "no answer");
    self->request(to, timeout, std::forward<Ts>(xs)...)
        .receive([&](Reply& reply) { out = std::move(reply); },
                 [&](caf::error& err) { out = make_error(ErrorCode::kUnavailable, system->render(err)); });
    return out;
  }

  ~Actors() {
    if (before_shutdown) before_shutdown();
    if (!system) return;
    for (const auto& h : {caf::actor_cast<caf::actor>(gateway), caf::actor_cast<caf::actor>(scheduler),
                          caf::actor_cast<caf::actor>(worker), caf::actor_cast<caf::actor>(registry),
                          caf::actor_cast<caf::actor>(relay), caf::actor_cast<caf::actor>(door)})
      if (h) caf::anon_send_exit(h, caf::exit_reason::user_shutdown);
    // Drop every strong handle first: a detached actor's thread ends only
    // once nothing references the actor, and the system waits for it.
    gateway = nullptr;
    scheduler = nullptr;
    worker = nullptr;
    registry = nullptr;
    relay = nullptr;
    door = nullptr;
    system.reset();  // waits for every actor to quit
  }
};

namespace {

event_sink_actor::behavior_type relay_behavior(std::shared_ptr<NodeService::Dispatch> dispatch) {
  auto filter = std::make_shared<AttemptFilter>();  // this actor's alone: a re-placed request's tokens reach the callback once
  return {
      [dispatch, filter](event_atom, const EventWire& wire) {
        auto d = wire.decode();
        if (!d) return;
        auto event = read_event(d->get());
        if (!event) return;
        const RequestEvent& e = event->view();
        if (filter->pass(e.id, d->get().getAttempt(), e.is_final(), e.kind == EventKind::kToken, e.index, e.token))
          dispatch->on_event(e);
      },
      [filter](resume_atom, uint64_t id, uint32_t attempt) {
        return resume_point(id, attempt, filter->resume_point(id, attempt));
      },
  };
}

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(ErrorCode::kNotFound, "cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

caf::actor_system_config& service_config(caf::actor_system_config& cfg) {
  register_message_types(cfg);
  // The sharing policy: idle threads block on a condition variable. CAF
  // 0.17's default work stealing polls, then sleeps up to 10 ms between
  // polls: on a busy 2-core node it steals cycles from the executor while
  // polling and adds up to 10 ms to every hop once relaxed.
  cfg.set("scheduler.policy", caf::atom("sharing"));
  cfg.set("scheduler.max-threads", 2);
  cfg.set("logger.file-verbosity", caf::atom("quiet"));
  cfg.set("logger.console-verbosity", caf::atom("quiet"));
  return cfg;
}

Status load_cluster_modules(caf::actor_system_config& cfg, const ClusterTls& tls) {
  cfg.load<caf::io::middleman>();
  if (!tls.enabled()) return Status();
  for (const auto& [flag, path] : {std::pair{"--cluster-tls-cert", &tls.certificate}, std::pair{"--cluster-tls-key", &tls.key},
                                   std::pair{"--cluster-tls-ca", &tls.ca}}) {
    if (path->empty()) return make_error(ErrorCode::kInvalidArgument, std::string(flag) + ": TLS needs a certificate, its key and the CA");
    if (!std::ifstream(*path)) return make_error(ErrorCode::kNotFound, std::string(flag) + " " + *path + ": cannot open it");
  }
  cfg.openssl_certificate = tls.certificate;
  cfg.openssl_key = tls.key;
  cfg.openssl_cafile = tls.ca;
  cfg.load<caf::openssl::manager>();
  return Status();
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

SchedulerActorOptions scheduler_options(const NodeOptions& o, const SchedulerConfig& sc, const ModelConfig& model,
                                        const std::string& worker_id) {
  SchedulerActorOptions so;
  so.worker_id = worker_id;
  so.limits = request_limits(sc);
  so.limits.vocab_size = int32_t(model.vocab_size);
  so.max_waiting = uint32_t(o.max_waiting);
  so.quantum_ms = sc.quantum_ms;
  so.timeslice = o.admission != "fifo";
  // With the active set here, what enters the engine is what it can run
  // soon: a rotated set's requests already inside finish before the next
  // set's load, so a deep engine queue would stretch every turn. FIFO keeps
  // the deeper queue the engine's own time-slicing chooses from.
  so.max_in_worker = so.timeslice ? uint32_t(std::max(o.max_running * 2, 16))
                                  : uint32_t(std::max(o.max_running * 4, 64));
  return so;
}

SchedulerConfig worker_scheduler_config(const NodeOptions& o, const ModelConfig& model) {
  const int32_t block = 16;
  const int64_t ctx = model.max_position_embeddings > 0 ? model.max_position_embeddings : 2048;
  int32_t kv_blocks = o.kv_blocks;
  if (kv_blocks <= 0)
    kv_blocks = int32_t(std::min<int64_t>((ctx + block - 1) / block * o.max_running, 65536 / block));
  SchedulerConfig sc;
  sc.num_slots = o.slots;
  sc.quantum_ms = o.quantum_ms;
  sc.max_running_seqs = o.max_running;
  sc.max_tokens_per_step = o.max_tokens_per_step;
  sc.kv_block_size = block;
  sc.num_kv_blocks = kv_blocks;
  sc.max_seq_len = int32_t(std::min<int64_t>(ctx + 1, int64_t(kv_blocks) * block));
  return sc;
}

Result<std::string> base_fingerprint_of(const std::string& model_dir) {
  auto config_json = read_file(model_dir + "/config.json");
  if (!config_json.ok()) return config_json.error();
  return sha256_hex(config_json.value());
}

Result<std::unique_ptr<Executor>> make_executor(const NodeOptions& o, std::shared_ptr<const Checkpoint> checkpoint,
                                                const SchedulerConfig& sc) {
  gpu::ExecutorSpec spec = gpu::executor_spec_for(sc);  // o's slots, step and rows (worker_scheduler_config)
  spec.device = o.device;
  spec.threads = o.threads;
  spec.max_adapter_rank = o.max_adapter_rank;
  return gpu::make_executor(spec, std::move(checkpoint));
}

Result<std::unique_ptr<NodeService>> NodeService::start(const NodeOptions& o) {
  std::unique_ptr<NodeService> s(new NodeService());
  auto ck = Checkpoint::load(o.model_dir);
  if (!ck.ok()) return ck.error();
  s->checkpoint_ = ck.value();
  auto tok = Tokenizer::load(o.model_dir);
  if (!tok.ok()) return tok.error();
  s->tokenizer_ = tok.value();
  if (auto t = chat_template_from_config(s->tokenizer_->config().raw); t.ok()) s->chat_template_ = t.value();
  s->device_ = o.device;
  s->model_name_ =
      o.model_name.empty() ? std::filesystem::path(o.model_dir).filename().string() : o.model_name;
  if (s->model_name_.empty())
    s->model_name_ = std::filesystem::path(o.model_dir).parent_path().filename().string();
  const ModelConfig& cfg = s->checkpoint_->config();
  for (int64_t id : s->checkpoint_->generation_config().eos_token_ids) s->eos_ids_.push_back(int32_t(id));
  for (int64_t id : cfg.eos_token_ids) s->eos_ids_.push_back(int32_t(id));

  // The store: adapters are checked against this base; its fingerprint is
  // the config.json's hash, so a store is never served over another model.
  auto fingerprint = base_fingerprint_of(o.model_dir);
  if (!fingerprint.ok()) return fingerprint.error();
  std::error_code ec;
  std::filesystem::create_directories(o.data_dir, ec);
  if (ec) return make_error(ErrorCode::kIo, "cannot create --data " + o.data_dir + ": " + ec.message());
  AdapterStoreOptions so;
  so.max_rank = o.max_adapter_rank;
  auto opened = AdapterStore::open(o.data_dir, cfg, fingerprint.value(), so);
  if (!opened.ok()) return opened.error();
  std::shared_ptr<AdapterStore> store = std::move(opened.value());
  s->base_fingerprint_ = store->base_fingerprint();
  s->store_ = store;

  // The engine configuration, and the executor with the same KV pool and slots.
  const SchedulerConfig sc = worker_scheduler_config(o, cfg);
  const int32_t kv_blocks = sc.num_kv_blocks;
  auto setup = std::make_shared<WorkerSetup>();
  if (o.role == "all") {
    auto ex = make_executor(o, s->checkpoint_, sc);
    if (!ex.ok()) return ex.error();
    setup->executor = std::move(ex.value());
    // Fine-tuning trains on the worker's thread between its steps: on a CPU
    // device with the executor's thread pool (one user at a time: that
    // thread), on a CUDA device with its own stream beside the executor's.
    std::unique_ptr<LoraTrainingBackend> trainer;
    if (auto* cpu = dynamic_cast<gpu::cpu::CpuExecutor*>(setup->executor.get())) {
      trainer = std::make_unique<gpu::cpu::CpuLoraTrainingBackend>(s->checkpoint_, cpu->pool());
    } else {
#ifdef MYRIAD_HAVE_CUDA
      // Without room for the trainer's float32 base the node still serves.
      auto made = gpu::cuda::CudaLoraTrainingBackend::create(s->checkpoint_);
      if (made.ok()) {
        trainer = std::move(made.value());
      } else {
        s->fine_tuning_unavailable_ = "fine-tuning on this CUDA device: " + made.error().to_string();
      }
#else
      s->fine_tuning_unavailable_ = "fine-tuning needs a CPU or CUDA device";
#endif
    }
    if (trainer) {
      FineTuningOptions fo;
      fo.data_dir = o.data_dir;
      fo.base_model = s->model_name_;
      fo.publish_every = o.fine_tuning_publish_every;
      fo.max_running = o.max_training_jobs;
      auto ft = FineTuning::open(fo, s->checkpoint_, s->tokenizer_, std::move(trainer));
      if (!ft.ok()) return ft.error();
      s->fine_tuning_ = std::move(ft.value());
      setup->background = &s->fine_tuning_->work();
      setup->background_share = o.training_share;
    }
  } else if (o.role == "gateway") {
    // Jobs train on the workers (cluster_jobs.h); the gateway keeps their
    // records, checkpoints and versions. Its runner needs the actor system.
    FineTuningOptions fo;
    fo.data_dir = o.data_dir;
    fo.base_model = s->model_name_;
    fo.publish_every = o.fine_tuning_publish_every;
    fo.max_running = o.max_training_jobs;
    auto ft = FineTuning::open(fo, s->checkpoint_, s->tokenizer_, nullptr);
    if (!ft.ok()) return ft.error();
    s->fine_tuning_ = std::move(ft.value());
  } else {
    return make_error(ErrorCode::kInvalidArgument, "--role " + o.role + ": expected all or gateway here");
  }
  const std::string device = setup->executor ? setup->executor->info().device : std::string("none (workers join)");

  // The actors: registry (detached: the store blocks on disk), gateway, and
  // for the one device a worker (detached: it waits for its step thread)
  // behind its scheduler.
  auto actors = std::make_unique<Actors>();
  const bool gateway_role = o.role == "gateway";
  if (gateway_role) {
    if (o.cluster_secret.empty() && !is_loopback(o.cluster_host))
      return make_error(ErrorCode::kInvalidArgument,
                        "--cluster " + o.cluster_host +
                            ": without --cluster-secret workers may join only from this host (a loopback address)");
    if (Status st = load_cluster_modules(actors->config, o.cluster_tls); !st.ok()) return st.error();
  }
  actors->system = std::make_unique<caf::actor_system>(service_config(actors->config));
  caf::actor_system& sys = *actors->system;
  // The registry blocks on disk (publish: fsync, hashing), so it gets its
  // own thread, except on a cluster's gateway: there a remote worker's
  // messages can keep a reference to it after shutdown (CAF 0.17 then waits
  // for a detached actor's destruction for good), and a publish may take
  // one of the CAF threads for its duration instead.
  actors->registry = gateway_role ? sys.spawn(registry_behavior, store, s->model_name_)
                                  : sys.spawn<caf::detached>(registry_behavior, store, s->model_name_);
  GatewayOptions go;
  go.base_model = s->model_name_;
  go.heartbeat_timeout_ms = o.heartbeat_timeout_ms;
  go.max_wait_for_worker_ms = o.max_wait_for_worker_ms;
  go.drain_workers = !gateway_role;
  go.placement.policy = o.placement;
  job_host_actor jobs;
  if (gateway_role && s->fine_tuning_) {
    auto runner = std::make_unique<ClusterJobs>(sys, o.fine_tuning_publish_every, s->fine_tuning_->publish_callback(),
                                                s->fine_tuning_->progress_callback());
    jobs = runner->host();
    s->fine_tuning_->set_runner(std::move(runner));
    actors->before_shutdown = [ft = s->fine_tuning_.get()] { ft->stop(); };
    go.job_host = jobs;
  }
  actors->gateway = sys.spawn(gateway_behavior, actors->registry, go);
  if (gateway_role) {
    ClusterDoorOptions door;
    door.base_model = s->model_name_;
    door.base_fingerprint = s->base_fingerprint_;
    door.secret = o.cluster_secret;
    actors->door = sys.spawn(cluster_door_behavior, actors->gateway, actors->registry, door, jobs);
    auto port = o.cluster_tls.enabled()
                    ? caf::openssl::publish(actors->door, o.cluster_port, o.cluster_host.c_str(), /*reuse=*/true)
                    : sys.middleman().publish(actors->door, o.cluster_port, o.cluster_host.c_str(), /*reuse=*/true);
    if (!port)
      return make_error(ErrorCode::kIo, "--cluster " + o.cluster_host + ":" + std::to_string(o.cluster_port) +
                                            ": cannot listen: " + sys.render(port.error()));
    s->cluster_port_ = *port;
  } else {
    setup->worker_id = "local/" + o.device + "0";
    setup->config = sc;
    setup->tokenizer = s->tokenizer_;
    setup->host_cache_bytes = o.host_cache_bytes;
    // A version a fine-tuning job just published is served from the
    // trainer's memory; every other one is read from the store.
    FineTuning* ft = s->fine_tuning_.get();
    setup->load_adapter = [store, ft](const AdapterId& id) -> Result<std::shared_ptr<const LoraWeights>> {
      if (ft)
        if (auto w = ft->fresh_version(id)) return w;
      return store->load(id);
    };
    setup->registry = caf::actor_cast<worker_registry_actor>(actors->registry);
    auto worker = spawn_worker(sys, setup);
    if (!worker.ok()) return worker.error();
    actors->worker = worker.value();
    actors->scheduler = sys.spawn(scheduler_behavior, actors->worker,
                                  caf::actor_cast<load_sink_actor>(actors->gateway), scheduler_options(o, sc, cfg, setup->worker_id));
    caf::anon_send(actors->worker, attach_atom::value, actors->scheduler);
    caf::anon_send(actors->gateway, add_worker_atom::value, setup->worker_id, actors->scheduler);
  }
  s->dispatch_ = std::make_shared<Dispatch>();
  s->traffic_ = std::make_shared<AdapterTraffic>();
  actors->relay = sys.spawn(relay_behavior, s->dispatch_);
  s->actors_ = std::move(actors);
  if (s->fine_tuning_) {
    NodeService* self = s.get();
    s->fine_tuning_->start([self](const Caller& caller, std::string_view name, const std::string& dir) {
      return self->add_adapter_from_path(caller, name, dir);
    });
    MixtureBuilds::Hooks hooks;
    hooks.check_name = [self](const Caller& caller, std::string_view name) {
      return self->check_mixture_name(caller, name);
    };
    hooks.store_mixture = [self](const Caller& caller, std::string_view name, const moe::Mixture& router,
                                 std::vector<AdapterId> experts) {
      return self->add_mixture(caller, name, router, std::move(experts));
    };
    auto builds = MixtureBuilds::open(o.data_dir, s->model_name_, *s->fine_tuning_, s->tokenizer_, std::move(hooks));
    if (!builds.ok()) return builds.error();
    s->mixture_builds_ = std::move(builds.value());
    s->mixture_builds_->start();
  }

  // Ids unique across restarts: milliseconds since the epoch in the high bits.
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  s->next_id_ = (uint64_t(now_ms) << 16) + 1;
  log_info("node: model {} ({}), {} adapter slots, {} KV blocks, device {}", s->model_name_, o.model_dir,
           o.slots, kv_blocks, device);
  return s;
}

NodeService::~NodeService() {
  // The publisher first (it calls into the actors), then the actors (the
  // worker cancels what is in flight and stops running the training work),
  // then the fine-tuning state itself.
  mixture_builds_.reset();  // its watcher stores mixtures through this service
  if (fine_tuning_) fine_tuning_->stop();
  actors_.reset();
}

Result<ModelRef> NodeService::resolve(std::string_view model, const Caller& caller) const {
  auto answer = actors_->ask<AdapterAnswerWire>(
      actors_->registry, resolve_atom::value, registry_call(caller.tenant, caller.admin, std::string(model)));
  if (!answer) return answer.error();
  auto resolved = read_answer(answer.value());
  if (!resolved) {
    if (resolved.error().code == ErrorCode::kNotFound) {
      auto mixture = mixture_named(model, caller);
      if (mixture.ok() && mixture.value()) {
        ModelRef m;
        m.base = false;
        m.mixture = mixture.value();
        return m;
      }
    }
    return resolved.error();
  }
  if (!resolved.value()) return ModelRef{};
  ModelRef m;
  m.base = false;
  m.adapter = *resolved.value();
  return m;
}

Result<std::shared_ptr<const MixtureRoute>> NodeService::mixture_named(std::string_view model,
                                                                       const Caller& caller) const {
  auto n = parse_adapter_name_for(model, caller.tenant, caller.admin);
  if (!n.ok() || n.value().version != 0) return std::shared_ptr<const MixtureRoute>();
  auto record = store_->find_mixture(n.value().tenant, n.value().name);
  if (!record.ok()) return record.error();
  if (!record.value()) return std::shared_ptr<const MixtureRoute>();
  const std::string key = record.value()->qualified_name();
  std::lock_guard lock(mixtures_mu_);
  auto it = mixtures_.find(key);
  if (it != mixtures_.end() && it->second->record.created_unix_ms == record.value()->created_unix_ms &&
      it->second->record.experts == record.value()->experts)
    return it->second;
  const auto json = nlohmann::json::parse(record.value()->router_json, nullptr, /*allow_exceptions=*/false);
  auto router = moe::Mixture::from_json(json, "mixture " + key);
  if (!router.ok()) return router.error();
  if (router.value().k() != int64_t(record.value()->experts.size()))
    return make_error(ErrorCode::kBadFile, "mixture " + key + ": the router and the stored experts disagree");
  std::shared_ptr<const PrefillRouter> in_prefill;
  if (router.value().embedding_kind == moe::EmbeddingKind::kHiddenMean)
    in_prefill = router.value().prefill_router(router.value().routing);
  auto route = std::make_shared<const MixtureRoute>(
      MixtureRoute{std::move(*record.value()), std::move(router.value()), std::move(in_prefill)});
  mixtures_[key] = route;
  return route;
}

Result<MixtureRecord> NodeService::add_mixture_from_path(const Caller& caller, std::string_view name,
                                                         const std::string& dir) {
  auto n = parse_adapter_name_for(name, caller.tenant, caller.admin);
  if (!n.ok()) return n.error();
  if (n.value().version != 0)
    return make_error(ErrorCode::kInvalidArgument, "a mixture's name has no version: " + std::string(name));
  auto mixture = moe::Mixture::load(dir);
  if (!mixture.ok()) return mixture.error();
  if (mixture.value().embedding_kind == moe::EmbeddingKind::kHiddenMean)
    MYRIAD_TRY(check_routes_in_prefill(mixture.value(), dir));
  std::vector<AdapterId> experts;
  for (const moe::MixtureExpert& e : mixture.value().experts) {
    auto rec = add_adapter_from_path(caller, n.value().tenant + "/" + n.value().name + "." + e.name,
                                     (std::filesystem::path(dir) / e.name).string());
    if (!rec.ok()) return rec.error();
    experts.push_back(rec.value().id);
  }
  return add_mixture(caller, name, mixture.value(), std::move(experts));
}

// A hidden-state mixture on this node routes in each request's own prefill
// (the node runs no base pass): its shape must be the base's, its experts
// must leave the layers below the routing layer to the base, and the
// device must route in the prefill.
Status NodeService::check_routes_in_prefill(const moe::Mixture& mixture, const std::string& dir) const {
  const ModelConfig& c = checkpoint_->config();
  if (mixture.hidden_dim != c.hidden_size || mixture.hidden_layer > c.num_layers)
    return make_error(ErrorCode::kInvalidArgument,
                      dir + ": the mixture pools layer " + std::to_string(mixture.hidden_layer) + " of width " +
                          std::to_string(mixture.hidden_dim) + "; the base has " + std::to_string(c.num_layers) +
                          " layers of width " + std::to_string(c.hidden_size));
  if (device_ != "cpu")
    return make_error(ErrorCode::kUnsupported, dir + ": a hidden-state mixture routes in the prefill, which the " +
                                                   device_ + " executor does not (use a CPU node or --embedding tfidf)");
  std::vector<std::shared_ptr<const LoraWeights>> weights;
  for (const moe::MixtureExpert& e : mixture.experts) {
    auto w = load_peft_adapter((std::filesystem::path(dir) / e.name).string(), c);
    if (!w.ok()) return w.error();
    weights.push_back(std::move(w.value()));
  }
  if (const std::string why = mixture.why_not_routed_in_prefill(weights); !why.empty())
    return make_error(ErrorCode::kUnsupported,
                      dir + ": the node routes a hidden-state mixture in each request's prefill, and this one "
                            "cannot be: " + why);
  return ok_status();
}

Result<MixtureRecord> NodeService::add_mixture(const Caller& caller, std::string_view name, const moe::Mixture& router,
                                               std::vector<AdapterId> experts) {
  auto n = parse_adapter_name_for(name, caller.tenant, caller.admin);
  if (!n.ok()) return n.error();
  if (n.value().version != 0)
    return make_error(ErrorCode::kInvalidArgument, "a mixture's name has no version: " + std::string(name));
  return store_->put_mixture(n.value().tenant, n.value().name, router.to_json().dump(), std::move(experts));
}

Status NodeService::check_mixture_name(const Caller& caller, std::string_view name) const {
  auto n = parse_adapter_name_for(name, caller.tenant, caller.admin);
  if (!n.ok()) return n.error();
  if (n.value().version != 0)
    return make_error(ErrorCode::kInvalidArgument, "a mixture's name has no version: " + std::string(name));
  auto versions = store_->versions(n.value().tenant, n.value().name);
  if (versions.ok() && !versions.value().empty())
    return make_error(ErrorCode::kInvalidArgument,
                      "'" + n.value().tenant + "/" + n.value().name + "' is an adapter: a name is one or the other");
  return ok_status();
}

Result<std::vector<MixtureRecord>> NodeService::list_mixtures(const Caller& caller) const {
  return store_->list_mixtures(caller.admin ? std::string_view() : std::string_view(caller.tenant));
}

Status NodeService::delete_mixture(const Caller& caller, std::string_view name) {
  auto n = parse_adapter_name_for(name, caller.tenant, caller.admin);
  if (!n.ok() || n.value().version != 0)
    return make_error(ErrorCode::kNotFound, "mixture '" + std::string(name) + "' does not exist");
  MYRIAD_TRY(store_->remove_mixture(n.value().tenant, n.value().name));
  std::lock_guard lock(mixtures_mu_);
  mixtures_.erase(n.value().tenant + "/" + n.value().name);
  return ok_status();
}

Result<std::vector<RoutedExpert>> NodeService::route(const ModelRef& mixture, std::string_view text,
                                                     std::optional<int32_t> top_k) const {
  return route_ids(mixture, tokenizer_->encode(text, /*add_special_tokens=*/false), top_k);
}

Result<std::vector<RoutedExpert>> NodeService::route_ids(const ModelRef& mixture, std::vector<int32_t> ids,
                                                         std::optional<int32_t> top_k) const {
  if (!mixture.mixture) return make_error(ErrorCode::kInvalidArgument, "not a mixture: " + mixture.name());
  const MixtureRoute& m = *mixture.mixture;
  const auto& bos = checkpoint_->config().bos_token_ids;
  if (!ids.empty() && std::find(bos.begin(), bos.end(), int64_t(ids[0])) != bos.end()) ids.erase(ids.begin());
  moe::RoutingOptions options = m.router.routing;
  if (top_k) {
    const int64_t most = std::min<int64_t>(m.router.k(), kMaxAdaptersPerRow);
    if (*top_k < 1 || *top_k > most)
      return make_error(ErrorCode::kInvalidArgument,
                        "top_k must be in [1, " + std::to_string(most) + "] for mixture " + m.record.qualified_name());
    options.top_k = *top_k;
  }
  std::vector<RoutedExpert> out;
  if (m.in_prefill) {
    for (size_t e = 0; e < m.record.experts.size(); ++e) out.push_back({m.record.experts[e], m.router.experts[e].name, 0.0});
    return out;
  }
  auto choices = m.router.route(ids, options);
  if (!choices.ok()) return choices.error();
  for (const moe::ExpertChoice& c : choices.value())
    out.push_back({m.record.experts[size_t(c.expert)], m.router.experts[size_t(c.expert)].name, c.weight});
  return out;
}

std::shared_ptr<const PrefillRouter> NodeService::prefill_router(const ModelRef& mixture,
                                                                 const std::vector<int32_t>& prompt,
                                                                 std::optional<int32_t> top_k) const {
  if (!mixture.mixture || !mixture.mixture->in_prefill) return nullptr;
  return moe::router_for_prompt(mixture.mixture->in_prefill, prompt, checkpoint_->config().bos_token_ids, top_k);
}

Result<std::vector<ModelRef>> NodeService::models(const Caller& caller) const {
  auto answer = actors_->ask<AdapterListWire>(actors_->registry, list_atom::value,
                                              registry_call(caller.tenant, caller.admin, ""));
  if (!answer) return answer.error();
  auto list = read_list(answer.value());
  if (!list) return list.error();
  // The base first, then the newest version of each name (what "tenant/name"
  // resolves to); the list comes ordered by tenant, name, version.
  std::vector<ModelRef> out(1);
  for (const AdapterRecord& r : list.value()) {
    ModelRef& last = out.back();
    if (!last.base && last.adapter.id.tenant == r.id.tenant && last.adapter.id.name == r.id.name) {
      if (r.id.version > last.adapter.id.version) last.adapter = r;
      continue;
    }
    out.push_back(ModelRef{false, r, nullptr});
  }
  // Then the mixtures of experts.
  auto mixtures = list_mixtures(caller);
  if (!mixtures.ok()) return mixtures.error();
  for (const MixtureRecord& m : mixtures.value()) {
    auto route = mixture_named(m.qualified_name(), Caller{m.tenant, caller.admin});
    if (route.ok() && route.value()) out.push_back(ModelRef{false, {}, route.value()});
  }
  return out;
}

Result<std::vector<int32_t>> NodeService::encode_prompt(std::string_view text) const {
  return tokenizer_->encode(text, /*add_special_tokens=*/true);
}

Result<std::vector<int32_t>> NodeService::encode_chat(const nlohmann::json& messages) const {
  if (chat_template_.empty())
    return make_error(ErrorCode::kUnsupported,
                      "model '" + model_name_ + "' has no chat template; use /v1/completions");
  auto text = render_chat_template(chat_template_, messages, /*add_generation_prompt=*/true,
                                   chat_template_context(tokenizer_->config()));
  if (!text.ok()) return text.error();
  return tokenizer_->encode(text.value(), /*add_special_tokens=*/false);
}

Result<RequestId> NodeService::generate(GenerateCall call, EventCallback on_event) {
  if (draining_) return make_error(ErrorCode::kUnavailable, "the node is shutting down");
  Request r;
  r.id = next_id_.fetch_add(1);
  r.prompt = std::move(call.prompt);
  r.sampling = call.sampling;
  r.logit_bias = std::move(call.logit_bias);
  r.max_tokens = call.max_tokens;
  r.min_tokens = call.min_tokens;
  r.stop = std::move(call.stop);
  if (!call.ignore_eos) r.stop_token_ids = eos_ids_;
  r.stop_token_ids.insert(r.stop_token_ids.end(), call.stop_token_ids.begin(), call.stop_token_ids.end());
  r.timeout_ms = call.timeout_ms;
  r.prompt_logits = call.prompt_logits;
  r.prefill_router = std::move(call.prefill_router);
  const RequestId id = r.id;
  // The model was resolved for the caller; its pinned name resolves again
  // (and is pinned) in the gateway, within the adapter's own tenant.
  std::string tenant = call.model.base ? std::string() : call.model.adapter.id.tenant;
  std::string model = call.model.base ? model_name_ : call.model.adapter.id.to_string();
  std::vector<std::pair<std::string, float>> experts;
  if (!call.experts.empty()) {
    // A routed mixture: the experts' pinned versions, within their tenant.
    tenant = call.experts[0].id.tenant;
    model = call.model.name();
    for (const RoutedExpert& e : call.experts) experts.push_back({e.id.to_string(), float(e.weight)});
  } else if (call.model.mixture) {
    return make_error(ErrorCode::kInvalidArgument, "a request to mixture " + call.model.name() + " needs its experts (route it)");
  }
  // Counted per adapter (or mixture) as the client sees it; the base is not an adapter.
  const std::string counted = call.model.base ? std::string()
                              : call.model.mixture ? call.model.name()
                                                   : call.model.adapter.id.qualified_name();
  if (!counted.empty()) on_event = traffic_->count(counted, std::move(on_event));
  dispatch_->add(id, std::move(on_event));
  auto answer = actors_->ask<AcceptedWire>(actors_->gateway, generate_atom::value,
                                           generate_wire(tenant, false, model, r, experts), actors_->relay);
  auto accepted_id = answer ? read_accepted(answer.value()) : Result<uint64_t>(answer.error());
  if (!accepted_id.ok()) {
    dispatch_->remove(id);
    return accepted_id.error();
  }
  if (!counted.empty()) traffic_->accepted(counted);
  return RequestId(accepted_id.value());
}

void NodeService::cancel(RequestId id) {
  caf::anon_send(actors_->gateway, cancel_atom::value,
                 CancelWire::from([&](schema::CancelRequest::Builder c) {
                   c.setRequestId(id);
                   c.setReason("cancelled by the client");
                 }));
}

namespace {

// The registry's answer to a publish: the version it published, or why not.
Result<AdapterRecord> published(const Result<AdapterAnswerWire>& answer) {
  if (!answer) return answer.error();
  auto record = read_answer(answer.value());
  if (!record) return record.error();
  if (!record.value()) return make_error(ErrorCode::kInternal, "the registry published no adapter");
  return *record.value();
}

}  // namespace

Result<AdapterRecord> NodeService::add_adapter_from_path(const Caller& caller, std::string_view name,
                                                         const std::string& path) {
  auto answer =
      actors_->ask<AdapterAnswerWire>(actors_->registry, publish_atom::value,
                                      registry_call(caller.tenant, caller.admin, std::string(name), path));
  return published(answer);
}

Result<AdapterRecord> NodeService::add_adapter_bytes(const Caller& caller, std::string_view name,
                                                     std::string_view config_json,
                                                     std::string_view safetensors) {
  RegistryCallWire call = RegistryCallWire::from([&](schema::RegistryCall::Builder c) {
    c.setTenant(caller.tenant);
    c.setAdmin(caller.admin);
    c.setName(std::string(name));
    c.setConfigJson(std::string(config_json));
    c.setSafetensors(
        capnp::Data::Reader(reinterpret_cast<const kj::byte*>(safetensors.data()), safetensors.size()));
  });
  auto answer = actors_->ask<AdapterAnswerWire>(actors_->registry, publish_atom::value, call);
  return published(answer);
}

Result<std::vector<AdapterRecord>> NodeService::delete_adapter(const Caller& caller, std::string_view name) {
  auto answer = actors_->ask<AdapterListWire>(actors_->registry, remove_atom::value,
                                              registry_call(caller.tenant, caller.admin, std::string(name)));
  if (!answer) return answer.error();
  return read_list(answer.value());
}

Result<std::vector<AdapterRecord>> NodeService::list_adapters(const Caller& caller) const {
  auto answer = actors_->ask<AdapterListWire>(actors_->registry, list_atom::value,
                                              registry_call(caller.tenant, caller.admin, ""));
  if (!answer) return answer.error();
  return read_list(answer.value());
}

Result<std::vector<VersionStatus>> NodeService::adapter_status(const Caller& caller,
                                                               const AdapterId& adapter) const {
  auto answer = actors_->ask<AdapterStatusWire>(
      actors_->registry, status_atom::value,
      registry_call(caller.tenant, caller.admin, adapter.tenant + "/" + adapter.name));
  if (!answer) return answer.error();
  auto decoded = answer.value().decode();
  if (!decoded) return decoded.error();
  std::vector<VersionStatus> out;
  for (auto v : decoded->get().getVersions()) {
    VersionStatus& s = out.emplace_back();
    s.version = v.getVersion();
    s.pins = v.getPins();
    s.deleting = v.getDeleting();
    for (auto r : v.getResidency()) {
      VersionPlacement& p = s.residency.emplace_back();
      p.worker = std::string(r.getWorker().cStr());
      auto where = r.getWhere();
      switch (where.which()) {
        case schema::AdapterResidency::Where::STORE: p.where = "store"; break;
        case schema::AdapterResidency::Where::FETCHING: p.where = "fetching"; break;
        case schema::AdapterResidency::Where::HOST_CACHE: p.where = "host_cache"; break;
        case schema::AdapterResidency::Where::LOADING:
          p.where = "loading";
          p.slot = int32_t(where.getLoading());
          break;
        case schema::AdapterResidency::Where::SLOT:
          p.where = "slot";
          p.slot = int32_t(where.getSlot());
          break;
        case schema::AdapterResidency::Where::EVICTED: p.where = "evicted"; break;
        case schema::AdapterResidency::Where::FAILED:
          p.where = "failed";
          p.error = std::string(where.getFailed().getMessage().cStr());
          break;
      }
    }
  }
  return out;
}

Result<std::vector<AdapterRecord>> NodeService::adapter_versions(const Caller& caller,
                                                                 std::string_view name) const {
  auto n = parse_adapter_name_for(name, caller.tenant, caller.admin);
  const auto missing = make_error(ErrorCode::kNotFound, "adapter '" + std::string(name) + "' does not exist");
  if (!n.ok()) return missing;
  auto all = list_adapters(Caller{n.value().tenant, false});
  if (!all.ok()) return all.error();
  std::vector<AdapterRecord> out;
  for (const AdapterRecord& r : all.value())
    if (r.id.name == n.value().name) out.push_back(r);
  if (out.empty()) return missing;
  return out;
}

void NodeService::drain() {
  draining_ = true;
  (void)actors_->ask_within<bool>(caf::infinite, actors_->gateway, drain_atom::value);  // as long as what runs
  dispatch_->wait_idle();  // the final events of what ran have reached their callbacks
}

nlohmann::json NodeService::cluster_view() {
  auto g = actors_->ask<std::string>(actors_->gateway, metrics_atom::value);
  auto json = nlohmann::json::parse(g ? g.value() : std::string("{}"), nullptr, /*allow_exceptions=*/false);
  return json.is_object() ? json : nlohmann::json::object();
}

EngineWorkerStats NodeService::stats() {
  EngineWorkerStats out;
  out.in_flight = dispatch_->open();
  out.stopping = draining_;
  if (!actors_->worker) {  // gateway role: the sums of the workers' latest reports
    for (const auto& w : cluster_view().value("workers", nlohmann::json::array())) {
      if (!w.value("up", false)) continue;
      out.queued += w.value("queued", uint64_t(0));
      out.running += w.value("running", uint64_t(0));
    }
    return out;
  }
  auto engine = actors_->ask<std::string>(actors_->worker, metrics_atom::value);  // the gateway's view is not needed here
  auto json = nlohmann::json::parse(engine ? engine.value() : std::string("{}"), nullptr, /*allow_exceptions=*/false);
  if (json.is_object() && json.contains("live")) {
    const auto& live = json["live"];
    out.steps = live.value("steps", uint64_t(0));
    out.queued = live.value("queued", uint64_t(0));
    out.running = live.value("running", uint64_t(0));
  }
  return out;
}

std::string NodeService::metrics_json() {
  nlohmann::json json = nlohmann::json::object();
  if (actors_->worker) {
    auto engine = actors_->ask<std::string>(actors_->worker, metrics_atom::value);
    json = nlohmann::json::parse(engine ? engine.value() : std::string("{}"), nullptr, false);
    if (!json.is_object()) json = nlohmann::json::object();
  }
  // Requests cancelled while they waited in the scheduler actor never
  // reached the engine: count them as submitted and cancelled there too.
  if (actors_->scheduler) {
    auto here = actors_->ask<std::string>(actors_->scheduler, metrics_atom::value);
    const auto j = nlohmann::json::parse(here ? here.value() : std::string("{}"), nullptr, false);
    if (j.is_object() && j.contains("cancelled_waiting") && j["cancelled_waiting"].is_object())
      for (const auto& [name, n] : j["cancelled_waiting"].items()) {
        if (!n.is_number_unsigned()) continue;
        for (nlohmann::json* figures : {&json["per_adapter"][name], &json["overall"]})
          for (const char* field : {"submitted", "cancelled"})
            (*figures)[field] = (*figures).value(field, uint64_t(0)) + n.get<uint64_t>();
      }
  }
  // The gateway's view beside the engine's: the workers as placement sees them.
  if (nlohmann::json g = cluster_view(); !g.empty()) json["gateway"] = std::move(g);
  return json.dump();
}

std::pair<uint32_t, uint32_t> NodeService::worker_counts() {
  uint32_t up = 0, total = 0;
  for (const auto& w : cluster_view().value("workers", nlohmann::json::array())) {
    ++total;
    up += w.value("up", false);
  }
  return {up, total};
}

Status NodeService::drain_worker(const std::string& worker_id) {
  auto found = actors_->ask<bool>(actors_->gateway, drain_atom::value, worker_id);
  if (!found) return found.error();
  if (!found.value()) return make_error(ErrorCode::kNotFound, "no worker '" + worker_id + "' is up");
  return Status();
}

}  // namespace myriad::node
