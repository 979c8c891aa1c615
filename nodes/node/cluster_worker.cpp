#include "cluster_worker.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/all.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <thread>

#include "actors/cluster_door.h"
#include "actors/common_wire.h"
#include "actors/message_types.h"
#include "actors/service_wire.h"
#include "actors/training_wire.h"
#include "actors/worker_actor.h"
#include "cluster_training_runs.h"
#include "gpu/cpu/cpu_executor.h"
#include "gpu/cpu/lora_trainer.h"
#ifdef MYRIAD_HAVE_CUDA
#include "gpu/cuda/lora_trainer.h"
#endif
#include "runtime/fetched_adapters.h"
#include "runtime/log.h"
#include "runtime/peft_adapter.h"
#include "runtime/training/training_work.h"
#include "service_wiring.h"

namespace myriad::node {

using namespace myriad::actors;

namespace {

std::string default_worker_id() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::snprintf(host, sizeof host, "worker");
  return std::string(host) + "/" + std::to_string(::getpid());
}

}  // namespace

// Fetches adapter versions from the gateway's registry (the handle of the
// latest join) into the disk cache, and loads them. Called on the host
// cache's fetch thread.
class AdapterFetcher {
 public:
  AdapterFetcher(caf::actor_system& system, std::unique_ptr<FetchedAdapters> disk, ModelConfig base, int32_t max_rank)
      : system_(system), disk_(std::move(disk)), base_(std::move(base)), max_rank_(max_rank) {}

  void set_registry(worker_registry_actor registry) {
    std::lock_guard lock(mu_);
    registry_ = std::move(registry);
  }

  Result<std::shared_ptr<const LoraWeights>> load(const AdapterId& id) {
    std::optional<std::string> folder = disk_->find(id);
    if (!folder) {
      worker_registry_actor registry;
      {
        std::lock_guard lock(mu_);
        registry = registry_;
      }
      if (!registry)
        return make_error(ErrorCode::kUnavailable, "adapter " + id.to_string() + ": no gateway to fetch it from");
      Result<AdapterFiles> files = make_error(ErrorCode::kUnavailable, "no answer");
      caf::scoped_actor self{system_};
      self->request(registry, std::chrono::seconds(120), fetch_atom::value, registry_call("", true, id.to_string()))
          .receive([&](const AdapterFilesWire& wire) { files = read_adapter_files(wire); },
                   [&](caf::error& err) {
                     files = make_error(ErrorCode::kUnavailable,
                                        "adapter " + id.to_string() + ": the fetch failed: " + system_.render(err));
                   });
      if (!files.ok()) return files.error();
      auto put = disk_->put(files.value());  // checks both hashes before anything is written
      if (!put.ok()) return put.error();
      folder = put.value();
      log_info("worker: fetched adapter {} ({} bytes) into {}", id.to_string(),
               files->config_json.size() + files->safetensors.size(), *folder);
    }
    PeftLoadOptions options;
    options.max_rank = max_rank_;
    options.name = id.to_string();
    auto w = load_peft_adapter(*folder, base_, options);
    if (!w.ok()) return make_error(w.error().code, "adapter " + id.to_string() + ": " + w.error().message);
    return w;
  }

 private:
  caf::actor_system& system_;
  std::unique_ptr<FetchedAdapters> disk_;
  ModelConfig base_;
  int32_t max_rank_;
  std::mutex mu_;
  worker_registry_actor registry_;
};

// The jobs a gateway sends this worker (its trainer actor): each a
// TrainingJob in a TrainingWork that the worker's step thread runs beside its
// inference; each step and each version (with the job's whole checkpoint,
// made on a thread of its own: the worker thread only copies it) go back to
// the sink the job came with.
class WorkerTraining {
 public:
  WorkerTraining(std::unique_ptr<LoraTrainingBackend> backend, const ModelConfig& base, int64_t publish_every,
                 std::string worker_id)
      : backend_(std::move(backend)),
        base_(base),
        worker_id_(std::move(worker_id)),
        work_(*backend_, std::max<int64_t>(1, publish_every),
              [this](const std::string& job, uint64_t version, std::shared_ptr<const LoraWeights>, double eval_loss) {
                on_version(job, version, eval_loss);
              },
              [this](const TrainingJob& job, const TrainingStepRecord& rec) { on_step(job, rec); }) {
    sender_ = std::thread([this] { send_loop(); });
  }
  ~WorkerTraining() { stop(); }

