#include "mixture_builds.h"

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "node_files.h"
#include "runtime/atomic_file.h"
#include "runtime/log.h"
#include "runtime/moe/corpus_clusters.h"
#include "runtime/step_plan.h"

namespace myriad::node {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr int64_t kMaxExperts = 64;


Error bad(std::string what) { return make_error(ErrorCode::kInvalidArgument, std::move(what)); }


bool ended(const std::string& status) { return status != "training"; }

}  // namespace

struct MixtureBuilds::Build {
  std::string id, tenant, name;  // name: the mixture's, without the tenant
  std::string status = "training";
  json error;                    // null, or {"code", "message"}
  int64_t created_at = 0, finished_at = 0;
  json request;                  // as POSTed
  moe::Mixture router;           // experts described; their losses filled when the jobs end
  std::vector<int32_t> assignment;
  std::vector<std::string> jobs, files;  // per expert
  std::string mixture;           // tenant/name once stored
  std::vector<std::string> experts;  // their versions once stored
};

Result<std::unique_ptr<MixtureBuilds>> MixtureBuilds::open(const std::string& data_dir, std::string base_model,
                                                           FineTuning& jobs, std::shared_ptr<const Tokenizer> tokenizer,
                                                           Hooks hooks) {
  std::unique_ptr<MixtureBuilds> m(new MixtureBuilds());
  m->dir_ = data_dir + "/mixture_builds";
  m->base_model_ = std::move(base_model);
  m->jobs_ = &jobs;
  m->tokenizer_ = std::move(tokenizer);
  m->hooks_ = std::move(hooks);
  std::error_code ec;
  fs::create_directories(m->dir_, ec);
  if (ec) return make_error(ErrorCode::kIo, m->dir_ + ": " + ec.message());
  std::vector<std::pair<int64_t, std::unique_ptr<Build>>> found;
  for (const auto& entry : fs::directory_iterator(m->dir_, ec)) {
    const fs::path p = entry.path();
    if (p.extension() != ".json" || p.filename().string().find(".tmp-") != std::string::npos) continue;
    auto text = read_file(p.string());
    if (!text.ok()) return text.error();
    const json j = json::parse(text.value(), nullptr, /*allow_exceptions=*/false);
    auto router = j.is_object() && j.contains("router") ? moe::Mixture::from_json(j["router"], p.string())
                                                         : Result<moe::Mixture>(make_error(ErrorCode::kBadFile, p.string() + ": not a mixture build record"));
    if (!router.ok()) return router.error();
    auto b = std::make_unique<Build>();
    try {
      b->id = j.at("id").get<std::string>();
      b->tenant = j.at("tenant").get<std::string>();
      b->name = j.at("name").get<std::string>();
      b->status = j.at("status").get<std::string>();
      b->error = j.at("error");
      b->created_at = j.at("created_at").get<int64_t>();
      b->finished_at = j.at("finished_at").get<int64_t>();
      b->request = j.at("request");
      b->assignment = j.at("assignment").get<std::vector<int32_t>>();
      b->jobs = j.at("jobs").get<std::vector<std::string>>();
      b->files = j.at("files").get<std::vector<std::string>>();
      b->mixture = j.at("mixture").get<std::string>();
      b->experts = j.at("experts").get<std::vector<std::string>>();
    } catch (const json::exception& e) {
      return make_error(ErrorCode::kBadFile, p.string() + ": " + e.what());
    }
    if (b->jobs.size() != router.value().experts.size())
      return make_error(ErrorCode::kBadFile, p.string() + ": the router and the jobs disagree");
    b->router = std::move(router.value());
    found.emplace_back(b->created_at, std::move(b));
  }
  std::stable_sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [at, b] : found) {
    m->order_.push_back(b->id);
    m->builds_[b->id] = std::move(b);
  }
  return m;
}

MixtureBuilds::~MixtureBuilds() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (watcher_.joinable()) watcher_.join();
}

void MixtureBuilds::start() {
  if (!watcher_.joinable()) watcher_ = std::thread([this] { watch_loop(); });
}

