// ClusterRuns and ClusterTrainingRun (cluster_training_runs.h).
#include "cluster_training_runs.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "node_files.h"
#include "runtime/log.h"

namespace myriad::node {

using actors::RunAnswerMsg;
using actors::RunCallMsg;
using actors::RunOp;

namespace {
Error worker_gone(const std::string& worker, const std::string& run) {
  return make_error(ErrorCode::kUnavailable,
                    "worker '" + worker + "', which held training run " + run +
                        ", is gone: open a new run from its last saved state (save_state)");
}
}  // namespace

std::string run_options_json(const TrainingRunOptions& options) {
  TrainingJobConfig c;
  c.targets = options.targets;
  c.adamw = options.adamw;
  c.seed = options.seed;
  return nlohmann::json{{"tenant", options.tenant},
                        {"adapter", options.adapter},
                        {"config", training_job_config_json(c)},
                        {"request", options.request}}
      .dump();
}

Result<TrainingRunOptions> run_options_from_json(const std::string& text) {
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("tenant") || !j["tenant"].is_string() || !j.contains("adapter") ||
      !j["adapter"].is_string() || !j.contains("config"))
    return make_error(ErrorCode::kInvalidArgument, "RunCall.open.optionsJson: malformed");
  auto c = training_job_config_from_json(j["config"]);
  if (!c.ok()) return c.error();
  TrainingRunOptions o;
  o.tenant = j["tenant"].get<std::string>();
  o.adapter = j["adapter"].get<std::string>();
  o.targets = c->targets;
  o.adamw = c->adamw;
  o.seed = c->seed;
  if (j.contains("request") && j["request"].is_object()) o.request = j["request"];
  return o;
}

// ---- ClusterRuns ----

void ClusterRuns::joined(const std::string& worker, actors::trainer_actor trainer) {
  std::lock_guard lock(mu_);
  if (stopped_) return;
  trainers_[worker] = std::move(trainer);
}

void ClusterRuns::lost(const std::string& worker) {
  std::vector<Pending> failed;
  {
    std::lock_guard lock(mu_);
    if (auto t = trainers_.find(worker); t != trainers_.end()) {
      // Queued for a worker that only hung: should it wake, it frees them.
      for (const std::string& run : open_runs_[worker]) {
        RunCallMsg close;
        close.run = run;
        close.op = RunOp::kClose;
        caf::anon_send(t->second, actors::run_atom::value, actors::run_call_wire(close), sink_);
      }
      trainers_.erase(t);
    }
    open_runs_.erase(worker);
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (it->second.worker != worker) {
        ++it;
        continue;
      }
      failed.push_back(std::move(it->second));
      it = pending_.erase(it);
    }
  }
  for (Pending& p : failed) p.done(worker_gone(p.worker, p.run));
}

void ClusterRuns::stop() {
  std::vector<Pending> failed;
  {
    std::lock_guard lock(mu_);
    stopped_ = true;
    trainers_.clear();
    sink_ = nullptr;
    for (auto& [_, p] : pending_) failed.push_back(std::move(p));
    pending_.clear();
  }
  for (Pending& p : failed) p.done(make_error(ErrorCode::kUnavailable, "the gateway is stopping"));
}

void ClusterRuns::answered(const actors::RunAnswerWire& wire) {
  auto answer = actors::read_run_answer(wire);
  if (!answer.ok()) return log_warn("training runs: an answer was refused: {}", answer.error().to_string());
  Pending p;
  {
    std::lock_guard lock(mu_);
    auto it = pending_.find(answer->call);
    if (it == pending_.end() || it->second.run != answer->run)
      return;  // failed meanwhile (its worker was lost)
    p = std::move(it->second);
    pending_.erase(it);
  }
  if (answer->error) return p.done(*answer->error);
  p.done(std::move(answer.value()));
}

void ClusterRuns::call(const std::string& worker, RunCallMsg msg,
                       std::function<void(Result<RunAnswerMsg>)> done) {
  bool stopped;
  {
    std::lock_guard lock(mu_);
    stopped = stopped_;
    auto it = trainers_.find(worker);
    if (!stopped && it != trainers_.end()) {
      msg.call = next_call_++;
      if (done) pending_[msg.call] = Pending{worker, msg.run, std::move(done)};  // a close has no answer
      caf::anon_send(it->second, actors::run_atom::value, actors::run_call_wire(msg), sink_);
      return;
    }
  }
  if (done)
    done(stopped ? make_error(ErrorCode::kUnavailable, "the gateway is stopping")
                 : worker_gone(worker, msg.run));
}

void ClusterRuns::closed(const std::string& worker, const std::string& run) {
  std::lock_guard lock(mu_);
  auto it = open_runs_.find(worker);
  if (it != open_runs_.end()) it->second.erase(run);
}