  // Drops every sink (before the actor system goes) and stops the sender;
  // steps and versions after it go nowhere. Idempotent.
  void stop() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      jobs_.clear();
      runs_.clear();
      outgoing_.clear();
    }
    cv_.notify_one();
    if (sender_.joinable()) sender_.join();
  }

  TrainingWork& work() { return work_; }

  // The trainer actor's thread.
  Status train(const TrainJobWire& wire, job_sink_actor sink) {
    auto spec = read_train_job(wire);
    if (!spec.ok()) return spec.error();
    auto job = TrainingJob::create(spec->job, base_, spec->config, std::move(spec->train), std::move(spec->eval));
    if (!job.ok()) return job.error();
    std::shared_ptr<TrainingJob> shared = std::move(job.value());
    if (!spec->checkpoint.empty()) MYRIAD_TRY(shared->load_checkpoint_bytes(spec->checkpoint));
    {
      std::lock_guard lock(mu_);
      if (stopping_) return make_error(ErrorCode::kUnavailable, "the worker is stopping");
      if (jobs_.count(spec->job)) work_.cancel(spec->job);  // sent again (its gateway came back): the newest wins
      jobs_[spec->job] = Held{shared, std::move(sink)};
    }
    log_info("worker: training job {} from step {}", spec->job, shared->steps_done());
    work_.add(std::move(shared), spec->publish_every);
    return ok_status();
  }
  void cancel(const std::string& job) {
    work_.cancel(job);
    std::lock_guard lock(mu_);
    if (jobs_.erase(job)) log_info("worker: job {} stopped here (the gateway cancelled it or moved it)", job);
  }
  // Every job of a sink that went down (its gateway is gone: the next one
  // sends them again), and its training runs (their clients went with it).
  void cancel_all_of(const caf::actor_addr& sink) {
    std::vector<std::string> gone;
    {
      std::lock_guard lock(mu_);
      for (const auto& [name, held] : jobs_)
        if (caf::actor_cast<caf::actor_addr>(held.sink) == sink) gone.push_back(name);
      for (auto it = runs_.begin(); it != runs_.end();)
        it = caf::actor_cast<caf::actor_addr>(it->second.sink) == sink ? runs_.erase(it) : std::next(it);
    }
    for (const std::string& name : gone) cancel(name);
  }

  // A training run's call (the trainer actor's thread). Each runs on the
  // worker's thread, in the order sent, and is answered from there to the
  // run's sink (looked up then: the closures hold no actor handle, so none
  // outlives stop()). True when it opened a run (the actor then monitors
  // the sink).
  bool run_call(const RunCallWire& wire, const run_sink_actor& sink) {
    auto msg = read_run_call(wire);
    if (!msg.ok()) {
      log_error("worker: a training run call was refused: {}", msg.error().to_string());
      return false;
    }
    RunAnswerMsg head;
    head.run = msg->run;
    head.call = msg->call;
    auto refuse = [&](const Error& e) {
      RunAnswerMsg m = head;
      m.error = e;
      caf::anon_send(sink, run_atom::value, run_answer_wire(m));
      return false;
    };
    if (msg->op == RunOp::kOpen) {
      auto run = open_run(msg.value());
      if (!run.ok()) return refuse(run.error());
      {
        std::lock_guard lock(mu_);
        if (stopping_) return refuse(make_error(ErrorCode::kUnavailable, "the worker is stopping"));
        runs_[msg->run] = HeldRun{run.value(), sink};
      }
      log_info("worker: training run {} of {} opened (step {})", msg->run, run.value()->adapter_name(), msg->steps);
      caf::anon_send(sink, run_atom::value, run_answer_wire(head));
      return true;
    }
    std::shared_ptr<LocalTrainingRun> run;
    {
      std::lock_guard lock(mu_);
      auto it = runs_.find(msg->run);
      if (it != runs_.end()) run = it->second.run;
      // Calls posted before keep the run until they ran; nobody waits for their answers.
      if (run && msg->op == RunOp::kClose) runs_.erase(it);
    }
    if (msg->op == RunOp::kClose) {
      if (run) log_info("worker: training run {} of {} closed", msg->run, run->adapter_name());
      return false;
    }
    if (!run)
      return refuse(make_error(ErrorCode::kUnavailable, "training run " + msg->run +
                                                            " is not open on this worker (it restarted, or the run "
                                                            "failed to open): open it again from a saved state"));
    switch (msg->op) {
      case RunOp::kForwardBackward:
        run->forward_backward(std::move(msg->batch), [this, head](Result<ForwardBackwardResult> r) mutable {
          if (!r.ok()) return answer_error(std::move(head), r.error());
          head.kind = RunAnswerMsg::Kind::kForwardBackward;
          head.loss = r->loss;
          head.tokens = r->tokens;
          head.target_tokens = r->target_tokens;
          answer(head);
        });
        break;
      case RunOp::kOptimStep:
        run->optim_step(msg->learning_rate, msg->max_grad_norm, [this, head](Result<OptimStepResult> r) mutable {
          if (!r.ok()) return answer_error(std::move(head), r.error());
          head.kind = RunAnswerMsg::Kind::kOptimStep;
          head.step = r->step;
          head.grad_norm = r->grad_norm;
          head.accumulated = r->accumulated;
          answer(head);
        });
        break;
      case RunOp::kSnapshot:
      case RunOp::kState: {
        const bool with_moments = msg->op == RunOp::kState;
        run->state([this, head, with_moments](Result<std::shared_ptr<const TrainingRunState>> r) mutable {
          if (!r.ok()) return answer_error(std::move(head), r.error());
          // A few MB of copies for a rank-16 adapter, between steps.
          auto bytes = safetensors_bytes(run_state_tensors(*r.value(), with_moments));
          if (!bytes.ok()) return answer_error(std::move(head), bytes.error());
          head.kind = RunAnswerMsg::Kind::kTensors;
          head.safetensors = std::move(bytes.value());
          head.steps = r.value()->steps;
          answer(head);
        });
        break;
      }
      default: break;
    }
    return false;
  }

 private:
  struct Held {
    std::shared_ptr<TrainingJob> job;
    job_sink_actor sink;
  };
  struct HeldRun {
    std::shared_ptr<LocalTrainingRun> run;
    run_sink_actor sink;
  };

  // To the sink of the answer's run, unless it was closed or the worker stops.
  void answer(const RunAnswerMsg& m) {
    run_sink_actor sink;
    {
      std::lock_guard lock(mu_);
      auto it = runs_.find(m.run);
      if (stopping_ || it == runs_.end()) return;
      sink = it->second.sink;
    }
    caf::anon_send(sink, run_atom::value, run_answer_wire(m));
  }
  void answer_error(RunAnswerMsg m, const Error& e) {
    m.error = e;
    answer(m);
  }

  Result<std::shared_ptr<LocalTrainingRun>> open_run(const RunCallMsg& msg) {
    auto options = run_options_from_json(msg.options_json);
    if (!options.ok()) return options.error();
    // The gateway checked them; a hostile or newer sender is refused here too.
    const LoraTargets& t = options->targets;
    if (t.rank < 1 || t.rank > 256 || !(t.alpha > 0) || t.first_layer < 0 || t.first_layer >= base_.num_layers ||
        std::none_of(std::begin(t.modules), std::end(t.modules), [](bool m) { return m; }))
      return make_error(ErrorCode::kInvalidArgument, "RunCall.open: the run's targets are out of range");
    auto run = std::make_shared<LocalTrainingRun>(options.value(), base_, work_, *backend_);
    if (msg.state.empty()) return run;
    auto state = run_state_from_bytes(msg.state, "training run " + msg.run + "'s saved state", base_, options.value(),
                                      true, msg.steps);
    if (!state.ok()) return state.error();
    run->restore(std::move(state.value()));
    return run;
  }
  struct Outgoing {
    std::string job;
    uint64_t version = 0;
    double eval_loss = 0;
    std::shared_ptr<const TrainingJob::Snapshot> snapshot;
    job_sink_actor sink;
    bool last = false;
  };

  // The worker's thread.
  void on_step(const TrainingJob& job, const TrainingStepRecord& rec) {
    std::lock_guard lock(mu_);
    auto it = jobs_.find(job.name());
    if (it != jobs_.end())
      caf::anon_send(it->second.sink, progress_atom::value, train_progress_wire(job.name(), worker_id_, rec));
  }
  void on_version(const std::string& name, uint64_t version, double eval_loss) {
    std::lock_guard lock(mu_);
    auto it = jobs_.find(name);
    if (it == jobs_.end()) return;
    // Between optimizer steps, on the thread that owns the job: a copy.
    outgoing_.push_back({name, version, eval_loss, std::make_shared<const TrainingJob::Snapshot>(it->second.job->snapshot()),
                         it->second.sink, it->second.job->done()});
    if (it->second.job->done()) jobs_.erase(it);
    cv_.notify_one();
  }
  void send_loop() {
    for (;;) {
      Outgoing o;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || !outgoing_.empty(); });
        if (stopping_) return;
        o = std::move(outgoing_.front());
        outgoing_.pop_front();
      }
      auto bytes = o.snapshot->to_bytes();
      if (!bytes.ok()) {
        log_error("worker: job {}: version {} could not be sent: {}", o.job, o.version, bytes.error().to_string());
        continue;
      }
      caf::anon_send(o.sink, version_atom::value,
                     train_version_wire(o.job, worker_id_, o.version, o.eval_loss, bytes.value()));
      if (o.last) log_info("worker: job {} finished", o.job);
    }
  }

  std::unique_ptr<LoraTrainingBackend> backend_;
  ModelConfig base_;
  std::string worker_id_;  // what its reports say they come from
  TrainingWork work_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Held> jobs_;
  std::map<std::string, HeldRun> runs_;  // by the gateway's run id
  std::deque<Outgoing> outgoing_;
  bool stopping_ = false;
  std::thread sender_;
};