Status MixtureBuilds::save(const Build& b) const {
  const json j = {{"id", b.id},         {"tenant", b.tenant},         {"name", b.name},
                  {"status", b.status}, {"error", b.error},           {"created_at", b.created_at},
                  {"finished_at", b.finished_at}, {"request", b.request}, {"router", b.router.to_json()},
                  {"assignment", b.assignment},   {"jobs", b.jobs},       {"files", b.files},
                  {"mixture", b.mixture},         {"experts", b.experts}};
  return write_file_atomically(dir_ + "/" + b.id + ".json", j.dump(-1, ' ', false, json::error_handler_t::replace));
}

json MixtureBuilds::build_json(const Build& b) const {
  const Caller owner{b.tenant, false};
  json clusters = json::array();
  int64_t step = 0, total = 0;
  for (size_t c = 0; c < b.jobs.size(); ++c) {
    const moe::MixtureExpert& e = b.router.experts[c];
    json row = {{"name", e.name}, {"lines", e.lines}, {"terms", e.terms}, {"samples", e.samples},
                {"adapter", b.tenant + "/" + b.name + "." + e.name}, {"job", b.jobs[c]}};
    if (auto job = jobs_->get_job(owner, b.jobs[c]); job.ok()) {
      const json& my = job.value()["myriad"];
      row["status"] = job.value()["status"];
      row["step"] = my["step"];
      row["total_steps"] = my["total_steps"];
      row["train_loss"] = my["train_loss"];
      step += my["step"].get<int64_t>();
      total += my["total_steps"].get<int64_t>();
    } else {
      row["status"] = "missing";
    }
    clusters.push_back(std::move(row));
  }
  return {{"object", "mixture.build"},
          {"id", b.id},
          {"name", b.tenant + "/" + b.name},
          {"status", b.status},
          {"error", b.error},
          {"created_at", b.created_at},
          {"finished_at", b.finished_at ? json(b.finished_at) : json()},
          {"training_file", b.request.value("training_file", "")},
          {"k", b.router.k()},
          {"lines", int64_t(b.assignment.size())},
          {"silhouette", b.router.silhouette},
          {"routing", {{"top_k", b.router.routing.top_k}, {"temperature", b.router.routing.temperature}}},
          {"progress", {{"step", step}, {"total_steps", total}}},
          {"clusters", clusters},
          {"mixture", b.mixture.empty() ? json() : json(b.mixture)},
          {"experts", b.experts}};
}

Result<MixtureBuilds::Build*> MixtureBuilds::build_of(const Caller& caller, const std::string& id) const {
  auto it = builds_.find(id);
  if (it == builds_.end() || !caller.sees(it->second->tenant))
    return make_error(ErrorCode::kNotFound, "no mixture build '" + id + "'");
  return it->second.get();
}

