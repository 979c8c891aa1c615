// Fine-tuning jobs on a node, in the shape of OpenAI's fine-tuning API
// (docs/fine-tuning.md): training files uploaded by a tenant, and jobs that
// train a LoRA adapter on one of them beside the node's inference traffic.
//
// A job is a TrainingJob in the local worker's TrainingWork (the worker's
// step thread runs its units between inference steps, at most `share` of the
// busy time while requests run). Every `publish_every` steps, and when it
// ends, the job's adapter is published as the next version of its adapter
// (tenant/name@N, through the registry, so the store holds it in PEFT
// format) and that version is served from the trainer's memory: the next
// request to tenant/name@latest runs on it with no file read. A published
// version also saves the job's checkpoint (adapter, AdamW state, data
// position, loss history), so a node restarted after a crash or kill -9
// resumes every unfinished job where its last version left it.
//
//   queued ──(a worker's job place free)──> running ──(last step published)──> succeeded
//     │                                        │──(a round fails)────────────> failed
//     └────────────(cancel)────────────────────┴─────────────────────────────> cancelled
//
// On disk, under <data>/fine_tuning/: files/<file-id>.jsonl and .json (the
// upload and its record), jobs/<job-id>/job.json (the job's record, rewritten
// atomically at each change of state and each version) and
// jobs/<job-id>/checkpoint.safetensors.
//
// Tenancy as for adapters: a caller sees and uses only its tenant's files
// and jobs (an admin sees all); another tenant's is kNotFound like a missing one.
// Thread-safe: every public method may be called from any thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/adapter_id.h"
#include "runtime/adapter_store.h"
#include "runtime/checkpoint.h"
#include "runtime/lora_weights.h"
#include "runtime/result.h"
#include "runtime/tokenizer.h"
#include "runtime/training/lora_training_backend.h"
#include "runtime/training/training_job.h"
#include "runtime/training/training_work.h"
#include "tenants.h"
#include "training_run.h"

namespace myriad::node {

struct FineTuningOptions {
  std::string data_dir;        // the node's --data
  std::string base_model;      // the served base's name: what a job's "model" must be
  int64_t publish_every = 10;  // optimizer steps between published versions
  int32_t max_running = 4;     // jobs training at once; more wait queued
  size_t max_file_bytes = size_t(64) << 20;
};

// A training file as /v1/files shows it.
struct TrainingFileRecord {
  std::string id;  // "file-..."
  std::string tenant;
  std::string filename;
  std::string purpose;  // "fine-tune"
  int64_t bytes = 0;
  int64_t created_at = 0;  // unix seconds
  int64_t examples = 0;    // lines that parsed as training examples
};

// A file as OpenAI's API shows it ("object": "file", status "processed").
nlohmann::json fine_tuning_file_json(const TrainingFileRecord& f);

// Where a node's jobs train. FineTuning hands each job's TrainingJob to its
// runner and hears back through its publish and progress callbacks, called
// by whichever thread owns the job: the local worker's TrainingWork
// (LocalJobs), or a cluster's workers (cluster_jobs.h), which train a copy
// and report each step and version of it.
class JobRunner {
 public:
  virtual ~JobRunner() = default;
  virtual void add(std::shared_ptr<TrainingJob> job) = 0;
  virtual void cancel(const std::string& name) = 0;
  // A training run of `options` on `base`, going on from `from` (a saved
  // state of that shape) or fresh.
  virtual Result<std::shared_ptr<TrainingRun>> open_run(TrainingRunOptions options, const ModelConfig& base,
                                                        std::optional<TrainingRunState> from) = 0;
  // Lets go of what it holds of other threads and processes (before the
  // actor system stops); idempotent. Jobs added after it wait forever.
  virtual void stop() {}
};

class LocalJobs final : public JobRunner {
 public:
  LocalJobs(TrainingWork& work, LoraTrainingBackend& backend) : work_(work), backend_(backend) {}
  void add(std::shared_ptr<TrainingJob> job) override { work_.add(std::move(job)); }
  void cancel(const std::string& name) override { work_.cancel(name); }
  Result<std::shared_ptr<TrainingRun>> open_run(TrainingRunOptions options, const ModelConfig& base,
                                                std::optional<TrainingRunState> from) override {
    auto run = std::make_shared<LocalTrainingRun>(std::move(options), base, work_, backend_);
    if (from) run->restore(std::move(*from));
    return std::shared_ptr<TrainingRun>(std::move(run));
  }

 private:
  TrainingWork& work_;
  LoraTrainingBackend& backend_;
};

class FineTuning {
 public:
  // Publishes a version of `name` for `caller` from a PEFT folder on this host.
  using PublishFolder = std::function<Result<AdapterRecord>(const Caller& caller, std::string_view name,
                                                            const std::string& dir)>;