namespace {

struct TrainerState {
  WorkerTraining* training = nullptr;
};

trainer_actor::behavior_type trainer_behavior(trainer_actor::stateful_pointer<TrainerState> self,
                                              WorkerTraining* training) {
  self->state.training = training;
  // The gateway that sent jobs is gone: they stop (its successor sends them again).
  self->set_down_handler([self](caf::down_msg& msg) { self->state.training->cancel_all_of(msg.source); });
  return {
      [self](train_atom, const TrainJobWire& wire, const job_sink_actor& sink) {
        self->monitor(sink);
        if (Status st = self->state.training->train(wire, sink); !st.ok())
          log_error("worker: a training job was refused: {}", st.error().to_string());
      },
      [self](cancel_atom, const std::string& job) { self->state.training->cancel(job); },
      [self](run_atom, const RunCallWire& wire, const run_sink_actor& sink) {
        if (self->state.training->run_call(wire, sink)) self->monitor(sink);
      },
  };
}

// The trainer this worker's device can run (none: it serves only).
std::unique_ptr<LoraTrainingBackend> training_backend(Executor& executor, std::shared_ptr<const Checkpoint> ck) {
  if (auto* cpu = dynamic_cast<gpu::cpu::CpuExecutor*>(&executor))
    return std::make_unique<gpu::cpu::CpuLoraTrainingBackend>(std::move(ck), cpu->pool());
#ifdef MYRIAD_HAVE_CUDA
  auto made = gpu::cuda::CudaLoraTrainingBackend::create(std::move(ck));
  if (made.ok()) return std::move(made.value());
  log_warn("worker: it will not train jobs: {}", made.error().to_string());
#endif
  return nullptr;
}

}  // namespace

