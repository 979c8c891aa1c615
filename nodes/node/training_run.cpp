#include "training_run.h"

#include <cmath>
#include <utility>

#include "runtime/checkpoint.h"

namespace myriad::node {

std::vector<TensorToWrite> run_state_tensors(const TrainingRunState& state, bool with_moments) {
  std::vector<TensorToWrite> tensors;
  add_lora_tensors(tensors, state.params, "params.");
  if (with_moments) {
    add_lora_tensors(tensors, state.m, "adam_m.");
    add_lora_tensors(tensors, state.v, "adam_v.");
  }
  return tensors;
}

Result<TrainingRunState> read_run_state(const SafetensorsFile& file, const ModelConfig& base,
                                        const TrainingRunOptions& options, bool with_moments, int64_t steps) {
  TrainingRunState state;
  state.params = init_lora_params(base, options.targets, options.seed);  // the shape to read into
  state.m = state.params.zeros_like();
  state.v = state.params.zeros_like();
  MYRIAD_TRY(read_lora_tensors(file, state.params, "params."));
  if (with_moments) {
    MYRIAD_TRY(read_lora_tensors(file, state.m, "adam_m."));
    MYRIAD_TRY(read_lora_tensors(file, state.v, "adam_v."));
  }
  state.steps = steps;
  return state;
}

Result<TrainingRunState> run_state_from_bytes(std::string_view bytes, const std::string& what, const ModelConfig& base,
                                              const TrainingRunOptions& options, bool with_moments, int64_t steps) {
  auto file = SafetensorsFile::from_bytes(bytes, what);
  if (!file.ok()) return file.error();
  return read_run_state(*file.value(), base, options, with_moments, steps);
}

LocalTrainingRun::LocalTrainingRun(TrainingRunOptions options, const ModelConfig& base, TrainingWork& work,
                                   LoraTrainingBackend& backend)
    : TrainingRun(std::move(options)), work_(work), backend_(backend) {
  params_ = init_lora_params(base, options_.targets, options_.seed);
  grads_ = params_.zeros_like();
  adamw_ = AdamW(params_, options_.adamw);
}

void LocalTrainingRun::forward_backward(std::vector<TrainingExample> batch,
                                   std::function<void(Result<ForwardBackwardResult>)> done) {
  if (batch.empty()) {
    done(make_error(ErrorCode::kInvalidArgument, "the batch has no examples"));
    return;
  }
  // One pass in the backend's units, a turn each between inference steps
  // (TrainingWork::post_units), like a job's round: a large batch no longer
  // holds the worker for a whole pass.
  struct Pass {
    std::vector<TrainingExample> batch;
    std::vector<TrainingRow> rows;
    TrainingJobTensors<float> tensors;
    int64_t tokens = 0, targets = 0;
    bool begun = false;
  };
  auto pass = std::make_shared<Pass>();
  pass->batch = std::move(batch);
  work_.post_units([self = self(), pass, done = std::move(done)]() -> bool {
    if (!pass->begun) {
      for (const TrainingExample& e : pass->batch) {
        pass->rows.push_back(TrainingRow{0, &e.tokens, &e.targets});
        pass->tokens += int64_t(e.tokens.size());
        pass->targets += e.target_count();
      }
      // The gradient of the batch's mean loss per target token; the client
      // sums batches by calling again before optim_step.
      pass->tensors.params = &self->params_;
      pass->tensors.grads = &self->grads_;
      pass->tensors.loss_weight = pass->targets > 0 ? 1.0 / double(pass->targets) : 1.0;
      Status st = self->backend_.begin(pass->rows, std::span<TrainingJobTensors<float>>(&pass->tensors, 1));
      if (!st.ok()) {
        done(st.error());  // validated before anything is accumulated: nothing changed
        return true;
      }
      pass->begun = true;
      return false;
    }
    if (!self->backend_.advance()) return false;
    ++self->accumulated_;
    const TrainingJobTensors<float>& t = pass->tensors;
    done(ForwardBackwardResult{t.loss_tokens > 0 ? t.loss_sum / double(t.loss_tokens) : 0.0, pass->tokens,
                               pass->targets});
    return true;
  });
}

void LocalTrainingRun::optim_step(double learning_rate, double max_grad_norm,
                             std::function<void(Result<OptimStepResult>)> done) {
  if (!(learning_rate > 0) || !std::isfinite(learning_rate)) {
    done(make_error(ErrorCode::kInvalidArgument, "learning_rate must be a positive number"));
    return;
  }
  work_.post([self = self(), learning_rate, max_grad_norm, done = std::move(done)] {
    if (self->accumulated_ == 0) {
      done(make_error(ErrorCode::kInvalidArgument, "no forward_backward since the last optim_step: no gradient to apply"));
      return;
    }
    OptimStepResult r;
    r.grad_norm = clip_grad_norm(self->grads_, max_grad_norm);
    self->adamw_.step(self->params_, self->grads_, learning_rate);
    self->grads_.set_zero();
    r.accumulated = self->accumulated_;
    self->accumulated_ = 0;
    r.step = ++self->steps_;
    done(r);
  });
}

void LocalTrainingRun::snapshot(std::function<void(Result<RunSnapshot>)> done) {
  work_.post([self = self(), done = std::move(done)] {
    done(RunSnapshot{std::make_shared<const LoraWeights>(to_lora_weights(self->params_, self->options_.adapter)),
                     self->steps_});
  });
}

void LocalTrainingRun::state(std::function<void(Result<std::shared_ptr<const TrainingRunState>>)> done) {
  work_.post([self = self(), done = std::move(done)] {
    auto s = std::make_shared<TrainingRunState>();
    s->params = self->params_;
    s->m = self->adamw_.first_moment();
    s->v = self->adamw_.second_moment();
    s->steps = self->steps_;
    done(std::shared_ptr<const TrainingRunState>(std::move(s)));
  });
}

void LocalTrainingRun::restore(TrainingRunState state) {
  params_ = std::move(state.params);
  adamw_.restore(std::move(state.m), std::move(state.v), state.steps);
  steps_ = state.steps;
}

void TrainingRun::set_published(const AdapterId& id) {
  std::lock_guard lock(mu_);
  published_ = id;
}

std::optional<AdapterId> TrainingRun::published() const {
  std::lock_guard lock(mu_);
  return published_;
}

nlohmann::json TrainingRun::describe() const {
  nlohmann::json targets = nlohmann::json::array();
  for (int m = 0; m < kNumLinearModules; ++m)
    if (options_.targets.modules[m]) targets.push_back(linear_module_name(LinearModule(m)));
  const auto pub = published();
  return {{"object", "training_run"},
          {"adapter", adapter_name()},
          {"rank", options_.targets.rank},
          {"alpha", options_.targets.alpha},
          {"targets", targets},
          {"seed", options_.seed},
          {"weight_decay", options_.adamw.weight_decay},
          {"published", pub ? nlohmann::json(pub->to_string()) : nlohmann::json()}};
}

}  // namespace myriad::node