Result<json> MixtureBuilds::create(const Caller& caller, const json& r) {
  if (!r.is_object()) return bad("the body must be a JSON object");
  if (!r.contains("name") || !r["name"].is_string()) return bad("name: required, the mixture's name");
  std::string name = r["name"].get<std::string>();
  if (const size_t slash = name.find('/'); slash != std::string::npos) {
    if (name.substr(0, slash) != caller.tenant)
      return bad("name: a build makes a mixture of the caller's own tenant '" + caller.tenant + "', not '" + name +
                 "'");
    name = name.substr(slash + 1);
  }
  if (Status st = hooks_.check_name(caller, name); !st.ok()) return bad("name: " + st.error().message);
  if (!r.contains("training_file") || !r["training_file"].is_string())
    return bad("training_file: required, the id of a corpus uploaded to /v1/files ({\"text\": ...} a line)");
  const std::string file = r["training_file"].get<std::string>();
  if (!r.contains("k") || !r["k"].is_number_integer() || r["k"].get<int64_t>() < 1 ||
      r["k"].get<int64_t>() > kMaxExperts)
    return bad("k: required, the number of clusters (experts), an integer in [1, " + std::to_string(kMaxExperts) +
               "]");
  const int64_t k = r["k"].get<int64_t>();
  uint64_t seed = 0;
  if (r.contains("seed") && !r["seed"].is_null()) {
    if (!r["seed"].is_number_integer() || r["seed"].get<int64_t>() < 0) return bad("seed: expected an integer >= 0");
    seed = uint64_t(r["seed"].get<int64_t>());
  }
  moe::RoutingOptions routing;
  if (r.contains("top_k") && !r["top_k"].is_null()) {
    const int64_t most = std::min<int64_t>(k, kMaxAdaptersPerRow);
    if (!r["top_k"].is_number_integer() || r["top_k"].get<int64_t>() < 1 || r["top_k"].get<int64_t>() > most)
      return bad("top_k: expected an integer in [1, " + std::to_string(most) + "]");
    routing.top_k = r["top_k"].get<int32_t>();
  }
  if (r.contains("temperature") && !r["temperature"].is_null()) {
    if (!r["temperature"].is_number() || !(r["temperature"].get<double>() > 0))
      return bad("temperature: expected a number > 0");
    routing.temperature = r["temperature"].get<double>();
  }
  json hyper = json::object();
  if (r.contains("hyperparameters") && !r["hyperparameters"].is_null()) {
    if (!r["hyperparameters"].is_object()) return bad("hyperparameters: expected an object");
    hyper = r["hyperparameters"];
  }

  auto content = jobs_->file_content(caller, file);
  if (!content.ok()) return bad("training_file: " + content.error().message);
  auto texts = moe::parse_corpus_jsonl(content.value(), file);
  if (!texts.ok()) return bad("training_file: " + texts.error().message);
  auto clustered = moe::cluster_corpus_tfidf(texts.value(), *tokenizer_, k, seed);
  if (!clustered.ok()) return bad(clustered.error().message);

  auto b = std::make_unique<Build>();
  b->id = "mixbuild-" + random_hex(24);
  b->tenant = caller.tenant;
  b->name = name;
  b->created_at = unix_s();
  b->request = r;
  b->router = std::move(clustered->mixture);
  b->router.base_model = base_model_;
  b->router.routing = routing;
  b->assignment = std::move(clustered->assignment);

  // One corpus file and one job per cluster; any error undoes what was made.
  auto undo = [&] {
    for (const std::string& j : b->jobs) (void)jobs_->cancel_job(caller, j);
    for (const std::string& f : b->files) (void)jobs_->delete_file(caller, f);
  };
  for (int64_t c = 0; c < k; ++c) {
    const moe::MixtureExpert& e = b->router.experts[size_t(c)];
    std::string lines;
    for (size_t i = 0; i < b->assignment.size(); ++i)
      if (b->assignment[i] == c) lines += json{{"text", texts.value()[i]}}.dump() + "\n";
    auto f = jobs_->add_file(caller, name + "." + e.name + ".jsonl", "fine-tune", lines);
    if (!f.ok()) {
      undo();
      return bad(e.name + ": " + f.error().message);
    }
    b->files.push_back(f.value().id);
    const json job_request = {{"model", base_model_},
                              {"training_file", f.value().id},
                              {"suffix", name + "." + e.name},
                              {"seed", int64_t(seed + uint64_t(c))},
                              {"hyperparameters", hyper}};
    auto job = jobs_->create_job(caller, job_request);
    if (!job.ok()) {
      undo();
      return bad(e.name + ": " + job.error().message);
    }
    b->jobs.push_back(job.value()["id"].get<std::string>());
  }
  std::lock_guard lock(mu_);
  if (Status st = save(*b); !st.ok()) {
    undo();
    return st.error();
  }
  log_info("mixture build {}: {}/{} from {} ({} lines in {} clusters, silhouette {:.3f})", b->id, b->tenant, b->name,
           file, b->assignment.size(), k, b->router.silhouette);
  Build& held = *b;
  order_.push_back(b->id);
  builds_[b->id] = std::move(b);
  cv_.notify_all();
  return build_json(held);
}

Result<json> MixtureBuilds::list(const Caller& caller) const {
  std::lock_guard lock(mu_);
  json data = json::array();
  for (auto it = order_.rbegin(); it != order_.rend(); ++it) {
    const Build& b = *builds_.at(*it);
    if (caller.sees(b.tenant)) data.push_back(build_json(b));
  }
  return json{{"object", "list"}, {"data", data}, {"has_more", false}};
}

