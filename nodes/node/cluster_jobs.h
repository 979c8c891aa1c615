// Fine-tuning jobs on a cluster's workers: the gateway's JobRunner (its
// training runs: ClusterRuns, cluster_training_runs.h). The
// gateway keeps every job's bookkeeping (FineTuning: files, records, events,
// the store, checkpoints) and a mirror TrainingJob of each; a worker's
// trainer trains the job itself (TrainingWork beside its inference) and
// reports each step and each version with its whole checkpoint. A version's
// checkpoint is loaded into the mirror before FineTuning publishes it, so the
// mirror is always at the newest version: when the job's worker is lost (its
// process killed, its host gone: the trainer's link goes down) the job goes
// to another worker from there, and a restarted gateway resumes it from the
// checkpoint FineTuning kept.
//
//   add(job) ─ no trainer joined ─> waiting ─ a trainer joins ─┐
//            └──────────────────────────────────────────────────┴─> sent to the trainer with the fewest jobs
//   version (the last) ─> published, forgotten      trainer down or unheard ─> its jobs waiting again (from their last version)
//   cancel ─> the trainer stops it, forgotten
//
// Thread-safe: add and cancel come from FineTuning's threads, the reports
// and trainers from the job host actor's; FineTuning's callbacks are called
// from the latter, never under this object's lock.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "actors/service_actors.h"
#include "cluster_training_runs.h"
#include "fine_tuning.h"

namespace myriad::node {

class ClusterJobs final : public JobRunner {
 public:
  // Spawns the job host actor in `system` (it calls back into this object:
  // stop() before the system stops, and the system before this is destroyed).
  // Versions every `publish_every` optimizer steps (the gateway's --publish-every).
  ClusterJobs(caf::actor_system& system, int64_t publish_every, TrainingWork::Publish publish,
              TrainingWork::Progress progress);
  ~ClusterJobs() override;

  void add(std::shared_ptr<TrainingJob> job) override;
  void cancel(const std::string& name) override;
  // A run on a worker (ClusterRuns: cluster_training_runs.h).
  Result<std::shared_ptr<TrainingRun>> open_run(TrainingRunOptions options, const ModelConfig& base,
                                                std::optional<TrainingRunState> from) override;
  // Stops the job host and drops every actor handle (before the actor
  // system goes: FineTuning::stop, and the node's teardown on a failed start).
  void stop() override;
  // Where trainers join (the door) and report.
  actors::job_host_actor host() const { return host_; }

  // The job host actor's thread.
  void joined(const std::string& worker, actors::trainer_actor trainer);
  void lost(const caf::actor_addr& trainer);
  // The gateway stopped hearing `worker` (its heartbeat timeout) while its
  // link stayed up: its jobs move and its runs fail as if it were gone.
  void unheard(const std::string& worker);
  void progressed(const actors::TrainProgressWire& wire);
  void published(const actors::TrainVersionWire& wire);
  void run_answered(const actors::RunAnswerWire& wire) { runs_->answered(wire); }

 private:
  struct Job {
    std::shared_ptr<TrainingJob> mirror;
    std::string worker;  // "" while it waits for a trainer
  };
  struct Trainer {
    std::string worker;
    actors::trainer_actor handle;
  };
  // Under mu_: sends every waiting job to the trainer with the fewest.
  void dispatch();
  // Under mu_: forgets a trainer; its jobs wait for another.
  void lose(std::vector<Trainer>::iterator it, const char* why);
  bool reported_by_owner(const std::string& job, const std::string& worker, const char* what);

  int64_t publish_every_;
  TrainingWork::Publish publish_;
  TrainingWork::Progress progress_;
  actors::job_host_actor host_;
  std::shared_ptr<ClusterRuns> runs_;  // shared with the runs open (they may outlive this)
  std::mutex mu_;
  std::map<std::string, Job> jobs_;
  std::vector<Trainer> trainers_;
  bool stopped_ = false;
};

}  // namespace myriad::node