Result<std::shared_ptr<TrainingRun>> ClusterRuns::open(TrainingRunOptions options, const ModelConfig& base,
                                                       std::optional<TrainingRunState> from) {
  RunCallMsg msg;
  msg.run = "wrun-" + random_hex(24);
  msg.op = RunOp::kOpen;
  msg.options_json = run_options_json(options);
  if (from) {
    auto bytes = safetensors_bytes(run_state_tensors(*from, true));
    if (!bytes.ok()) return bytes.error();
    msg.state = std::move(bytes.value());
    msg.steps = from->steps;
  }
  std::string worker;
  {
    std::lock_guard lock(mu_);
    if (stopped_) return make_error(ErrorCode::kUnavailable, "the gateway is stopping");
    for (const auto& [name, _] : trainers_)
      if (worker.empty() || open_runs_[name].size() < open_runs_[worker].size()) worker = name;
    if (worker.empty())
      return make_error(ErrorCode::kUnavailable, "no worker that trains has joined this gateway yet");
    open_runs_[worker].insert(msg.run);
  }
  auto run =
      std::make_shared<ClusterTrainingRun>(std::move(options), base, msg.run, worker, shared_from_this());
  // Its later calls queue behind the open on the trainer; a failed open
  // (the worker stopping) makes each of them answer why.
  const std::string name = run->adapter_name(), id = msg.run;
  call(worker, std::move(msg), [name, id, worker](Result<RunAnswerMsg> r) {
    if (!r.ok())
      log_warn("training run {} ({}) did not open on worker '{}': {}", name, id, worker,
               r.error().to_string());
  });
  log_info("training run {} ({}) opened on worker '{}'", name, id, worker);
  return std::shared_ptr<TrainingRun>(std::move(run));
}

// ---- ClusterTrainingRun ----

ClusterTrainingRun::ClusterTrainingRun(TrainingRunOptions options, const ModelConfig& base, std::string id,
                                       std::string worker, std::shared_ptr<ClusterRuns> runs)
    : TrainingRun(std::move(options)),
      base_(base),
      id_(std::move(id)),
      worker_(std::move(worker)),
      runs_(std::move(runs)) {}

ClusterTrainingRun::~ClusterTrainingRun() {
  RunCallMsg msg;
  msg.run = id_;
  msg.op = RunOp::kClose;
  runs_->call(worker_, std::move(msg), nullptr);
  runs_->closed(worker_, id_);
}

void ClusterTrainingRun::forward_backward(std::vector<TrainingExample> batch,
                                          std::function<void(Result<ForwardBackwardResult>)> done) {
  if (batch.empty()) return done(make_error(ErrorCode::kInvalidArgument, "the batch has no examples"));
  RunCallMsg msg;
  msg.run = id_;
  msg.op = RunOp::kForwardBackward;
  msg.batch = std::move(batch);
  runs_->call(worker_, std::move(msg), [done = std::move(done)](Result<RunAnswerMsg> r) {
    if (!r.ok()) return done(r.error());
    if (r->kind != RunAnswerMsg::Kind::kForwardBackward)
      return done(make_error(ErrorCode::kInternal, "forward_backward: the worker answered another call"));
    done(ForwardBackwardResult{r->loss, r->tokens, r->target_tokens});
  });
}

void ClusterTrainingRun::optim_step(double learning_rate, double max_grad_norm,
                                    std::function<void(Result<OptimStepResult>)> done) {
  if (!(learning_rate > 0) || !std::isfinite(learning_rate))
    return done(make_error(ErrorCode::kInvalidArgument, "learning_rate must be a positive number"));
  RunCallMsg msg;
  msg.run = id_;
  msg.op = RunOp::kOptimStep;
  msg.learning_rate = learning_rate;
  msg.max_grad_norm = max_grad_norm;
  runs_->call(worker_, std::move(msg), [done = std::move(done)](Result<RunAnswerMsg> r) {
    if (!r.ok()) return done(r.error());
    if (r->kind != RunAnswerMsg::Kind::kOptimStep)
      return done(make_error(ErrorCode::kInternal, "optim_step: the worker answered another call"));
    done(OptimStepResult{r->step, r->grad_norm, r->accumulated});
  });
}

void ClusterTrainingRun::fetch_state(RunOp op, std::function<void(Result<TrainingRunState>)> done) {
  RunCallMsg msg;
  msg.run = id_;
  msg.op = op;
  const bool with_moments = op == RunOp::kState;  // a snapshot carries the adapter alone
  auto self = std::static_pointer_cast<ClusterTrainingRun>(shared_from_this());
  runs_->call(worker_, std::move(msg), [self, with_moments, done = std::move(done)](Result<RunAnswerMsg> r) {
    if (!r.ok()) return done(r.error());
    if (r->kind != RunAnswerMsg::Kind::kTensors)
      return done(make_error(ErrorCode::kInternal, "the worker answered another call"));
    done(run_state_from_bytes(r->safetensors, "training run " + self->id_ + "'s tensors", self->base_,
                              self->options_, with_moments, r->steps));
  });
}

void ClusterTrainingRun::snapshot(std::function<void(Result<RunSnapshot>)> done) {
  fetch_state(RunOp::kSnapshot, [adapter = options_.adapter, done = std::move(done)](Result<TrainingRunState> s) {
    if (!s.ok()) return done(s.error());
    done(RunSnapshot{std::make_shared<const LoraWeights>(to_lora_weights(s->params, adapter)), s->steps});
  });
}

void ClusterTrainingRun::state(std::function<void(Result<std::shared_ptr<const TrainingRunState>>)> done) {
  fetch_state(RunOp::kState, [done = std::move(done)](Result<TrainingRunState> s) {
    if (!s.ok()) return done(s.error());
    done(std::make_shared<const TrainingRunState>(std::move(s.value())));
  });
}

nlohmann::json ClusterTrainingRun::describe() const {
  nlohmann::json j = TrainingRun::describe();
  j["worker"] = worker_;
  return j;
}

}  // namespace myriad::node