  // Reads what <data>/fine_tuning holds; jobs that were queued or running
  // are resumed once the worker runs (start()). The backend trains on the
  // worker's thread only. Without a backend (a cluster's gateway) jobs train
  // where set_runner() says, and training runs are refused.
  static Result<std::unique_ptr<FineTuning>> open(const FineTuningOptions& options,
                                                  std::shared_ptr<const Checkpoint> base,
                                                  std::shared_ptr<const Tokenizer> tokenizer,
                                                  std::unique_ptr<LoraTrainingBackend> backend);
  ~FineTuning();  // stop()

  // What the worker's step loop runs between inference steps (a node with a backend).
  TrainingWork& work() {
    MYRIAD_CHECK(work_, "work(): this node trains elsewhere");
    return *work_;
  }
  // A node without a backend: where its jobs train; before start().
  void set_runner(std::unique_ptr<JobRunner> runner);
  // What a runner reports through (on the thread that owns the job).
  TrainingWork::Publish publish_callback();
  TrainingWork::Progress progress_callback();
  // Starts publishing through `publish` and resumes the stored unfinished jobs.
  void start(PublishFolder publish);
  // Stops the publisher thread (versions not yet published are dropped; the
  // jobs resume from their last checkpoint on the next start) and a remote
  // runner (set_runner). Idempotent.
  void stop();

  // A version published by a job, from memory (null when not one of them).
  std::shared_ptr<const LoraWeights> fresh_version(const AdapterId& id) const;

  // Files. `purpose` must be "fine-tune"; the bytes must parse as a
  // training JSONL for the served base (kInvalidArgument naming the line).
  Result<TrainingFileRecord> add_file(const Caller& caller, std::string filename, std::string purpose,
                                      std::string_view bytes);
  Result<std::vector<TrainingFileRecord>> list_files(const Caller& caller) const;
  Result<TrainingFileRecord> get_file(const Caller& caller, const std::string& id) const;
  Result<std::string> file_content(const Caller& caller, const std::string& id) const;
  // kInvalidArgument while a queued or running job trains on it.
  Status delete_file(const Caller& caller, const std::string& id);

  // Jobs, answered as OpenAI's fine_tuning.job objects (with Myriad's fields
  // under "myriad"). `request` is POST /v1/fine_tuning/jobs's body.
  Result<nlohmann::json> create_job(const Caller& caller, const nlohmann::json& request);
  // Newest first; `after` (a job id) starts after that job; at most `limit`.
  Result<nlohmann::json> list_jobs(const Caller& caller, const std::string& after, int64_t limit) const;
  Result<nlohmann::json> get_job(const Caller& caller, const std::string& id) const;
  // A job already ended is answered as it is.
  Result<nlohmann::json> cancel_job(const Caller& caller, const std::string& id);
  // Newest first, as OpenAI lists them; `after` is an event id.
  Result<nlohmann::json> job_events(const Caller& caller, const std::string& id, const std::string& after,
                                    int64_t limit) const;
  Result<nlohmann::json> job_checkpoints(const Caller& caller, const std::string& id) const;
  // The loss curve: "csv" (one row per step) or "svg" (a chart).
  Result<std::string> loss_curve(const Caller& caller, const std::string& id, const std::string& format) const;

  // For /metrics: jobs by status, and what they trained since the node started.
  struct Counts {
    std::map<std::string, int64_t> jobs;  // status -> jobs (every status, 0 included)
    int64_t trained_tokens = 0;           // tokens of the rows of every step run
    int64_t steps = 0;                    // optimizer steps run
    int64_t versions = 0;                 // versions published
  };
  Counts counts() const;

  // Training runs a client drives (training_run.h; the RPC API's
  // FineTuning.trainingRun). `request`: {"name" (the adapter its versions
  // are published as), "rank"?, "alpha"?, "targets"?, "seed"?,
  // "weight_decay"?, "beta1"?, "beta2"?, "eps"?}; errors name the field.
  // With "from_checkpoint": "ckpt-..." (and a name, nothing else) the run
  // starts from a saved state (save_run_state) of the caller's tenant: its
  // shape, optimizer settings, adapter, AdamW moments and step count.
  Result<std::shared_ptr<TrainingRun>> open_run(const Caller& caller, const nlohmann::json& request);
  // Writes a run's state (TrainingRun::state) as a checkpoint of its tenant,
  // <data>/fine_tuning/run_checkpoints/<id>.safetensors (atomically), which
  // survives the node; answers {"object": "training_run.checkpoint", "id",
  // "step", "adapter", "created_at"}. On the caller's thread: it writes files.
  Result<nlohmann::json> save_run_state(const TrainingRun& run, const TrainingRunState& state);
  // The caller's saved run states, newest first: {"object": "list", "data":
  // [{"object": "training_run.checkpoint", "id", "step", "adapter",
  // "created_at"}, ...]} (an admin sees every tenant's).
  nlohmann::json list_run_checkpoints(const Caller& caller) const;
  // Deletes one: {"id", "object": "training_run.checkpoint", "deleted": true};
  // another tenant's is kNotFound like a missing one.
  Result<nlohmann::json> delete_run_checkpoint(const Caller& caller, const std::string& id);
  // A batch given as JSON lines in the training file formats; errors name "example N".
  Result<std::vector<TrainingExample>> parse_examples(const std::vector<std::string>& lines) const;
  // Publishes a run's snapshot as the next version of its adapter (written
  // to the store in PEFT format) and serves that version from memory. On
  // the caller's thread: it writes files.
  Result<AdapterRecord> publish_run(TrainingRun& run, std::shared_ptr<const LoraWeights> weights, int64_t step);