struct ClusterWorker::Parts {
  ClusterWorkerOptions options;
  std::string fingerprint;
  std::string device;
  std::string private_dir;  // removed at exit (no --data)
  caf::actor_system_config config;
  std::unique_ptr<caf::actor_system> system;
  std::shared_ptr<AdapterFetcher> fetcher;
  std::unique_ptr<WorkerTraining> training;  // null: this worker does not train
  trainer_actor trainer;
  worker_actor worker;
  scheduler_actor scheduler;
  cluster_door_actor door;  // of the latest join
  std::atomic<bool> stop{false};
  std::thread rejoin;

  // hello, then join; an Error when the door refuses or does not answer.
  Status join(const cluster_door_actor& to) {
    caf::scoped_actor self{*system};
    const auto timeout = std::chrono::seconds(10);
    Result<std::string> nonce = make_error(ErrorCode::kUnavailable, "no answer");
    self->request(to, timeout, hello_atom::value)
        .receive([&](std::string& n) { nonce = std::move(n); },
                 [&](caf::error& e) { nonce = make_error(ErrorCode::kUnavailable, system->render(e)); });
    if (!nonce.ok()) return nonce.error();
    const std::string& id = setup_id;
    JoinWire join = JoinWire::from([&](schema::Join::Builder j) {
      j.setWorker(id);
      j.setBaseFingerprint(fingerprint);
      j.setDevice(device);
      j.setSlots(uint32_t(options.node.slots));
      j.setNonce(nonce.value());
      if (!options.cluster_secret.empty()) j.setProof(join_proof(options.cluster_secret, nonce.value(), id));
    });
    Status out = make_error(ErrorCode::kUnavailable, "no answer");
    self->request(to, timeout, join_atom::value, join, scheduler, trainer)
        .receive(
            [&](JoinAnswerWire& answer, load_sink_actor& sink, worker_registry_actor& registry) {
              auto d = answer.decode();
              if (!d) {
                out = d.error();
                return;
              }
              if (d->get().isError()) {
                out = read_error(d->get().getError());
                return;
              }
              caf::anon_send(scheduler, attach_atom::value, sink);
              caf::anon_send(worker, attach_atom::value, registry);
              fetcher->set_registry(registry);
              out = Status();
            },
            [&](caf::error& e) { out = make_error(ErrorCode::kUnavailable, system->render(e)); });
    return out;
  }