Result<json> MixtureBuilds::get(const Caller& caller, const std::string& id) const {
  std::lock_guard lock(mu_);
  auto b = build_of(caller, id);
  if (!b.ok()) return b.error();
  return build_json(*b.value());
}

Result<json> MixtureBuilds::assignments(const Caller& caller, const std::string& id) const {
  std::lock_guard lock(mu_);
  auto b = build_of(caller, id);
  if (!b.ok()) return b.error();
  return json(b.value()->assignment);
}

Result<json> MixtureBuilds::cancel(const Caller& caller, const std::string& id) {
  std::lock_guard lock(mu_);
  auto found = build_of(caller, id);
  if (!found.ok()) return found.error();
  Build& b = *found.value();
  if (!ended(b.status)) {
    for (const std::string& j : b.jobs) (void)jobs_->cancel_job(Caller{b.tenant, false}, j);
    b.status = "cancelled";
    b.finished_at = unix_s();
    if (Status st = save(b); !st.ok()) return st.error();
  }
  return build_json(b);
}

void MixtureBuilds::advance(Build& b) {
  const Caller owner{b.tenant, false};
  std::vector<AdapterId> experts;
  std::string failure;
  bool all_done = true;
  for (size_t c = 0; c < b.jobs.size(); ++c) {
    auto job = jobs_->get_job(owner, b.jobs[c]);
    const std::string expert = b.router.experts[c].name;
    if (!job.ok()) {
      failure = expert + ": its job " + b.jobs[c] + " is gone";
      break;
    }
    const std::string status = job.value()["status"].get<std::string>();
    if (status == "failed" || status == "cancelled") {
      const json& err = job.value()["error"];
      failure = expert + ": its job " + b.jobs[c] + " " + status +
                (err.is_object() && err.contains("message") ? ": " + err["message"].get<std::string>() : "");
      break;
    }
    if (status != "succeeded") {
      all_done = false;
      continue;
    }
    const json& versions = job.value()["myriad"]["versions"];
    auto id = versions.empty() ? Result<AdapterId>(make_error(ErrorCode::kInternal, "no version published"))
                               : parse_adapter_id(versions.back().get<std::string>());
    if (!id.ok()) {
      failure = expert + ": " + id.error().message;
      break;
    }
    experts.push_back(id.value());
    if (job.value()["myriad"]["train_loss"].is_number())
      b.router.experts[c].train_loss_last = job.value()["myriad"]["train_loss"].get<double>();
  }
  if (failure.empty() && !all_done) return;
  if (failure.empty()) {
    auto stored = hooks_.store_mixture(owner, b.tenant + "/" + b.name, b.router, experts);
    if (stored.ok()) {
      b.status = "succeeded";
      b.mixture = stored.value().qualified_name();
      for (const AdapterId& e : experts) b.experts.push_back(e.to_string());
      log_info("mixture build {}: stored the mixture {} over {} experts", b.id, b.mixture, experts.size());
    } else {
      failure = "storing the mixture: " + stored.error().message;
    }
  }
  if (!failure.empty()) {
    for (const std::string& j : b.jobs) (void)jobs_->cancel_job(owner, j);
    b.status = "failed";
    b.error = {{"code", "expert_failed"}, {"message", failure}};
    log_warn("mixture build {}: failed: {}", b.id, failure);
  }
  b.finished_at = unix_s();
  if (Status st = save(b); !st.ok()) log_error("mixture build {}: {}", b.id, st.error().to_string());
}

void MixtureBuilds::watch_loop() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    bool training = false;
    for (auto& [id, b] : builds_) {
      if (!ended(b->status)) advance(*b);
      training = training || !ended(b->status);
    }
    // Polls its jobs while a build trains; else sleeps until create() adds one.
    if (training) {
      cv_.wait_for(lock, std::chrono::milliseconds(200));
    } else {
      cv_.wait(lock);
    }
  }
}

}  // namespace myriad::node