 private:
  struct Event {
    int64_t seq = 0;
    int64_t created_at = 0;
    std::string level;  // info | warn | error
    std::string type;   // message | metrics
    std::string message;
    nlohmann::json data;
  };
  struct Version {
    AdapterId id;
    int64_t step = 0;
    double train_loss = 0;
    int64_t created_at = 0;
    double valid_loss = std::numeric_limits<double>::quiet_NaN();  // on the validation file; NaN without one
  };
  struct Job {
    std::string id, tenant, training_file, validation_file, adapter_name, suffix;
    std::string status;  // queued | running | succeeded | failed | cancelled
    nlohmann::json error;  // null, or {code, message, param}
    nlohmann::json request;  // the create request, as given (to rebuild the job after a restart)
    TrainingJobConfig config;
    int64_t created_at = 0, started_at = 0, finished_at = 0;
    int64_t trained_tokens = 0, steps = 0, total_steps = 0, examples = 0;
    double last_loss = 0;
    // This run (since the node admitted it, or resumed it): for tokens/s and the ETA.
    double run_started = 0;  // steady seconds
    int64_t run_tokens = 0, run_steps = 0;
    std::vector<Event> events;
    std::vector<Version> versions;
    std::vector<TrainingStepRecord> curve;
    std::shared_ptr<TrainingJob> trainer;  // while queued or running
    std::shared_ptr<const LoraWeights> newest;  // the newest version's weights (served from memory)
  };
  struct Pending {  // a version waiting for the publisher thread
    std::string job;
    std::shared_ptr<const LoraWeights> weights;
    int64_t step = 0;     // the optimizer step it is of
    double train_loss = 0;
    double valid_loss = std::numeric_limits<double>::quiet_NaN();
    bool final = false;   // the job's last step: publishing it ends the job
    // Its checkpoint, copied on the worker thread and written by the
    // publisher before the version is announced.
    std::shared_ptr<const TrainingJob::Snapshot> checkpoint;
  };

  FineTuning() = default;
  // Worker thread.
  void on_progress(const TrainingJob& job, const TrainingStepRecord& rec);
  void on_publish(const std::string& job, uint64_t version, std::shared_ptr<const LoraWeights> weights, double eval_loss);
  void publisher_loop();
  void publish_one(const Pending& p);
  // Under mu_.
  Result<std::shared_ptr<TrainingJob>> build_trainer(const Job& job) const;
  void admit_queued();  // starts queued jobs while there is room
  void add_event(Job& job, std::string level, std::string type, std::string message,
                 nlohmann::json data = nullptr);
  void finish(Job& job, const std::string& status);
  Status save_job(const Job& job) const;
  nlohmann::json job_json(const Job& job) const;
  // How the served base reads a training file: its context, its EOS.
  DatasetOptions dataset_options() const;
  Result<std::vector<TrainingExample>> examples_of(const std::string& file_id) const;
  std::string job_dir(const std::string& id) const;
  std::string files_dir() const;
  Result<Job*> job_of(const Caller& caller, const std::string& id);
  Result<const Job*> job_of(const Caller& caller, const std::string& id) const;

  FineTuningOptions options_;
  std::shared_ptr<const Checkpoint> base_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::unique_ptr<LoraTrainingBackend> backend_;
  std::unique_ptr<TrainingWork> work_;  // with a backend
  std::unique_ptr<LocalJobs> local_;    // over work_
  std::unique_ptr<JobRunner> remote_;   // without one (set_runner)
  JobRunner* runner_ = nullptr;         // local_ or remote_
  PublishFolder publish_;

  mutable std::mutex mu_;
  std::unordered_map<std::string, TrainingFileRecord> files_;
  std::unordered_map<std::string, std::unique_ptr<Job>> jobs_;
  std::vector<std::string> job_order_;  // creation order
  int32_t running_ = 0;
  int64_t trained_tokens_ = 0, steps_run_ = 0, versions_published_ = 0;  // since start
  // The newest version of each training run's adapter (tenant/name), served from memory.
  std::unordered_map<std::string, std::pair<AdapterId, std::shared_ptr<const LoraWeights>>> run_versions_;
  std::deque<Pending> pending_;
  std::condition_variable pending_cv_;
  bool stopping_ = false;
  std::thread publisher_;
};

}  // namespace myriad::node
