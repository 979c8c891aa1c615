#include "runtime/training/training_job.h"

#include <algorithm>
#include <cstring>
#include <cmath>
#include <limits>
#include <type_traits>
#include <utility>

#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "runtime/counter_rng.h"
#include "runtime/safetensors.h"
#include "runtime/sha256.h"

namespace myriad {

namespace {

Error bad_config(const std::string& what) { return make_error(ErrorCode::kInvalidArgument, "training job: " + what); }

// Packs examples (in `order`) into micro-batches of at most batch_tokens
// tokens; an example longer than that is a batch of its own.
std::vector<std::vector<size_t>> pack(const std::vector<TrainingExample>& ex, const std::vector<size_t>& order,
                                      int64_t batch_tokens) {
  std::vector<std::vector<size_t>> out;
  std::vector<size_t> cur;
  int64_t tokens = 0;
  for (size_t i : order) {
    const int64_t n = int64_t(ex[i].tokens.size());
    if (!cur.empty() && tokens + n > batch_tokens) {
      out.push_back(std::move(cur));
      cur.clear();
      tokens = 0;
    }
    cur.push_back(i);
    tokens += n;
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

}  // namespace

Result<std::unique_ptr<TrainingJob>> TrainingJob::create(std::string name, const ModelConfig& base,
                                                         TrainingJobConfig config, std::vector<TrainingExample> train,
                                                         std::vector<TrainingExample> eval) {
  if (train.empty()) return bad_config("no training examples");
  if (config.targets.rank < 1 || config.targets.rank > 256) return bad_config("rank must be in [1, 256]");
  if (!(config.targets.alpha > 0)) return bad_config("alpha must be positive");
  if (!std::any_of(std::begin(config.targets.modules), std::end(config.targets.modules), [](bool b) { return b; }))
    return bad_config("no target module");
  if (config.targets.first_layer < 0 || config.targets.first_layer >= base.num_layers)
    return bad_config("first_layer " + std::to_string(config.targets.first_layer) + " outside [0, " +
                      std::to_string(base.num_layers) + ")");
  if (!(config.adamw.lr > 0) || !std::isfinite(config.adamw.lr)) return bad_config("the learning rate must be positive");
  if (config.batch_tokens < 1) return bad_config("batch_tokens must be at least 1");
  if (config.grad_accum < 1) return bad_config("grad_accum must be at least 1");
  if (config.steps < 0) return bad_config("steps must be >= 0");
  if (config.steps == 0 && !(config.epochs > 0 && config.epochs <= 1e6)) return bad_config("epochs must be positive");
  if (config.grad_accum > 1'000'000 || config.steps > 1'000'000'000) return bad_config("steps or grad_accum too large");
  if (!(config.adamw.weight_decay >= 0) || !(config.max_grad_norm >= 0) || !(config.min_lr_ratio >= 0) ||
      !(config.min_lr_ratio <= 1))
    return bad_config("weight decay, max_grad_norm and min_lr_ratio must be >= 0 (the ratio at most 1)");
  // Every example must fit the base: a bad one would fail every round it shares.
  for (const auto* set : {&train, &eval})
    for (size_t i = 0; i < set->size(); ++i) {
      const TrainingExample& ex = (*set)[i];
      const std::string which = std::string(set == &train ? "training" : "eval") + " example " +
                                std::to_string(i + 1) + (ex.line > 0 ? " (line " + std::to_string(ex.line) + ")" : "");
      if (ex.tokens.empty() || ex.targets.size() != ex.tokens.size())
        return bad_config(which + ": tokens and targets must be non-empty and of one length");
      if (int64_t(ex.tokens.size()) > base.max_position_embeddings)
        return bad_config(which + ": " + std::to_string(ex.tokens.size()) + " tokens exceed the base's context of " +
                          std::to_string(base.max_position_embeddings));
      for (int32_t t : ex.tokens)
        if (t < 0 || t >= base.vocab_size)
          return bad_config(which + ": token " + std::to_string(t) + " is outside the base's vocabulary");
    }
  auto params = init_lora_params(base, config.targets, config.seed);
  std::unique_ptr<TrainingJob> job(
      new TrainingJob(std::move(name), config, std::move(train), std::move(eval), std::move(params)));
  if (config.steps > 0) {
    job->total_steps_ = config.steps;
  } else {
    const int64_t full = int64_t(std::floor(config.epochs));
    int64_t micro = 0;
    for (int64_t e = 0; e < full; ++e) {
      job->plan_epoch(e);
      micro = int64_t(job->planned_.size());
    }
    const double frac = config.epochs - double(full);
    if (frac > 0) {
      const size_t before = job->planned_.size();
      job->plan_epoch(full);
      micro += int64_t(std::ceil(frac * double(job->planned_.size() - before)));
    }
    job->total_steps_ = std::max<int64_t>(1, (micro + config.grad_accum - 1) / config.grad_accum);
  }
  job->schedule_.peak = config.adamw.lr;
  job->schedule_.total_steps = job->total_steps_;
  job->schedule_.warmup_steps =
      config.warmup_steps >= 0 ? config.warmup_steps : int64_t(std::ceil(0.03 * double(job->total_steps_)));
  job->schedule_.min_ratio = config.min_lr_ratio;
  {
    Sha256 h;
    // The base by its shape (its weights are not hashed: a different base of
    // the same shape is not detected), the config and the data's tokens.
    const nlohmann::json cfg = {{"layers", base.num_layers}, {"hidden", base.hidden_size}, {"vocab", base.vocab_size},
                                {"heads", base.num_heads}, {"kv_heads", base.num_kv_heads},
                                {"intermediate", base.intermediate_size}, {"rope_theta", base.rope_theta},
                                {"beta1", config.adamw.beta1}, {"beta2", config.adamw.beta2},
                                {"adam_eps", config.adamw.eps}, {"min_lr_ratio", config.min_lr_ratio},
                                {"rank", config.targets.rank}, {"alpha", config.targets.alpha},
                                {"modules", std::vector<bool>(std::begin(config.targets.modules),
                                                              std::end(config.targets.modules))},
                                {"lr", config.adamw.lr}, {"wd", config.adamw.weight_decay},
                                {"steps", job->total_steps_}, {"batch_tokens", config.batch_tokens},
                                {"grad_accum", config.grad_accum}, {"warmup", job->schedule_.warmup_steps},
                                {"clip", config.max_grad_norm}, {"seed", config.seed}};
    nlohmann::json keyed = cfg;
    // Only when set, so jobs from before the setting keep their fingerprint.
    if (config.targets.first_layer > 0) keyed["first_layer"] = config.targets.first_layer;
    const std::string c = keyed.dump();
    h.update(c.data(), c.size());
    for (const auto& ex : job->train_) {
      h.update(ex.tokens.data(), ex.tokens.size() * sizeof(int32_t));
      h.update(ex.targets.data(), ex.targets.size());
    }
    job->fingerprint_ = to_hex(h.finish());
  }
  return job;
}

TrainingJob::TrainingJob(std::string name, TrainingJobConfig config, std::vector<TrainingExample> train,
                         std::vector<TrainingExample> eval, LoraParams<float> params)
    : name_(std::move(name)),
      config_(config),
      train_(std::move(train)),
      eval_(std::move(eval)),
      params_(std::move(params)),
      grads_(params_.zeros_like()),
      adamw_(params_, config.adamw) {}

void TrainingJob::plan_epoch(int64_t epoch) {
  std::vector<size_t> order(train_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  uint64_t s = splitmix64(config_.seed ^ (0x5368756666ull + uint64_t(epoch) * 0x9e3779b97f4a7c15ull));
  for (size_t i = order.size(); i > 1; --i) {
    s = splitmix64(s);
    std::swap(order[i - 1], order[size_t(s % i)]);
  }
  for (auto& b : pack(train_, order, config_.batch_tokens)) planned_.push_back(std::move(b));
  planned_epochs_ = epoch + 1;
}

std::vector<size_t> TrainingJob::micro_batch(int64_t n) {
  while (int64_t(planned_.size()) <= n) plan_epoch(planned_epochs_);
  return planned_[size_t(n)];
}

std::vector<TrainingRow> TrainingJob::next_micro_batch(int32_t job_index) {
  if (step_batches_.empty()) {
    int64_t targets = 0;
    for (int64_t k = 0; k < config_.grad_accum; ++k) {
      step_batches_.push_back(micro_batch(micro_ + k));
      for (size_t i : step_batches_.back()) targets += train_[i].target_count();
    }
    step_weight_ = targets > 0 ? 1.0 / double(targets) : 0.0;
    if (!grads_zero_) grads_.set_zero();  // step_unit() zeroes them as it goes
    step_loss_sum_ = 0;
    step_loss_tokens_ = step_tokens_ = 0;
  }
  const size_t pos = size_t(micro_ % config_.grad_accum);
  std::vector<TrainingRow> rows;
  for (size_t i : step_batches_[pos]) rows.push_back({job_index, &train_[i].tokens, &train_[i].targets});
  return rows;
}

TrainingJobTensors<float> TrainingJob::tensors() {
  grads_zero_ = false;  // the backend adds into them
  return {&params_, &grads_, step_weight_, 0, 0};
}

std::optional<TrainingStepRecord> TrainingJob::apply(const TrainingJobTensors<float>& ran) {
  if (!accumulate(ran)) return std::nullopt;
  for (;;)
    if (auto rec = step_unit()) return rec;
}

bool TrainingJob::accumulate(const TrainingJobTensors<float>& ran) {
  const size_t pos = size_t(micro_ % config_.grad_accum);
  step_loss_sum_ += ran.loss_sum;
  step_loss_tokens_ += ran.loss_tokens;
  for (size_t i : step_batches_[pos]) step_tokens_ += int64_t(train_[i].tokens.size());
  ++micro_;
  return pos + 1 >= step_batches_.size();
}

std::optional<TrainingStepRecord> TrainingJob::step_unit() {
  if (step_module_ < 0) {
    stepping_ = TrainingStepRecord{};
    stepping_.step = step_ + 1;
    stepping_.loss = step_loss_tokens_ > 0 ? step_loss_sum_ / double(step_loss_tokens_) : 0.0;
    stepping_.tokens = step_tokens_;
    stepping_.target_tokens = step_loss_tokens_;
    stepping_.lr = schedule_.at(step_);
    stepping_.grad_norm = clip_grad_norm(grads_, config_.max_grad_norm);
    adamw_.begin_step();
    step_module_ = 0;
    return std::nullopt;
  }
  size_t end = size_t(step_module_);
  for (int64_t n = 0; end < params_.modules.size() && n < kStepUnitParams; ++end)
    n += int64_t(params_.modules[end].a.size() + params_.modules[end].b.size());
  adamw_.update(params_, grads_, stepping_.lr, size_t(step_module_), end);
  for (size_t m = size_t(step_module_); m < end; ++m) {  // while they are in cache: the next step starts from zero
    std::fill(grads_.modules[m].a.begin(), grads_.modules[m].a.end(), 0.0f);
    std::fill(grads_.modules[m].b.begin(), grads_.modules[m].b.end(), 0.0f);
  }
  step_module_ = int64_t(end);
  if (end < params_.modules.size()) return std::nullopt;
  step_module_ = -1;
  grads_zero_ = true;
  ++step_;
  step_batches_.clear();
  history_.push_back(stepping_);
  return stepping_;
}

namespace {

constexpr const char* kCheckpointFormat = "myriad-lora-training-checkpoint-1";

}  // namespace

TrainingJob::Snapshot TrainingJob::snapshot() const {
  MYRIAD_CHECK(step_batches_.empty(), "a checkpoint is taken between optimizer steps");
  Snapshot s;
  s.params_ = params_;
  s.m_ = adamw_.first_moment();
  s.v_ = adamw_.second_moment();
  nlohmann::json hist = nlohmann::json::array();
  // JSON has no NaN or infinity: such values are written as null and read back as NaN.
  for (const auto& r : history_) hist.push_back({r.step, r.loss, r.tokens, r.target_tokens, r.lr, r.grad_norm});
  const nlohmann::json state = {{"fingerprint", fingerprint_}, {"step", step_},           {"micro", micro_},
                                {"adam_steps", adamw_.steps()},  {"history", hist}};
  s.state_ = state.dump();
  return s;
}

std::vector<TensorToWrite> TrainingJob::Snapshot::tensors() const {
  std::vector<TensorToWrite> tensors;
  add_lora_tensors(tensors, params_, "params.");
  add_lora_tensors(tensors, m_, "adam_m.");
  add_lora_tensors(tensors, v_, "adam_v.");
  return tensors;
}

Status TrainingJob::Snapshot::save(const std::string& path) const {
  return write_safetensors(path, tensors(), {{"format", kCheckpointFormat}, {"state", state_}});
}

Status TrainingJob::save_checkpoint(const std::string& path) const { return snapshot().save(path); }

Result<std::string> TrainingJob::Snapshot::to_bytes() const {
  return safetensors_bytes(tensors(), {{"format", kCheckpointFormat}, {"state", state_}});
}

Status TrainingJob::load_checkpoint_bytes(std::string_view bytes) {
  const std::string where = "a checkpoint of job " + name_ + " (" + std::to_string(bytes.size()) + " bytes)";
  auto file = SafetensorsFile::from_bytes(bytes, where);
  if (!file.ok()) return file.error();
  return load_checkpoint_file(*file.value(), where);
}

Result<bool> TrainingJob::load_checkpoint(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return false;
  auto file = SafetensorsFile::open(path);
  if (!file.ok()) return file.error();
  MYRIAD_TRY(load_checkpoint_file(*file.value(), path));
  return true;
}

Status TrainingJob::load_checkpoint_file(const SafetensorsFile& file, const std::string& path) {
  const auto& meta = file.metadata();
  auto fmt = meta.find("format");
  auto state_text = meta.find("state");
  if (fmt == meta.end() || fmt->second != kCheckpointFormat || state_text == meta.end())
    return make_error(ErrorCode::kBadFile, path + ": not a Myriad training checkpoint");
  const nlohmann::json state = nlohmann::json::parse(state_text->second, nullptr, false);
  auto integer = [&](const char* k) {  // non-negative JSON integers parse as unsigned
    return state.contains(k) && state[k].is_number_unsigned() && state[k].get<uint64_t>() <= uint64_t(INT64_MAX);
  };
  if (!state.is_object() || !state.contains("fingerprint") || !integer("step") || !integer("micro") ||
      !integer("adam_steps") || !state.contains("history") || !state["history"].is_array())
    return make_error(ErrorCode::kBadFile, path + ": the checkpoint's state is malformed");
  if (state["fingerprint"] != fingerprint_)
    return make_error(ErrorCode::kInvalidArgument,
                      path + ": the checkpoint is of another job (its config, base or data differ); not resumed");
  LoraParams<float> params = params_, m = params_.zeros_like(), v = params_.zeros_like();
  MYRIAD_TRY(read_lora_tensors(file, params, "params."));
  MYRIAD_TRY(read_lora_tensors(file, m, "adam_m."));
  MYRIAD_TRY(read_lora_tensors(file, v, "adam_v."));
  std::vector<TrainingStepRecord> history;
  for (const auto& r : state["history"]) {
    if (!r.is_array() || r.size() != 6 ||
        !std::all_of(r.begin(), r.end(), [](const auto& x) { return x.is_number() || x.is_null(); }) ||
        !r[0].is_number_integer() || !r[2].is_number_integer() || !r[3].is_number_integer())
      return make_error(ErrorCode::kBadFile, path + ": a history record is malformed");
    auto real = [](const nlohmann::json& x) {
      return x.is_null() ? std::numeric_limits<double>::quiet_NaN() : x.get<double>();
    };
    history.push_back({r[0].get<int64_t>(), real(r[1]), r[2].get<int64_t>(), r[3].get<int64_t>(), real(r[4]),
                       real(r[5])});
  }
  if (state["step"].get<int64_t>() > total_steps_ ||
      state["micro"].get<int64_t>() != state["step"].get<int64_t>() * config_.grad_accum)
    return make_error(ErrorCode::kBadFile, path + ": the checkpoint's step counters are inconsistent");
  params_ = std::move(params);
  adamw_.restore(std::move(m), std::move(v), state["adam_steps"].get<int64_t>());
  step_ = state["step"].get<int64_t>();
  micro_ = state["micro"].get<int64_t>();
  history_ = std::move(history);
  step_batches_.clear();
  return ok_status();
}

void JobTrainer::remove(TrainingJob* job) {
  MYRIAD_CHECK(!in_flight_, "jobs change between rounds only");
  jobs_.erase(std::remove(jobs_.begin(), jobs_.end(), job), jobs_.end());
}

bool JobTrainer::idle() const {
  return std::none_of(jobs_.begin(), jobs_.end(), [](const TrainingJob* j) { return !j->done(); });
}

Result<bool> JobTrainer::begin_round() {
  MYRIAD_CHECK(!in_flight_, "a round is already in flight");
  MYRIAD_CHECK(!loss_.active, "a round cannot begin during a loss pass");
  active_.clear();
  rows_.clear();
  tensors_.clear();
  for (TrainingJob* j : jobs_)
    if (!j->done()) active_.push_back(j);
  for (size_t i = 0; i < active_.size(); ++i) {
    auto r = active_[i]->next_micro_batch(int32_t(i));
    rows_.insert(rows_.end(), r.begin(), r.end());
    tensors_.push_back(active_[i]->tensors());
  }
  if (rows_.empty()) return false;
  MYRIAD_TRY(backend_.begin(rows_, tensors_));
  in_flight_ = true;
  return true;
}

std::optional<JobTrainer::Records> JobTrainer::advance_round() {
  MYRIAD_CHECK(in_flight_, "advance_round() without begin_round()");
  if (applying_ < 0) {
    if (!backend_.advance()) return std::nullopt;
    applying_ = 0;
    stepping_ = false;
    records_.clear();
    return std::nullopt;  // the optimizer steps are units of their own
  }
  while (size_t(applying_) < active_.size()) {
    TrainingJob* job = active_[size_t(applying_)];
    if (!stepping_ && !job->accumulate(tensors_[size_t(applying_)])) {
      ++applying_;  // a micro-batch inside its optimizer step: nothing to update
      continue;
    }
    stepping_ = true;
    auto rec = job->step_unit();
    if (!rec) return std::nullopt;
    records_.emplace_back(job, *rec);
    stepping_ = false;
    ++applying_;
    if (size_t(applying_) < active_.size()) return std::nullopt;
  }
  in_flight_ = false;
  applying_ = -1;
  return std::move(records_);
}

Result<JobTrainer::Records> JobTrainer::round() {
  auto begun = begin_round();
  if (!begun.ok()) return begun.error();
  if (!begun.value()) return Records{};
  for (;;)
    if (auto recs = advance_round()) return std::move(*recs);
}

// The pass in units, run back to back: one copy of the batching and the sums.
Result<double> JobTrainer::loss(const LoraParams<float>& params, const std::vector<TrainingExample>& examples,
                                int64_t batch_tokens) {
  if (examples.empty()) return std::numeric_limits<double>::quiet_NaN();
  MYRIAD_CHECK(!loss_.active, "loss() while a loss pass is in flight");
  begin_loss(params, examples, batch_tokens);
  for (;;)
    if (auto mean = advance_loss()) return std::move(*mean);
}

void JobTrainer::begin_loss(const LoraParams<float>& params, const std::vector<TrainingExample>& examples,
                            int64_t batch_tokens) {
  MYRIAD_CHECK(!in_flight_, "a loss pass begins between rounds only");
  std::vector<size_t> order(examples.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  loss_ = LossPass{};
  loss_.active = true;
  loss_.params = &params;
  loss_.examples = &examples;
  loss_.batches = pack(examples, order, batch_tokens);
}

std::optional<Result<double>> JobTrainer::advance_loss() {
  LossPass& p = loss_;
  if (!p.active) return std::nullopt;
  if (!p.batch_begun) {
    if (p.next < p.batches.size()) {
      p.rows.clear();
      for (size_t i : p.batches[p.next]) p.rows.push_back({0, &(*p.examples)[i].tokens, &(*p.examples)[i].targets});
      p.tensors = TrainingJobTensors<float>{p.params, nullptr, 1.0, 0, 0};
      if (Status st = backend_.begin(p.rows, std::span<TrainingJobTensors<float>>(&p.tensors, 1)); !st.ok()) {
        p.active = false;
        return Result<double>(st.error());
      }
      p.batch_begun = true;
      return std::nullopt;
    }
  } else if (backend_.advance()) {
    p.sum += p.tensors.loss_sum;
    p.tokens += p.tensors.loss_tokens;
    p.batch_begun = false;
    ++p.next;
  }
  if (p.batch_begun || p.next < p.batches.size()) return std::nullopt;
  p.active = false;
  return Result<double>(p.tokens > 0 ? p.sum / double(p.tokens) : std::numeric_limits<double>::quiet_NaN());
}

Result<double> JobTrainer::evaluate(TrainingJob& job) {
  return loss(job.params(), job.eval_examples(), job.config().batch_tokens);
}

double mean_loss_first(const std::vector<TrainingStepRecord>& h, size_t n) {
  const size_t k = std::min(n, h.size());
  if (k == 0) return std::numeric_limits<double>::quiet_NaN();
  double s = 0;
  for (size_t i = 0; i < k; ++i) s += h[i].loss;
  return s / double(k);
}

double mean_loss_last(const std::vector<TrainingStepRecord>& h, size_t n) {
  const size_t k = std::min(n, h.size());
  if (k == 0) return std::numeric_limits<double>::quiet_NaN();
  double s = 0;
  for (size_t i = h.size() - k; i < h.size(); ++i) s += h[i].loss;
  return s / double(k);
}


nlohmann::json training_job_config_json(const TrainingJobConfig& c) {
  nlohmann::json modules = nlohmann::json::array();
  for (bool m : c.targets.modules) modules.push_back(m);
  return {{"rank", c.targets.rank},
          {"alpha", c.targets.alpha},
          {"modules", modules},
          {"first_layer", c.targets.first_layer},
          {"lr", c.adamw.lr},
          {"beta1", c.adamw.beta1},
          {"beta2", c.adamw.beta2},
          {"eps", c.adamw.eps},
          {"weight_decay", c.adamw.weight_decay},
          {"steps", c.steps},
          {"epochs", c.epochs},
          {"batch_tokens", c.batch_tokens},
          {"grad_accum", c.grad_accum},
          {"warmup_steps", c.warmup_steps},
          {"min_lr_ratio", c.min_lr_ratio},
          {"max_grad_norm", c.max_grad_norm},
          {"seed", c.seed}};
}

Result<TrainingJobConfig> training_job_config_from_json(const nlohmann::json& j) {
  auto missing = [](const char* k) {
    return make_error(ErrorCode::kInvalidArgument, std::string("training job config: ") + k + " is missing or not a number");
  };
  if (!j.is_object()) return make_error(ErrorCode::kInvalidArgument, "training job config: not a JSON object");
  TrainingJobConfig c;
  auto num = [&](const char* k, auto& out) -> bool {
    if (!j.contains(k) || !j[k].is_number()) return false;
    out = j[k].get<std::remove_reference_t<decltype(out)>>();
    return true;
  };
  for (auto [k, ok] : {std::pair{"rank", num("rank", c.targets.rank)}, {"alpha", num("alpha", c.targets.alpha)},
                       {"first_layer", num("first_layer", c.targets.first_layer)}, {"lr", num("lr", c.adamw.lr)},
                       {"beta1", num("beta1", c.adamw.beta1)}, {"beta2", num("beta2", c.adamw.beta2)},
                       {"eps", num("eps", c.adamw.eps)}, {"weight_decay", num("weight_decay", c.adamw.weight_decay)},
                       {"steps", num("steps", c.steps)}, {"epochs", num("epochs", c.epochs)},
                       {"batch_tokens", num("batch_tokens", c.batch_tokens)},
                       {"grad_accum", num("grad_accum", c.grad_accum)},
                       {"warmup_steps", num("warmup_steps", c.warmup_steps)},
                       {"min_lr_ratio", num("min_lr_ratio", c.min_lr_ratio)},
                       {"max_grad_norm", num("max_grad_norm", c.max_grad_norm)}, {"seed", num("seed", c.seed)}})
    if (!ok) return missing(k);
  if (!j.contains("modules") || !j["modules"].is_array() || j["modules"].size() != size_t(kNumLinearModules))
    return make_error(ErrorCode::kInvalidArgument, "training job config: modules must be 7 booleans");
  for (int m = 0; m < kNumLinearModules; ++m) {
    if (!j["modules"][size_t(m)].is_boolean())
      return make_error(ErrorCode::kInvalidArgument, "training job config: modules must be 7 booleans");
    c.targets.modules[m] = j["modules"][size_t(m)].get<bool>();
  }
  return c;
}

}  // namespace myriad