  // myriad-node blocks SIGTERM and SIGINT for its sigwait, which comes only
  // after the first join: a worker still waiting for its gateway stops here
  // (nothing runs on it yet, so there is nothing to drain).
  void stop_if_asked() {
    if (door) return;  // joined once: main's sigwait takes the signal, and leave() drains
    sigset_t pending;
    sigpending(&pending);
    if (!sigismember(&pending, SIGTERM) && !sigismember(&pending, SIGINT)) return;
    log_info("worker {}: stopped before it joined the gateway", setup_id);
    std::fflush(nullptr);
    std::_Exit(0);
  }

  // CAF 0.17's remote_actor has no timeout: a gateway whose cluster port
  // speaks TLS to a worker that does not (each waits for the other's first
  // bytes), or one that accepts and never answers, would block it forever.
  // Past options.handshake_timeout_ms the worker exits with why.
  caf::expected<cluster_door_actor> connect_door() {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    std::thread watchdog([&] {
      std::unique_lock<std::mutex> lock(mu);
      if (cv.wait_for(lock, std::chrono::microseconds(int64_t(options.handshake_timeout_ms * 1000)),
                      [&] { return done; }))
        return;
      log_error("worker {}: the gateway at {}:{} accepted the connection but did not finish the cluster handshake "
                "within {} ms: is TLS (--cluster-tls-*) configured on one side only?",
                setup_id, options.join_host, options.join_port, options.handshake_timeout_ms);
      std::fflush(nullptr);
      std::_Exit(1);
    });
    auto handle = options.node.cluster_tls.enabled()
                      ? caf::openssl::remote_actor<cluster_door_actor>(*system, options.join_host, options.join_port)
                      : system->middleman().remote_actor<cluster_door_actor>(options.join_host, options.join_port);
    {
      std::lock_guard<std::mutex> lock(mu);
      done = true;
    }
    cv.notify_one();
    watchdog.join();
    return handle;
  }

