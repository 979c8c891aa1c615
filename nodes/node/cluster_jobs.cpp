// ClusterJobs (cluster_jobs.h) and its job host actor.
#include "cluster_jobs.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "actors/training_wire.h"
#include "runtime/log.h"

namespace myriad::node {

using namespace myriad::actors;

namespace {

struct HostState {
  ClusterJobs* jobs = nullptr;
};

job_host_actor::behavior_type job_host_behavior(job_host_actor::stateful_pointer<HostState> self, ClusterJobs* jobs) {
  self->state.jobs = jobs;
  // A trainer's link went down (its worker died or left): its jobs move.
  self->set_down_handler([self](caf::down_msg& msg) { self->state.jobs->lost(msg.source); });
  return {
      [self](progress_atom, const TrainProgressWire& wire) { self->state.jobs->progressed(wire); },
      [self](version_atom, const TrainVersionWire& wire) { self->state.jobs->published(wire); },
      [self](add_worker_atom, const std::string& worker, const trainer_actor& trainer) {
        self->monitor(trainer);
        self->state.jobs->joined(worker, trainer);
      },
      [self](run_atom, const RunAnswerWire& wire) { self->state.jobs->run_answered(wire); },
      [self](leave_atom, const std::string& worker) { self->state.jobs->unheard(worker); },
  };
}

}  // namespace

ClusterJobs::ClusterJobs(caf::actor_system& system, int64_t publish_every, TrainingWork::Publish publish,
                         TrainingWork::Progress progress)
    : publish_every_(std::max<int64_t>(1, publish_every)), publish_(std::move(publish)), progress_(std::move(progress)) {
  host_ = system.spawn(job_host_behavior, this);
  runs_ = std::make_shared<ClusterRuns>(caf::actor_cast<run_sink_actor>(host_));
}

ClusterJobs::~ClusterJobs() = default;

void ClusterJobs::stop() {
  runs_->stop();
  std::lock_guard lock(mu_);
  stopped_ = true;
  trainers_.clear();
  if (host_) caf::anon_send_exit(host_, caf::exit_reason::user_shutdown);
  host_ = nullptr;
}

void ClusterJobs::add(std::shared_ptr<TrainingJob> job) {
  std::lock_guard lock(mu_);
  const std::string name = job->name();
  jobs_[name] = Job{std::move(job), ""};
  dispatch();
}

void ClusterJobs::cancel(const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = jobs_.find(name);
  if (it == jobs_.end()) return;
  for (const Trainer& t : trainers_)
    if (t.worker == it->second.worker) caf::anon_send(t.handle, cancel_atom::value, name);
  jobs_.erase(it);
}

Result<std::shared_ptr<TrainingRun>> ClusterJobs::open_run(TrainingRunOptions options, const ModelConfig& base,
                                                           std::optional<TrainingRunState> from) {
  return runs_->open(std::move(options), base, std::move(from));
}

void ClusterJobs::joined(const std::string& worker, trainer_actor trainer) {
  std::lock_guard lock(mu_);
  if (stopped_) return;
  // A worker joining again (its gateway came back, or a new process under
  // its id) replaces what was known of it.
  // Its runs were the old process's: their calls in flight fail.
  auto old = std::remove_if(trainers_.begin(), trainers_.end(), [&](const Trainer& t) { return t.worker == worker; });
  if (old != trainers_.end()) runs_->lost(worker);
  trainers_.erase(old, trainers_.end());
  runs_->joined(worker, trainer);
  trainers_.push_back({worker, std::move(trainer)});
  log_info("fine-tuning: worker '{}' trains jobs ({} trainer(s))", worker, trainers_.size());
  dispatch();
}

void ClusterJobs::lost(const caf::actor_addr& trainer) {
  std::lock_guard lock(mu_);
  auto it = std::find_if(trainers_.begin(), trainers_.end(),
                         [&](const Trainer& t) { return caf::actor_cast<caf::actor_addr>(t.handle) == trainer; });
  if (it != trainers_.end()) lose(it, "its link went down");
}

void ClusterJobs::unheard(const std::string& worker) {
  std::lock_guard lock(mu_);
  auto it = std::find_if(trainers_.begin(), trainers_.end(), [&](const Trainer& t) { return t.worker == worker; });
  if (it == trainers_.end()) return;
  // Its link is up but it stopped answering (a hung host): should it wake,
  // the cancels queued here stop what it trained, and its late reports are
  // ignored (they name a worker that no longer has the job).
  for (const auto& [name, job] : jobs_)
    if (job.worker == worker) caf::anon_send(it->handle, cancel_atom::value, name);
  lose(it, "its heartbeats stopped");
}

void ClusterJobs::lose(std::vector<Trainer>::iterator it, const char* why) {
  const std::string worker = it->worker;
  trainers_.erase(it);
  runs_->lost(worker);  // fails its runs' calls in flight: callbacks, but none into this object
  for (auto& [name, job] : jobs_)
    if (job.worker == worker) {
      log_warn("fine-tuning: job {} lost its worker '{}' ({}); it goes on elsewhere from step {}", name, worker, why,
               job.mirror->steps_done());
      job.worker.clear();
    }
  dispatch();
}

// Under mu_: whether `worker` trains `job` now; a late report of a worker
// that lost it (its heartbeats stopped, then it woke) is dropped.
bool ClusterJobs::reported_by_owner(const std::string& job, const std::string& worker, const char* what) {
  auto it = jobs_.find(job);
  if (it == jobs_.end()) return false;  // cancelled or finished meanwhile
  if (it->second.worker == worker) return true;
  log_warn("fine-tuning: job {}: a {} from worker '{}', which no longer trains it, was ignored", job, what, worker);
  return false;
}

void ClusterJobs::dispatch() {
  if (stopped_ || trainers_.empty() || !host_) return;
  for (auto& [name, job] : jobs_) {
    if (!job.worker.empty()) continue;
    auto fewest = std::min_element(trainers_.begin(), trainers_.end(), [&](const Trainer& a, const Trainer& b) {
      auto count = [&](const Trainer& t) {
        return std::count_if(jobs_.begin(), jobs_.end(), [&](const auto& j) { return j.second.worker == t.worker; });
      };
      return count(a) < count(b);
    });
    // From the mirror's newest version (its checkpoint), or from the start.
    std::string checkpoint;
    if (job.mirror->steps_done() > 0) {
      auto bytes = job.mirror->snapshot().to_bytes();
      if (!bytes.ok()) {
        log_error("fine-tuning: job {}: its checkpoint could not be made: {}", name, bytes.error().to_string());
        continue;
      }
      checkpoint = std::move(bytes.value());
    }
    caf::anon_send(fewest->handle, train_atom::value, train_job_wire(*job.mirror, checkpoint, publish_every_),
                   caf::actor_cast<job_sink_actor>(host_));
    job.worker = fewest->worker;
    log_info("fine-tuning: job {} sent to worker '{}' (from step {})", name, job.worker, job.mirror->steps_done());
  }
}

void ClusterJobs::progressed(const TrainProgressWire& wire) {
  auto rec = read_train_progress(wire);
  if (!rec.ok()) return log_warn("fine-tuning: a progress report was refused: {}", rec.error().to_string());
  std::shared_ptr<TrainingJob> mirror;
  {
    std::lock_guard lock(mu_);
    if (!reported_by_owner(rec->job, rec->worker, "progress report")) return;
    mirror = jobs_.at(rec->job).mirror;
  }
  if (progress_) progress_(*mirror, rec->record);
}

void ClusterJobs::published(const TrainVersionWire& wire) {
  auto v = read_train_version(wire);
  if (!v.ok()) return log_warn("fine-tuning: a version was refused: {}", v.error().to_string());
  std::shared_ptr<TrainingJob> mirror;
  {
    std::lock_guard lock(mu_);
    if (!reported_by_owner(v->job, v->worker, "version")) return;
    mirror = jobs_.at(v->job).mirror;
  }
  // The mirror takes the version's state (its fingerprint must match: the
  // same config, base and data), then FineTuning publishes it from there.
  if (Status st = mirror->load_checkpoint_bytes(v->checkpoint); !st.ok())
    return log_error("fine-tuning: job {}: a version's checkpoint was refused: {}", v->job, st.error().to_string());
  if (publish_)
    publish_(v->job, v->version, std::make_shared<const LoraWeights>(to_lora_weights(mirror->params(), v->job)),
             v->eval_loss);
  if (mirror->done()) {
    std::lock_guard lock(mu_);
    jobs_.erase(v->job);
  }
}

}  // namespace myriad::node
