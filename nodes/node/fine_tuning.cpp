#include "fine_tuning.h"

#include "node_files.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "runtime/atomic_file.h"
#include "runtime/log.h"
#include "runtime/peft_adapter.h"
#include "runtime/training/loss_curve.h"
#include "runtime/training/training_data.h"

namespace myriad::node {

namespace {

// A loss that may be NaN (no validation file) as JSON: null then.
nlohmann::json nan_as_null(double v) { return std::isnan(v) ? nlohmann::json() : nlohmann::json(v); }
double number_or_nan(const nlohmann::json& j, const char* key) {
  return j.contains(key) && j[key].is_number() ? j[key].get<double>() : std::numeric_limits<double>::quiet_NaN();
}

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr double kBaseLearningRate = 2e-4;  // learning_rate_multiplier 1 (myriad finetune's default --lr)
constexpr double kAutoEpochs = 3;
constexpr size_t kMaxEventsKept = 20000;  // per job; the loss curve keeps every step regardless


double mono_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

Error bad(std::string what) { return make_error(ErrorCode::kInvalidArgument, std::move(what)); }


bool in_progress(const std::string& status) { return status == "queued" || status == "running"; }

// An integer field in [lo, hi], or "auto" (nullopt) when `allow_auto`.
Result<std::optional<int64_t>> int_field(const json& obj, const char* key, int64_t lo, int64_t hi, bool allow_auto) {
  if (!obj.contains(key) || obj[key].is_null()) return std::optional<int64_t>();
  const json& v = obj[key];
  if (allow_auto && v.is_string() && v.get<std::string>() == "auto") return std::optional<int64_t>();
  if (!v.is_number_integer() || v.get<int64_t>() < lo || v.get<int64_t>() > hi)
    return bad(std::string(key) + ": expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
               "]" + (allow_auto ? " or \"auto\"" : ""));
  return std::optional<int64_t>(v.get<int64_t>());
}

Result<std::optional<double>> positive_field(const json& obj, const char* key, bool allow_auto) {
  if (!obj.contains(key) || obj[key].is_null()) return std::optional<double>();
  const json& v = obj[key];
  if (allow_auto && v.is_string() && v.get<std::string>() == "auto") return std::optional<double>();
  if (!v.is_number() || !(v.get<double>() > 0) || !std::isfinite(v.get<double>()))
    return bad(std::string(key) + ": expected a positive number" + (allow_auto ? " or \"auto\"" : ""));
  return std::optional<double>(v.get<double>());
}

// "rank" (default 8), "alpha" (16) and "targets" (module names; default all
// seven) of `obj`; errors name the field after `prefix`.
Result<LoraTargets> lora_targets_field(const json& obj, const std::string& prefix, int32_t max_rank) {
  auto fail = [&](const Error& e) { return bad(prefix + e.message); };
  auto rank = int_field(obj, "rank", 1, max_rank, false);
  if (!rank.ok()) return fail(rank.error());
  auto alpha = positive_field(obj, "alpha", false);
  if (!alpha.ok()) return fail(alpha.error());
  std::vector<std::string> targets = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  if (obj.contains("targets")) {
    if (!obj["targets"].is_array()) return bad(prefix + "targets: expected an array of module names");
    targets.clear();
    for (const json& t : obj["targets"]) {
      if (!t.is_string()) return bad(prefix + "targets: expected an array of module names");
      targets.push_back(t.get<std::string>());
    }
  }
  auto named = lora_targets_named(targets, int32_t(rank.value().value_or(8)), float(alpha.value().value_or(16.0)));
  if (!named.ok()) return bad(prefix + "targets: " + named.error().message);
  return named.value();
}

// What a create request asks for, resolved (also from a stored request after a restart).
struct JobSpec {
  TrainingJobConfig config;
  std::string suffix;
  std::string training_file, validation_file;
  std::optional<int64_t> batch_size;  // examples per micro-batch (OpenAI's batch_size)
  double lr_multiplier = 1.0;
};

Result<JobSpec> parse_request(const json& body, const std::string& base_model, int32_t max_rank) {
  if (!body.is_object()) return bad("the body must be a JSON object");
  JobSpec s;
  if (!body.contains("model") || !body["model"].is_string())
    return bad("model: required, the served base model '" + base_model + "'");
  if (body["model"].get<std::string>() != base_model)
    return bad("model: this node fine-tunes its served base '" + base_model + "', not '" +
               body["model"].get<std::string>() + "'");
  if (!body.contains("training_file") || !body["training_file"].is_string())
    return bad("training_file: required, the id of a file uploaded with purpose fine-tune");
  s.training_file = body["training_file"].get<std::string>();
  if (body.contains("validation_file") && !body["validation_file"].is_null()) {
    if (!body["validation_file"].is_string()) return bad("validation_file: expected a file id");
    s.validation_file = body["validation_file"].get<std::string>();
  }
  if (body.contains("suffix") && !body["suffix"].is_null()) {
    if (!body["suffix"].is_string()) return bad("suffix: expected a string");
    s.suffix = body["suffix"].get<std::string>();
    if (Status st = check_adapter_name(s.suffix); !st.ok()) return bad("suffix: " + st.error().message);
  }
  auto seed = int_field(body, "seed", 0, int64_t(1) << 53, false);
  if (!seed.ok()) return seed.error();
  s.config.seed = seed.value() ? uint64_t(*seed.value()) : 0;

  // OpenAI's two places for the hyperparameters: top-level (older) and method.supervised.
  json hp = json::object();
  if (body.contains("hyperparameters") && !body["hyperparameters"].is_null()) {
    if (!body["hyperparameters"].is_object()) return bad("hyperparameters: expected an object");
    hp = body["hyperparameters"];
  }
  if (body.contains("method") && !body["method"].is_null()) {
    const json& m = body["method"];
    if (!m.is_object()) return bad("method: expected an object");
    const std::string type = m.value("type", std::string("supervised"));
    if (type != "supervised") return bad("method.type: only \"supervised\" is supported, not \"" + type + "\"");
    if (m.contains("supervised") && m["supervised"].is_object() && m["supervised"].contains("hyperparameters")) {
      const json& h = m["supervised"]["hyperparameters"];
      if (!h.is_object()) return bad("method.supervised.hyperparameters: expected an object");
      for (auto it = h.begin(); it != h.end(); ++it) hp[it.key()] = it.value();
    }
  }
  static const char* known[] = {"n_epochs", "batch_size", "learning_rate_multiplier", "steps", "learning_rate",
                                "batch_tokens", "rank", "alpha", "targets", "warmup_steps", "grad_accum",
                                "weight_decay"};
  for (auto it = hp.begin(); it != hp.end(); ++it)
    if (std::find_if(std::begin(known), std::end(known), [&](const char* k) { return it.key() == k; }) ==
        std::end(known))
      return bad("hyperparameters." + it.key() + ": unknown (n_epochs, batch_size, learning_rate_multiplier; "
                 "Myriad's: steps, learning_rate, batch_tokens, rank, alpha, targets, warmup_steps, grad_accum, "
                 "weight_decay)");
  auto fail = [](const Error& e) { return bad("hyperparameters." + e.message); };
  auto epochs = positive_field(hp, "n_epochs", true);
  if (!epochs.ok()) return fail(epochs.error());
  if (epochs.value() && *epochs.value() > 1000) return bad("hyperparameters.n_epochs: at most 1000");
  s.config.epochs = epochs.value().value_or(kAutoEpochs);
  auto batch = int_field(hp, "batch_size", 1, 4096, true);
  if (!batch.ok()) return fail(batch.error());
  s.batch_size = batch.value();
  auto mult = positive_field(hp, "learning_rate_multiplier", true);
  if (!mult.ok()) return fail(mult.error());
  s.lr_multiplier = mult.value().value_or(1.0);
  auto lr = positive_field(hp, "learning_rate", false);
  if (!lr.ok()) return fail(lr.error());
  s.config.adamw.lr = lr.value().value_or(kBaseLearningRate * s.lr_multiplier);
  auto steps = int_field(hp, "steps", 1, 1000000, false);
  if (!steps.ok()) return fail(steps.error());
  s.config.steps = steps.value().value_or(0);
  auto batch_tokens = int_field(hp, "batch_tokens", 1, int64_t(1) << 24, false);
  if (!batch_tokens.ok()) return fail(batch_tokens.error());
  if (batch_tokens.value()) s.config.batch_tokens = *batch_tokens.value();
  auto named = lora_targets_field(hp, "hyperparameters.", max_rank);
  if (!named.ok()) return named.error();
  s.config.targets = named.value();
  auto warmup = int_field(hp, "warmup_steps", 0, 1000000, false);
  if (!warmup.ok()) return fail(warmup.error());
  s.config.warmup_steps = warmup.value().value_or(0);
  auto accum = int_field(hp, "grad_accum", 1, 1024, false);
  if (!accum.ok()) return fail(accum.error());
  s.config.grad_accum = accum.value().value_or(1);
  if (hp.contains("weight_decay")) {
    if (!hp["weight_decay"].is_number() || hp["weight_decay"].get<double>() < 0)
      return bad("hyperparameters.weight_decay: expected a number >= 0");
    s.config.adamw.weight_decay = hp["weight_decay"].get<double>();
  }
  return s;
}

Result<TrainingFileRecord> file_from_json(const json& j) {
  if (!j.is_object() || !j.contains("id") || !j["id"].is_string()) return bad("not a file record");
  TrainingFileRecord f;
  f.id = j["id"].get<std::string>();
  f.tenant = j.value("tenant", std::string());
  f.filename = j.value("filename", std::string());
  f.purpose = j.value("purpose", std::string("fine-tune"));
  f.bytes = j.value("bytes", int64_t(0));
  f.created_at = j.value("created_at", int64_t(0));
  f.examples = j.value("examples", int64_t(0));
  return f;
}

}  // namespace

json fine_tuning_file_json(const TrainingFileRecord& f) {
  return {{"id", f.id},
          {"object", "file"},
          {"bytes", f.bytes},
          {"created_at", f.created_at},
          {"filename", f.filename},
          {"purpose", f.purpose},
          {"status", "processed"},
          {"status_details", nullptr},
          {"myriad", {{"examples", f.examples}}}};
}

TrainingWork::Publish FineTuning::publish_callback() {
  return [this](const std::string& job, uint64_t v, std::shared_ptr<const LoraWeights> w, double eval_loss) {
    on_publish(job, v, std::move(w), eval_loss);
  };
}

TrainingWork::Progress FineTuning::progress_callback() {
  return [this](const TrainingJob& job, const TrainingStepRecord& rec) { on_progress(job, rec); };
}

void FineTuning::set_runner(std::unique_ptr<JobRunner> runner) {
  MYRIAD_CHECK(!work_ && !publish_, "a runner is set on a node without a trainer of its own, before start()");
  remote_ = std::move(runner);
  runner_ = remote_.get();
}

Result<std::unique_ptr<FineTuning>> FineTuning::open(const FineTuningOptions& options,
                                                     std::shared_ptr<const Checkpoint> base,
                                                     std::shared_ptr<const Tokenizer> tokenizer,
                                                     std::unique_ptr<LoraTrainingBackend> backend) {
  std::unique_ptr<FineTuning> ft(new FineTuning());
  ft->options_ = options;
  ft->base_ = std::move(base);
  ft->tokenizer_ = std::move(tokenizer);
  ft->backend_ = std::move(backend);
  if (ft->backend_) {
    ft->work_ = std::make_unique<TrainingWork>(*ft->backend_, std::max<int64_t>(1, options.publish_every),
                                               ft->publish_callback(), ft->progress_callback());
    ft->local_ = std::make_unique<LocalJobs>(*ft->work_, *ft->backend_);
    ft->runner_ = ft->local_.get();
  }
  std::error_code ec;
  for (const std::string& dir : {ft->files_dir(), ft->job_dir("")}) {
    fs::create_directories(dir, ec);
    if (ec) return make_error(ErrorCode::kIo, "cannot create " + dir + ": " + ec.message());
  }
  for (const auto& entry : fs::directory_iterator(ft->files_dir(), ec)) {
    if (entry.path().extension() != ".json") continue;
    auto text = read_file(entry.path().string());
    if (!text.ok()) return text.error();
    auto rec = file_from_json(json::parse(text.value(), nullptr, false));
    if (!rec.ok()) return make_error(ErrorCode::kBadFile, entry.path().string() + ": " + rec.error().message);
    ft->files_[rec.value().id] = rec.value();
  }
  std::vector<std::pair<int64_t, std::string>> order;
  for (const auto& entry : fs::directory_iterator(ft->job_dir(""), ec)) {
    const std::string path = (entry.path() / "job.json").string();
    if (!fs::exists(path)) continue;  // a job whose creation never finished
    auto text = read_file(path);
    if (!text.ok()) return text.error();
    const json j = json::parse(text.value(), nullptr, false);
    if (!j.is_object() || !j.contains("id")) return make_error(ErrorCode::kBadFile, path + ": not a job record");
    auto job = std::make_unique<Job>();
    job->id = j["id"].get<std::string>();
    job->tenant = j.value("tenant", std::string());
    job->status = j.value("status", std::string("failed"));
    job->error = j.value("error", json());
    job->request = j.value("request", json::object());
    job->training_file = j.value("training_file", std::string());
    job->validation_file = j.value("validation_file", std::string());
    job->adapter_name = j.value("adapter_name", std::string());
    job->created_at = j.value("created_at", int64_t(0));
    job->started_at = j.value("started_at", int64_t(0));
    job->finished_at = j.value("finished_at", int64_t(0));
    job->trained_tokens = j.value("trained_tokens", int64_t(0));
    job->steps = j.value("steps", int64_t(0));
    job->total_steps = j.value("total_steps", int64_t(0));
    job->examples = j.value("examples", int64_t(0));
    job->last_loss = j.value("train_loss", 0.0);
    for (const json& e : j.value("events", json::array()))
      job->events.push_back({e.value("seq", int64_t(0)), e.value("created_at", int64_t(0)),
                             e.value("level", std::string("info")), e.value("type", std::string("message")),
                             e.value("message", std::string()), e.value("data", json())});
    for (const json& v : j.value("versions", json::array()))
      job->versions.push_back({AdapterId{job->tenant, job->adapter_name, v.value("version", uint64_t(0))},
                               v.value("step", int64_t(0)), v.value("train_loss", 0.0),
                               v.value("created_at", int64_t(0)), number_or_nan(v, "valid_loss")});
    for (const json& r : j.value("curve", json::array()))
      if (r.is_array() && r.size() == 6)
        job->curve.push_back({r[0].get<int64_t>(), r[1].get<double>(), r[4].get<int64_t>(), r[5].get<int64_t>(),
                              r[2].get<double>(), r[3].get<double>()});
    auto spec = parse_request(job->request, options.base_model, 256);
    if (spec.ok()) job->config = spec.value().config;
    order.emplace_back(job->created_at, job->id);
    ft->jobs_[job->id] = std::move(job);
  }
  std::sort(order.begin(), order.end());
  for (auto& [_, id] : order) ft->job_order_.push_back(id);
  return ft;
}

FineTuning::~FineTuning() { stop(); }

void FineTuning::start(PublishFolder publish) {
  MYRIAD_CHECK(runner_, "start(): a node without a backend needs set_runner() first");
  std::lock_guard lock(mu_);
  publish_ = std::move(publish);
  stopping_ = false;
  publisher_ = std::thread([this] { publisher_loop(); });
  for (const std::string& id : job_order_) {
    Job& job = *jobs_[id];
    if (!in_progress(job.status)) continue;
    if (job.status == "running") add_event(job, "info", "message", "The node restarted: resuming from the last version");
    job.status = "queued";
  }
  admit_queued();
}

void FineTuning::stop() {
  if (remote_) remote_->stop();  // its actor handles go before the actor system does
  {
    std::lock_guard lock(mu_);
    if (!publisher_.joinable()) return;
    stopping_ = true;
  }
  pending_cv_.notify_all();
  publisher_.join();
}

std::string FineTuning::files_dir() const { return options_.data_dir + "/fine_tuning/files"; }
std::string FineTuning::job_dir(const std::string& id) const {
  return options_.data_dir + "/fine_tuning/jobs" + (id.empty() ? "" : "/" + id);
}

std::shared_ptr<const LoraWeights> FineTuning::fresh_version(const AdapterId& id) const {
  std::lock_guard lock(mu_);
  for (const auto& [_, job] : jobs_)
    if (job->newest && !job->versions.empty() && job->versions.back().id == id) return job->newest;
  if (auto it = run_versions_.find(id.tenant + "/" + id.name); it != run_versions_.end() && it->second.first == id)
    return it->second.second;
  return nullptr;
}

// ---- training runs ----

namespace {
constexpr const char* kRunCheckpointFormat = "myriad-training-run-checkpoint-1";

// A checkpoint id as save_run_state makes them ("ckpt-" and hex digits): no
// path can be smuggled through one.
bool is_checkpoint_id(const std::string& id) {
  return id.size() > 5 && id.size() <= 64 && id.rfind("ckpt-", 0) == 0 &&
         std::all_of(id.begin() + 5, id.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

// A non-negative count a run checkpoint's metadata keeps under `key` as
// decimal digits ("steps", "created_at"); nullopt when absent or malformed.
std::optional<int64_t> metadata_count(const SafetensorsFile& file, const char* key) {
  auto it = file.metadata().find(key);
  if (it == file.metadata().end() || it->second.empty() || it->second.size() > 15 ||
      !std::all_of(it->second.begin(), it->second.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  return std::stoll(it->second);
}
}  // namespace

Result<std::shared_ptr<TrainingRun>> FineTuning::open_run(const Caller& caller, const json& request) {
  if (!runner_) return make_error(ErrorCode::kUnavailable, "the node is not training yet");
  if (!request.is_object()) return bad("the request must be a JSON object");
  if (!request.contains("name") || !request["name"].is_string())
    return bad("name: required, the adapter the run publishes versions of");
  json r = request;
  std::shared_ptr<SafetensorsFile> from;
  if (request.contains("from_checkpoint")) {
    const json& c = request["from_checkpoint"];
    if (!c.is_string() || !is_checkpoint_id(c.get<std::string>()))
      return bad("from_checkpoint: a checkpoint id as save_state answers it (ckpt-...)");
    for (const auto& [key, _] : request.items())
      if (key != "name" && key != "from_checkpoint")
        return bad(key + ": comes from the checkpoint (give only name and from_checkpoint)");
    const std::string id = c.get<std::string>();
    const std::string path = options_.data_dir + "/fine_tuning/run_checkpoints/" + id + ".safetensors";
    const Error missing = make_error(ErrorCode::kNotFound, "no checkpoint " + id);
    if (!std::filesystem::exists(path)) return missing;
    auto file = SafetensorsFile::open(path);
    if (!file.ok()) return file.error();
    const auto& meta = file.value()->metadata();
    auto format = meta.find("format"), tenant = meta.find("tenant"), saved = meta.find("request");
    if (format == meta.end() || format->second != kRunCheckpointFormat || tenant == meta.end() || saved == meta.end())
      return make_error(ErrorCode::kBadFile, path + ": not a training run checkpoint");
    if (!caller.sees(tenant->second)) return missing;  // another tenant's is as missing
    r = json::parse(saved->second, nullptr, false);
    if (!r.is_object()) return make_error(ErrorCode::kBadFile, path + ": its request is malformed");
    r["name"] = request["name"];
    from = std::move(file.value());
  }
  TrainingRunOptions o;
  o.tenant = caller.tenant;
  o.adapter = r["name"].get<std::string>();
  if (Status st = check_adapter_name(o.adapter); !st.ok()) return bad("name: " + st.error().message);
  auto targets = lora_targets_field(r, "", 256);
  if (!targets.ok()) return targets.error();
  o.targets = targets.value();
  auto seed = int_field(r, "seed", 0, int64_t(1) << 53, false);
  if (!seed.ok()) return seed.error();
  o.seed = seed.value() ? uint64_t(*seed.value()) : 0;
  for (const char* key : {"weight_decay", "beta1", "beta2", "eps"}) {
    if (!r.contains(key) || r[key].is_null()) continue;
    const json& v = r[key];
    const bool is_decay = std::string_view(key) == "weight_decay";
    if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < 0 ||
        (!is_decay && (v.get<double>() <= 0 || (key[0] == 'b' && v.get<double>() >= 1))))
      return bad(std::string(key) + ": out of range");
    double& field = is_decay ? o.adamw.weight_decay
                    : std::string_view(key) == "beta1" ? o.adamw.beta1
                    : std::string_view(key) == "beta2" ? o.adamw.beta2
                                                         : o.adamw.eps;
    field = v.get<double>();
  }
  o.request = r;
  o.request.erase("name");
  if (!from) return runner_->open_run(std::move(o), base_->config(), std::nullopt);
  // The saved state, read into the shape these options give (a tensor of
  // another shape is an error; nothing is made then).
  auto state = read_run_state(*from, base_->config(), o, true, 0);
  if (!state.ok()) return state.error();
  const auto steps = metadata_count(*from, "steps");
  if (!steps) return make_error(ErrorCode::kBadFile, from->path() + ": its step count is malformed");
  state->steps = *steps;
  return runner_->open_run(std::move(o), base_->config(), std::move(state.value()));
}

Result<json> FineTuning::save_run_state(const TrainingRun& run, const TrainingRunState& state) {
  const std::string dir = options_.data_dir + "/fine_tuning/run_checkpoints";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return make_error(ErrorCode::kIo, dir + ": " + ec.message());
  const std::string id = "ckpt-" + random_hex(24);
  const std::vector<TensorToWrite> tensors = run_state_tensors(state, true);
  const int64_t created = unix_s();
  MYRIAD_TRY(write_safetensors(dir + "/" + id + ".safetensors", tensors,
                               {{"format", kRunCheckpointFormat},
                                {"tenant", run.options().tenant},
                                {"adapter", run.adapter_name()},
                                {"steps", std::to_string(state.steps)},
                                {"created_at", std::to_string(created)},
                                {"request", run.options().request.dump()}}));
  return json{{"object", "training_run.checkpoint"},
              {"id", id},
              {"step", state.steps},
              {"adapter", run.adapter_name()},
              {"created_at", created}};
}

json FineTuning::list_run_checkpoints(const Caller& caller) const {
  const std::string dir = options_.data_dir + "/fine_tuning/run_checkpoints";
  std::vector<json> seen;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string id = entry.path().stem().string();
    if (entry.path().extension() != ".safetensors" || !is_checkpoint_id(id)) continue;  // temp files too
    auto file = SafetensorsFile::open(entry.path().string());
    if (!file.ok()) continue;  // unreadable: open_run says why when it is named
    const auto& meta = file.value()->metadata();
    auto tenant = meta.find("tenant"), adapter = meta.find("adapter");
    if (tenant == meta.end() || !caller.sees(tenant->second)) continue;
    // Saved before the metadata kept its time: the file's.
    const int64_t created_at = metadata_count(*file.value(), "created_at").value_or(
        std::chrono::duration_cast<std::chrono::seconds>(
            std::chrono::file_clock::to_sys(fs::last_write_time(entry.path(), ec)).time_since_epoch())
            .count());
    seen.push_back({{"object", "training_run.checkpoint"},
                    {"id", id},
                    {"step", metadata_count(*file.value(), "steps").value_or(0)},
                    {"adapter", adapter == meta.end() ? "" : adapter->second},
                    {"created_at", created_at}});
  }
  std::sort(seen.begin(), seen.end(), [](const json& a, const json& b) {
    return a["created_at"] != b["created_at"] ? a["created_at"] > b["created_at"] : a["id"] > b["id"];
  });
  return {{"object", "list"}, {"data", seen}};
}

Result<json> FineTuning::delete_run_checkpoint(const Caller& caller, const std::string& id) {
  const Error missing = make_error(ErrorCode::kNotFound, "no checkpoint " + id);
  if (!is_checkpoint_id(id)) return missing;
  const std::string path = options_.data_dir + "/fine_tuning/run_checkpoints/" + id + ".safetensors";
  {
    auto file = SafetensorsFile::open(path);
    if (!file.ok()) return missing;
    auto tenant = file.value()->metadata().find("tenant");
    if (tenant == file.value()->metadata().end() || !caller.sees(tenant->second)) return missing;
  }  // unmapped before it goes
  std::error_code ec;
  if (!fs::remove(path, ec)) return ec ? make_error(ErrorCode::kIo, path + ": " + ec.message()) : missing;
  return json{{"id", id}, {"object", "training_run.checkpoint"}, {"deleted", true}};
}

Result<std::vector<TrainingExample>> FineTuning::parse_examples(const std::vector<std::string>& lines) const {
  if (lines.empty()) return bad("examples: the batch has no examples");
  std::vector<TrainingExample> out;
  const DatasetOptions o = dataset_options();
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string where = "example " + std::to_string(i);
    const json j = json::parse(lines[i], nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return bad(where + ": not JSON");
    auto e = encode_training_example(j, *tokenizer_, o, where);
    if (!e.ok()) return bad(e.error().message);
    out.push_back(std::move(e.value()));
  }
  return out;
}

Result<AdapterRecord> FineTuning::publish_run(TrainingRun& run, std::shared_ptr<const LoraWeights> weights,
                                              int64_t step) {
  if (!publish_) return make_error(ErrorCode::kUnavailable, "the node is not serving yet");
  std::error_code ec;
  const std::string runs_dir = options_.data_dir + "/fine_tuning/runs";
  fs::create_directories(runs_dir, ec);
  const std::string tmp = runs_dir + "/publish-" + random_hex(8);
  Result<AdapterRecord> published = make_error(ErrorCode::kInternal, "not published");
  if (Status st = save_peft_adapter(tmp, *weights, options_.base_model); !st.ok()) {
    published = st.error();
  } else {
    published = publish_(Caller{run.options().tenant, false}, run.options().adapter, tmp);
  }
  fs::remove_all(tmp, ec);
  if (!published.ok()) return published.error();
  run.set_published(published.value().id);
  std::lock_guard lock(mu_);
  run_versions_[run.adapter_name()] = {published.value().id, std::move(weights)};
  ++versions_published_;
  log_info("training run {}: published {} at step {}", run.adapter_name(), published.value().id.to_string(), step);
  return published;
}

// ---- files ----

DatasetOptions FineTuning::dataset_options() const {
  DatasetOptions o;
  o.max_tokens = base_->config().max_position_embeddings;
  if (!base_->config().eos_token_ids.empty() && tokenizer_->eos_ids().empty())
    o.eos = int32_t(base_->config().eos_token_ids[0]);
  return o;
}

Result<std::vector<TrainingExample>> FineTuning::examples_of(const std::string& file_id) const {
  auto text = read_file(files_dir() + "/" + file_id + ".jsonl");
  if (!text.ok()) return text.error();
  return parse_training_jsonl(text.value(), *tokenizer_, dataset_options(), file_id);
}

Result<TrainingFileRecord> FineTuning::add_file(const Caller& caller, std::string filename, std::string purpose,
                                                std::string_view bytes) {
  if (purpose != "fine-tune")
    return bad("purpose: this node keeps files for fine-tuning only (\"fine-tune\"), not \"" + purpose + "\"");
  if (bytes.size() > options_.max_file_bytes)
    return bad("file: " + std::to_string(bytes.size()) + " bytes, over the limit of " +
               std::to_string(options_.max_file_bytes));
  auto examples = parse_training_jsonl(bytes, *tokenizer_, dataset_options(), filename.empty() ? "file" : filename);
  if (!examples.ok()) return bad(examples.error().message);
  if (examples.value().empty()) return bad(filename + ": no training example (the file has no non-blank line)");
  TrainingFileRecord f;
  f.id = "file-" + random_hex(24);
  f.tenant = caller.tenant;
  f.filename = filename;
  f.purpose = purpose;
  f.bytes = int64_t(bytes.size());
  f.created_at = unix_s();
  f.examples = int64_t(examples.value().size());
  // The contents first, then the record that makes them visible after a restart.
  MYRIAD_TRY(write_file_atomically(files_dir() + "/" + f.id + ".jsonl", bytes));
  json rec = fine_tuning_file_json(f);
  rec["tenant"] = f.tenant;
  rec["examples"] = f.examples;
  MYRIAD_TRY(write_file_atomically(files_dir() + "/" + f.id + ".json", rec.dump()));
  std::lock_guard lock(mu_);
  files_[f.id] = f;
  return f;
}

Result<std::vector<TrainingFileRecord>> FineTuning::list_files(const Caller& caller) const {
  std::lock_guard lock(mu_);
  std::vector<TrainingFileRecord> out;
  for (const auto& [_, f] : files_)
    if (caller.sees(f.tenant)) out.push_back(f);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.created_at != b.created_at ? a.created_at > b.created_at : a.id < b.id;
  });
  return out;
}

Result<TrainingFileRecord> FineTuning::get_file(const Caller& caller, const std::string& id) const {
  std::lock_guard lock(mu_);
  auto it = files_.find(id);
  if (it == files_.end() || !caller.sees(it->second.tenant))
    return make_error(ErrorCode::kNotFound, "no file '" + id + "'");
  return it->second;
}

Result<std::string> FineTuning::file_content(const Caller& caller, const std::string& id) const {
  MYRIAD_TRY(get_file(caller, id));
  return read_file(files_dir() + "/" + id + ".jsonl");
}

Status FineTuning::delete_file(const Caller& caller, const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = files_.find(id);
  if (it == files_.end() || !caller.sees(it->second.tenant))
    return make_error(ErrorCode::kNotFound, "no file '" + id + "'");
  for (const auto& [_, job] : jobs_)
    if (in_progress(job->status) && (job->training_file == id || job->validation_file == id))
      return bad("file '" + id + "' is in use by " + job->id + " (" + job->status + ")");
  std::error_code ec;
  fs::remove(files_dir() + "/" + id + ".json", ec);  // the record first: no record, no file
  fs::remove(files_dir() + "/" + id + ".jsonl", ec);
  files_.erase(it);
  return Status();
}

// ---- jobs ----

Result<std::shared_ptr<TrainingJob>> FineTuning::build_trainer(const Job& job) const {
  auto spec = parse_request(job.request, options_.base_model, 256);
  if (!spec.ok()) return spec.error();
  auto train = examples_of(job.training_file);
  if (!train.ok()) return train.error();
  std::vector<TrainingExample> eval;
  if (!job.validation_file.empty()) {
    auto e = examples_of(job.validation_file);
    if (!e.ok()) return e.error();
    eval = std::move(e.value());
  }
  TrainingJobConfig config = spec.value().config;
  if (spec.value().batch_size) {
    // OpenAI's batch_size (examples per step) as a token budget: that many of the longest example.
    size_t longest = 1;
    for (const auto& ex : train.value()) longest = std::max(longest, ex.tokens.size());
    config.batch_tokens = int64_t(longest) * *spec.value().batch_size;
  }
  auto created = TrainingJob::create(job.id, base_->config(), config, std::move(train.value()), std::move(eval));
  if (!created.ok()) return created.error();
  std::shared_ptr<TrainingJob> trainer(std::move(created.value()));
  auto resumed = trainer->load_checkpoint(job_dir(job.id) + "/checkpoint.safetensors");
  if (!resumed.ok()) return resumed.error();
  return trainer;
}

void FineTuning::add_event(Job& job, std::string level, std::string type, std::string message, json data) {
  const int64_t seq = job.events.empty() ? 1 : job.events.back().seq + 1;
  job.events.push_back({seq, unix_s(), std::move(level), std::move(type), std::move(message), std::move(data)});
  if (job.events.size() > kMaxEventsKept) job.events.erase(job.events.begin(), job.events.begin() + 1000);
}

void FineTuning::finish(Job& job, const std::string& status) {
  if (job.status == "running") --running_;
  job.status = status;
  job.finished_at = unix_s();
  if (job.trainer) runner_->cancel(job.id);  // no-op for one that ended by itself
  job.trainer.reset();
}

void FineTuning::admit_queued() {
  for (const std::string& id : job_order_) {
    if (running_ >= options_.max_running) return;
    Job& job = *jobs_[id];
    if (job.status != "queued") continue;
    auto trainer = build_trainer(job);
    if (!trainer.ok()) {
      job.status = "running";  // so finish() counts it out evenly
      ++running_;
      job.error = {{"code", "invalid_training_file"}, {"message", trainer.error().message}, {"param", nullptr}};
      add_event(job, "error", "message", "The job failed: " + trainer.error().message);
      finish(job, "failed");
      (void)save_job(job);
      continue;
    }
    job.trainer = trainer.value();
    job.total_steps = job.trainer->total_steps();
    job.steps = job.trainer->steps_done();
    if (job.steps > 0) {
      job.curve = job.trainer->history();
      if (!job.curve.empty()) job.last_loss = job.curve.back().loss;
    }
    job.status = "running";
    ++running_;
    if (job.started_at == 0) job.started_at = unix_s();
    job.run_started = mono_s();
    job.run_tokens = job.run_steps = 0;
    add_event(job, "info", "message",
              job.steps > 0 ? "Fine-tuning job resumed at step " + std::to_string(job.steps)
                            : "Fine-tuning job started: " + std::to_string(job.total_steps) + " steps over " +
                                  std::to_string(job.examples) + " examples");
    (void)save_job(job);
    if (job.trainer->done()) {
      // Killed after its last step's checkpoint, before that version was
      // out: nothing is left to train; publish it now.
      Pending p;
      p.job = job.id;
      p.weights = std::make_shared<const LoraWeights>(to_lora_weights(job.trainer->params(), job.id));
      p.step = job.steps;
      p.train_loss = job.last_loss;
      p.final = true;
      pending_.push_back(std::move(p));
      pending_cv_.notify_one();
      continue;
    }
    runner_->add(job.trainer);
  }
}

Result<json> FineTuning::create_job(const Caller& caller, const json& request) {
  auto spec = parse_request(request, options_.base_model, 256);
  if (!spec.ok()) return spec.error();
  json stored = request;
  if (!stored.contains("seed") || stored["seed"].is_null()) {
    stored["seed"] = int64_t(std::random_device{}() & 0x7fffffff);  // reported, as OpenAI does
  }
  auto job = std::make_unique<Job>();
  job->id = "ftjob-" + random_hex(24);
  job->tenant = caller.tenant;
  job->request = stored;
  job->config = spec.value().config;
  job->config.seed = uint64_t(stored["seed"].get<int64_t>());
  job->training_file = spec.value().training_file;
  job->validation_file = spec.value().validation_file;
  job->adapter_name = spec.value().suffix.empty() ? "ft-" + job->id.substr(6, 8) : spec.value().suffix;
  job->created_at = unix_s();
  {
    std::lock_guard lock(mu_);
    for (const std::string* f : {&job->training_file, &job->validation_file}) {
      if (f->empty()) continue;
      auto it = files_.find(*f);
      if (it == files_.end() || it->second.tenant != caller.tenant)
        return bad((f == &job->training_file ? "training_file" : "validation_file") + std::string(": no file '") +
                   *f + "' of tenant " + caller.tenant);
    }
    job->examples = files_[job->training_file].examples;
  }
  // Built once here so that every error of the data or the config answers the create call.
  auto trainer = build_trainer(*job);
  if (!trainer.ok()) return bad(trainer.error().message);
  job->total_steps = trainer.value()->total_steps();
  std::error_code ec;
  fs::create_directories(job_dir(job->id), ec);
  if (ec) return make_error(ErrorCode::kIo, job_dir(job->id) + ": " + ec.message());
  std::lock_guard lock(mu_);
  job->status = "queued";
  add_event(*job, "info", "message", "Created fine-tuning job: " + job->id);
  add_event(*job, "info", "message",
            "Validated training file: " + job->training_file + " (" + std::to_string(job->examples) + " examples)");
  MYRIAD_TRY(save_job(*job));
  Job& held = *job;
  job_order_.push_back(job->id);
  jobs_[job->id] = std::move(job);
  if (publisher_.joinable()) admit_queued();
  return job_json(held);
}

Result<FineTuning::Job*> FineTuning::job_of(const Caller& caller, const std::string& id) {
  auto it = jobs_.find(id);
  if (it == jobs_.end() || !caller.sees(it->second->tenant))
    return make_error(ErrorCode::kNotFound, "no fine-tuning job '" + id + "'");
  return it->second.get();
}

Result<const FineTuning::Job*> FineTuning::job_of(const Caller& caller, const std::string& id) const {
  auto it = jobs_.find(id);
  if (it == jobs_.end() || !caller.sees(it->second->tenant))
    return make_error(ErrorCode::kNotFound, "no fine-tuning job '" + id + "'");
  return static_cast<const Job*>(it->second.get());
}

Result<json> FineTuning::list_jobs(const Caller& caller, const std::string& after, int64_t limit) const {
  std::lock_guard lock(mu_);
  json data = json::array();
  bool skipping = !after.empty();
  bool more = false;
  for (auto it = job_order_.rbegin(); it != job_order_.rend(); ++it) {
    const Job& job = *jobs_.at(*it);
    if (!caller.sees(job.tenant)) continue;
    if (skipping) {
      if (job.id == after) skipping = false;
      continue;
    }
    if (int64_t(data.size()) == limit) {
      more = true;
      break;
    }
    data.push_back(job_json(job));
  }
  return json{{"object", "list"}, {"data", data}, {"has_more", more}};
}

Result<json> FineTuning::get_job(const Caller& caller, const std::string& id) const {
  std::lock_guard lock(mu_);
  auto job = job_of(caller, id);
  if (!job.ok()) return job.error();
  return job_json(*job.value());
}

Result<json> FineTuning::cancel_job(const Caller& caller, const std::string& id) {
  std::lock_guard lock(mu_);
  auto found = job_of(caller, id);
  if (!found.ok()) return found.error();
  Job& job = *found.value();
  if (in_progress(job.status)) {
    add_event(job, "info", "message", "The job was cancelled at step " + std::to_string(job.steps));
    finish(job, "cancelled");
    (void)save_job(job);
    admit_queued();
  }
  return job_json(job);
}

Result<json> FineTuning::job_events(const Caller& caller, const std::string& id, const std::string& after,
                                    int64_t limit) const {
  std::lock_guard lock(mu_);
  auto found = job_of(caller, id);
  if (!found.ok()) return found.error();
  const Job& job = *found.value();
  json data = json::array();
  bool skipping = !after.empty(), more = false;
  for (auto it = job.events.rbegin(); it != job.events.rend(); ++it) {
    const std::string eid = "ftevent-" + job.id.substr(6) + "-" + std::to_string(it->seq);
    if (skipping) {
      if (eid == after) skipping = false;
      continue;
    }
    if (int64_t(data.size()) == limit) {
      more = true;
      break;
    }
    data.push_back({{"object", "fine_tuning.job.event"},
                    {"id", eid},
                    {"created_at", it->created_at},
                    {"level", it->level},
                    {"message", it->message},
                    {"data", it->data.is_null() ? json::object() : it->data},
                    {"type", it->type}});
  }
  return json{{"object", "list"}, {"data", data}, {"has_more", more}};
}

Result<json> FineTuning::job_checkpoints(const Caller& caller, const std::string& id) const {
  std::lock_guard lock(mu_);
  auto found = job_of(caller, id);
  if (!found.ok()) return found.error();
  const Job& job = *found.value();
  json data = json::array();
  for (auto it = job.versions.rbegin(); it != job.versions.rend(); ++it)
    data.push_back({{"object", "fine_tuning.job.checkpoint"},
                    {"id", "ftckpt-" + job.id.substr(6) + "-" + std::to_string(it->id.version)},
                    {"created_at", it->created_at},
                    {"fine_tuned_model_checkpoint", it->id.to_string()},
                    {"fine_tuning_job_id", job.id},
                    {"step_number", it->step},
                    {"metrics", {{"step", it->step}, {"train_loss", it->train_loss},
                                 {"valid_loss", nan_as_null(it->valid_loss)}}}});
  json out = {{"object", "list"}, {"data", data}, {"has_more", false}};
  if (!data.empty()) {
    out["first_id"] = data.front()["id"];
    out["last_id"] = data.back()["id"];
  }
  return out;
}

Result<std::string> FineTuning::loss_curve(const Caller& caller, const std::string& id,
                                           const std::string& format) const {
  std::lock_guard lock(mu_);
  auto found = job_of(caller, id);
  if (!found.ok()) return found.error();
  const Job& job = *found.value();
  std::vector<std::pair<int64_t, double>> eval;
  for (const Version& v : job.versions)
    if (!std::isnan(v.valid_loss)) eval.emplace_back(v.step, v.valid_loss);
  if (format == "csv") return loss_curve_csv(job.curve, eval);
  if (format == "svg")
    return loss_curve_svg(job.curve, "training loss of " + job.tenant + "/" + job.adapter_name, eval);
  return bad("format: csv or svg, not '" + format + "'");
}

FineTuning::Counts FineTuning::counts() const {
  std::lock_guard lock(mu_);
  Counts c;
  for (const char* status : {"queued", "running", "succeeded", "failed", "cancelled"}) c.jobs[status] = 0;
  for (const auto& [_, job] : jobs_) ++c.jobs[job->status];
  c.trained_tokens = trained_tokens_;
  c.steps = steps_run_;
  c.versions = versions_published_;
  return c;
}

json FineTuning::job_json(const Job& job) const {
  const TrainingJobConfig& c = job.config;
  json targets = json::array();
  for (int m = 0; m < kNumLinearModules; ++m)
    if (c.targets.modules[m]) targets.push_back(linear_module_name(LinearModule(m)));
  const json hp_request = job.request.value("hyperparameters", json::object());
  auto echo = [&](const char* key, json fallback) {
    return hp_request.contains(key) && !hp_request[key].is_null() ? hp_request[key] : fallback;
  };
  const json hyper = {{"n_epochs", echo("n_epochs", c.steps > 0 ? json("auto") : json(c.epochs))},
                      {"batch_size", echo("batch_size", "auto")},
                      {"learning_rate_multiplier", echo("learning_rate_multiplier", c.adamw.lr / kBaseLearningRate)}};
  json versions = json::array();
  for (const Version& v : job.versions) versions.push_back(v.id.to_string());
  json estimated = nullptr;
  if (job.status == "running" && job.run_steps > 0 && job.total_steps > job.steps) {
    const double per_step = (mono_s() - job.run_started) / double(job.run_steps);
    estimated = unix_s() + int64_t(per_step * double(job.total_steps - job.steps));
  }
  return {{"object", "fine_tuning.job"},
          {"id", job.id},
          {"created_at", job.created_at},
          {"error", job.error.is_null() ? json() : job.error},
          {"fine_tuned_model", job.versions.empty() ? json() : json(job.tenant + "/" + job.adapter_name)},
          {"finished_at", job.finished_at ? json(job.finished_at) : json()},
          {"hyperparameters", hyper},
          {"method", {{"type", "supervised"}, {"supervised", {{"hyperparameters", hyper}}}}},
          {"model", options_.base_model},
          {"organization_id", job.tenant},
          {"result_files", json::array()},
          {"status", job.status},
          {"trained_tokens", job.trained_tokens},
          {"training_file", job.training_file},
          {"validation_file", job.validation_file.empty() ? json() : json(job.validation_file)},
          {"integrations", json::array()},
          {"seed", job.request.value("seed", int64_t(0))},
          {"estimated_finish", estimated},
          {"user_provided_suffix", job.request.value("suffix", json())},
          {"myriad",
           {{"adapter", job.tenant + "/" + job.adapter_name},
            {"step", job.steps},
            {"total_steps", job.total_steps},
            {"train_loss", job.curve.empty() ? json() : json(job.last_loss)},
            {"valid_loss", job.versions.empty() ? json() : nan_as_null(job.versions.back().valid_loss)},
            {"versions", versions},
            {"examples", job.examples},
            {"rank", c.targets.rank},
            {"alpha", c.targets.alpha},
            {"targets", targets},
            {"learning_rate", c.adamw.lr},
            {"batch_tokens", c.batch_tokens}}}};
}

Status FineTuning::save_job(const Job& job) const {
  json events = json::array();
  for (const Event& e : job.events)
    events.push_back({{"seq", e.seq}, {"created_at", e.created_at}, {"level", e.level}, {"type", e.type},
                      {"message", e.message}, {"data", e.data}});
  json versions = json::array();
  for (const Version& v : job.versions)
    versions.push_back(
        {{"version", v.id.version}, {"step", v.step}, {"train_loss", v.train_loss}, {"created_at", v.created_at},
         {"valid_loss", nan_as_null(v.valid_loss)}});
  json curve = json::array();
  for (const TrainingStepRecord& r : job.curve)
    curve.push_back({r.step, r.loss, r.lr, r.grad_norm, r.tokens, r.target_tokens});
  const json j = {{"id", job.id},
                  {"tenant", job.tenant},
                  {"status", job.status},
                  {"error", job.error},
                  {"request", job.request},
                  {"training_file", job.training_file},
                  {"validation_file", job.validation_file},
                  {"adapter_name", job.adapter_name},
                  {"created_at", job.created_at},
                  {"started_at", job.started_at},
                  {"finished_at", job.finished_at},
                  {"trained_tokens", job.trained_tokens},
                  {"steps", job.steps},
                  {"total_steps", job.total_steps},
                  {"examples", job.examples},
                  {"train_loss", job.last_loss},
                  {"events", events},
                  {"versions", versions},
                  {"curve", curve}};
  return write_file_atomically(job_dir(job.id) + "/job.json", j.dump());
}

// ---- the worker's callbacks and the publisher ----

void FineTuning::on_progress(const TrainingJob& trainer, const TrainingStepRecord& rec) {
  std::lock_guard lock(mu_);
  auto it = jobs_.find(trainer.name());
  if (it == jobs_.end() || it->second->status != "running") return;
  Job& job = *it->second;
  job.steps = rec.step;
  job.total_steps = trainer.total_steps();
  job.trained_tokens += rec.tokens;
  trained_tokens_ += rec.tokens;
  ++steps_run_;
  job.last_loss = rec.loss;
  // A step trained again (a cluster's job resumed on another worker from its
  // last version) replaces what its first run recorded from there on.
  while (!job.curve.empty() && job.curve.back().step >= rec.step) job.curve.pop_back();
  job.curve.push_back(rec);
  job.run_tokens += rec.tokens;
  ++job.run_steps;
  const double secs = std::max(1e-9, mono_s() - job.run_started);
  const double per_step = secs / double(job.run_steps);
  char msg[160];
  std::snprintf(msg, sizeof msg, "Step %lld/%lld: training loss=%.4f", (long long)rec.step,
                (long long)job.total_steps, rec.loss);
  add_event(job, "info", "metrics", msg,
            {{"step", rec.step},
             {"total_steps", job.total_steps},
             {"train_loss", rec.loss},
             {"learning_rate", rec.lr},
             {"grad_norm", rec.grad_norm},
             {"tokens", rec.tokens},
             {"tokens_per_second", double(job.run_tokens) / secs},
             {"eta_seconds", per_step * double(job.total_steps - rec.step)}});
}

void FineTuning::on_publish(const std::string& name, uint64_t, std::shared_ptr<const LoraWeights> weights,
                            double eval_loss) {
  std::shared_ptr<TrainingJob> trainer;
  Pending p;
  {
    std::lock_guard lock(mu_);
    auto it = jobs_.find(name);
    if (it == jobs_.end() || it->second->status != "running") return;
    trainer = it->second->trainer;
  }
  if (!trainer) return;
  // The worker thread owns the job: its step and loss are this version's.
  p.job = name;
  p.weights = std::move(weights);
  p.step = trainer->steps_done();
  p.train_loss = trainer->history().empty() ? 0.0 : trainer->history().back().loss;
  p.final = trainer->done();
  // The validation file's loss under this version (TrainingWork ran it in
  // units before handing the version out). What the console's eval curve plots.
  p.valid_loss = eval_loss;
  // Between optimizer steps, on the worker thread that owns the job: a copy
  // of the checkpoint a restarted node resumes from. The publisher writes it
  // (and fsyncs it) before it announces the version, so a published version
  // always has its checkpoint and the worker does not wait for the disk.
  p.checkpoint = std::make_shared<const TrainingJob::Snapshot>(trainer->snapshot());
  std::lock_guard lock(mu_);
  pending_.push_back(std::move(p));
  pending_cv_.notify_one();
}

void FineTuning::publisher_loop() {
  for (;;) {
    Pending p;
    {
      std::unique_lock lock(mu_);
      pending_cv_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
      if (stopping_) return;
      p = std::move(pending_.front());
      pending_.pop_front();
    }
    publish_one(p);
  }
}

void FineTuning::publish_one(const Pending& p) {
  std::string tenant, adapter;
  const int64_t step = p.step;
  const double loss = p.train_loss;
  const bool final = p.final;
  {
    std::lock_guard lock(mu_);
    auto it = jobs_.find(p.job);
    if (it == jobs_.end() || it->second->status != "running") return;
    tenant = it->second->tenant;
    adapter = it->second->adapter_name;
  }
  if (p.checkpoint)
    if (Status st = p.checkpoint->save(job_dir(p.job) + "/checkpoint.safetensors"); !st.ok())
      log_error("fine-tuning {}: checkpoint not saved: {}", p.job, st.error().to_string());
  const std::string tmp = job_dir(p.job) + "/publish-" + random_hex(8);
  Result<AdapterRecord> published = make_error(ErrorCode::kInternal, "not published");
  if (Status st = save_peft_adapter(tmp, *p.weights, options_.base_model); !st.ok()) {
    published = st.error();
  } else {
    published = publish_(Caller{tenant, false}, adapter, tmp);
  }
  std::error_code ec;
  fs::remove_all(tmp, ec);
  std::lock_guard lock(mu_);
  auto it = jobs_.find(p.job);
  if (it == jobs_.end()) return;
  Job& job = *it->second;
  if (!published.ok()) {
    log_error("fine-tuning {}: version not published: {}", job.id, published.error().to_string());
    if (job.status == "running") {
      job.error = {{"code", "publish_failed"}, {"message", published.error().message}, {"param", nullptr}};
      add_event(job, "error", "message", "The job failed: " + published.error().message);
      finish(job, "failed");
      (void)save_job(job);
      admit_queued();
    }
    return;
  }
  const AdapterId id = published.value().id;
  job.versions.push_back({id, step, loss, unix_s(), p.valid_loss});
  ++versions_published_;
  job.newest = p.weights;
  add_event(job, "info", "message", "New fine-tuned model version: " + id.to_string() + " (step " +
                                        std::to_string(step) + ")",
            {{"step", step}, {"fine_tuned_model_checkpoint", id.to_string()}, {"valid_loss", nan_as_null(p.valid_loss)}});
  if (final && job.status == "running") {
    add_event(job, "info", "message", "The job has successfully completed");
    finish(job, "succeeded");
    admit_queued();
  }
  (void)save_job(job);
}

}  // namespace myriad::node