  // Connects and joins; a refusal (secret, fingerprint) is final, a gateway
  // that is not up is waited for (every rejoin_interval_ms) unless `stop`.
  // A dropped handshake is final on the first join (a TLS mismatch or the
  // wrong port); on a rejoin it is a gateway dying or starting again (its
  // dying listener still completes a connection, then resets it), so it is
  // waited through, up to kMaxDroppedHandshakes in a row.
  Status connect_and_join() {
    static constexpr int kMaxDroppedHandshakes = 10;
    bool said = false;
    int dropped_handshakes = 0;
    while (!stop) {
      auto door_handle = connect_door();
      if (door_handle) {
        Status joined = join(*door_handle);
        if (joined.ok()) {
          door = *door_handle;
          log_info("worker {}: joined the gateway at {}:{}", setup_id, options.join_host, options.join_port);
          return joined;
        }
        if (joined.error().code != ErrorCode::kUnavailable) return joined;
      } else if (door_handle.error() == caf::sec::disconnect_during_handshake && door &&
                 ++dropped_handshakes < kMaxDroppedHandshakes) {
        log_info("worker {}: the gateway at {}:{} closed the connection during the cluster handshake; it may be "
                 "restarting, trying again ({} of {})",
                 setup_id, options.join_host, options.join_port, dropped_handshakes, kMaxDroppedHandshakes);
      } else if (door_handle.error() == caf::sec::disconnect_during_handshake) {
        // Something listens there but drops CAF's handshake: not a gateway
        // that is still starting. Exits at once, as the watchdog does (CAF
        // 0.17 may hang shutting down a system with a failed TLS link).
        log_error("worker {}: the gateway at {}:{} closed the connection during the cluster handshake: is TLS "
                  "(--cluster-tls-*) configured on one side only, or is this not its --cluster port?",
                  setup_id, options.join_host, options.join_port);
        std::fflush(nullptr);
        std::_Exit(1);
      } else if (!said) {
        log_info("worker {}: waiting for the gateway at {}:{} ({}){}", setup_id, options.join_host, options.join_port,
                 system->render(door_handle.error()),
                 options.node.cluster_tls.enabled() ? "; if it is up, check that its cluster port speaks TLS too" : "");
        said = true;
      }
      for (int i = 0; i < int(options.rejoin_interval_ms / 50) && !stop; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        stop_if_asked();
      }
    }
    return make_error(ErrorCode::kCancelled, "stopped before it joined");
  }

  // The rejoin thread: waits for the gateway's connection to end, then joins again.
  void watch() {
    while (!stop) {
      {
        caf::scoped_actor self{*system};
        self->monitor(door);
        bool down = false;
        while (!down && !stop)
          self->receive([&](caf::down_msg&) { down = true; },
                        caf::after(std::chrono::milliseconds(200)) >> [] {});
        if (stop) return;
      }
      log_warn("worker {}: the gateway is gone; joining again", setup_id);
      fetcher->set_registry(worker_registry_actor{});
      caf::anon_send(scheduler, attach_atom::value, load_sink_actor{});  // what it must tell waits for the next
      Status joined = connect_and_join();
      if (!joined.ok() && !stop) {
        // A gateway that came back over another base model or secret: this worker cannot serve it.
        log_error("worker {}: the gateway refused it: {}", setup_id, joined.error().to_string());
        std::fflush(nullptr);
        std::_Exit(1);
      }
    }
  }

  std::string setup_id;

  ~Parts() {
    stop = true;
    if (rejoin.joinable()) rejoin.join();
    if (system) {
      for (const auto& h : {caf::actor_cast<caf::actor>(worker), caf::actor_cast<caf::actor>(scheduler),
                            caf::actor_cast<caf::actor>(trainer)})
        if (h) caf::anon_send_exit(h, caf::exit_reason::user_shutdown);
      worker = nullptr;
      scheduler = nullptr;
      trainer = nullptr;
      if (training) training->stop();
      door = nullptr;
      fetcher.reset();
      system.reset();
    }
    if (!private_dir.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(private_dir, ec);
    }
  }
};

Result<std::unique_ptr<ClusterWorker>> ClusterWorker::start(const ClusterWorkerOptions& o) {
  std::unique_ptr<ClusterWorker> w(new ClusterWorker());
  w->parts_ = std::make_unique<Parts>();
  Parts& p = *w->parts_;
  p.options = o;
  auto ck = Checkpoint::load(o.node.model_dir);
  if (!ck.ok()) return ck.error();
  auto tok = Tokenizer::load(o.node.model_dir);
  if (!tok.ok()) return tok.error();
  auto fingerprint = base_fingerprint_of(o.node.model_dir);
  if (!fingerprint.ok()) return fingerprint.error();
  p.fingerprint = fingerprint.value();
  const ModelConfig& cfg = ck.value()->config();

  std::string cache_dir = o.node.data_dir;
  if (cache_dir.empty()) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "myriad-worker-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) return make_error(ErrorCode::kIo, "cannot make a temporary folder for adapters");
    cache_dir = p.private_dir = tmpl;
  }
  auto disk = FetchedAdapters::open(cache_dir + "/adapters");
  if (!disk.ok()) return disk.error();

  const SchedulerConfig sc = worker_scheduler_config(o.node, cfg);
  auto executor = make_executor(o.node, ck.value(), sc);
  if (!executor.ok()) return executor.error();
  p.device = executor.value()->info().device;

  if (Status st = load_cluster_modules(p.config, o.node.cluster_tls); !st.ok()) return st.error();
  p.system = std::make_unique<caf::actor_system>(service_config(p.config));
  caf::actor_system& sys = *p.system;
  p.fetcher = std::make_shared<AdapterFetcher>(sys, std::move(disk.value()), cfg, o.node.max_adapter_rank);
  p.setup_id = w->id_ = o.worker_id.empty() ? default_worker_id() : o.worker_id;

  auto setup = std::make_shared<WorkerSetup>();
  setup->worker_id = w->id_;
  setup->config = sc;
  setup->executor = std::move(executor.value());
  setup->tokenizer = tok.value();
  setup->host_cache_bytes = o.node.host_cache_bytes;
  setup->load_adapter = [fetcher = p.fetcher](const AdapterId& id) { return fetcher->load(id); };
  // Fine-tuning jobs the gateway sends train here between inference steps.
  if (auto backend = training_backend(*setup->executor, ck.value())) {
    p.training = std::make_unique<WorkerTraining>(std::move(backend), cfg, o.node.fine_tuning_publish_every, w->id_);
    setup->background = &p.training->work();
    setup->background_share = o.node.training_share;
    p.trainer = sys.spawn(trainer_behavior, p.training.get());
  }
  auto worker = spawn_worker(sys, setup);
  if (!worker.ok()) return worker.error();
  p.worker = worker.value();
  // No load sink until the join completes: the gateway may submit before the
  // attach lands here, so final events wait in the scheduler (it buffers them).
  p.scheduler =
      sys.spawn(scheduler_behavior, p.worker, load_sink_actor{}, scheduler_options(o.node, sc, cfg, w->id_));
  caf::anon_send(p.worker, attach_atom::value, p.scheduler);

  Status joined = p.connect_and_join();
  if (!joined.ok()) return joined.error();
  p.rejoin = std::thread([&p] { p.watch(); });
  log_info("worker {}: device {}, {} adapter slots, {} KV blocks, adapters cached in {}", w->id_, p.device,
           o.node.slots, sc.num_kv_blocks, cache_dir);
  return w;
}

void ClusterWorker::leave() {
  Parts& p = *parts_;
  caf::scoped_actor self{*p.system};
  self->request(p.scheduler, caf::infinite, leave_atom::value)
      .receive([](bool) {}, [](caf::error&) {});
  p.stop = true;
}

ClusterWorker::~ClusterWorker() = default;

}  // namespace myriad::node
