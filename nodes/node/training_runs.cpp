// TrainingRuns (training_runs.h).
#include "training_runs.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "node_files.h"

namespace myriad::node {

namespace {
Error not_found(const std::string& id) { return make_error(ErrorCode::kNotFound, "no training run " + id); }
}  // namespace

nlohmann::json TrainingRuns::with_id(const std::string& id, const TrainingRun& run) {
  nlohmann::json j = run.describe();
  j["id"] = id;
  return j;
}

Result<nlohmann::json> TrainingRuns::add(const Caller& caller, std::shared_ptr<TrainingRun> run) {
  std::lock_guard lock(mu_);
  if (runs_.size() >= max_open_)
    return make_error(ErrorCode::kResourceExhausted, "this node holds " + std::to_string(max_open_) +
                                                         " training runs, its limit: close one first (DELETE)");
  const std::string id = "run-" + random_hex(24);
  runs_[id] = Open{caller.tenant, std::move(run), next_++};
  return with_id(id, *runs_[id].run);
}

Result<std::shared_ptr<TrainingRun>> TrainingRuns::get(const Caller& caller, const std::string& id) const {
  std::lock_guard lock(mu_);
  auto it = runs_.find(id);
  if (it == runs_.end() || !caller.sees(it->second.tenant)) return not_found(id);
  return it->second.run;
}

Result<nlohmann::json> TrainingRuns::describe(const Caller& caller, const std::string& id) const {
  auto run = get(caller, id);
  if (!run.ok()) return run.error();
  return with_id(id, *run.value());
}

nlohmann::json TrainingRuns::list(const Caller& caller) const {
  std::lock_guard lock(mu_);
  std::vector<std::pair<uint64_t, nlohmann::json>> seen;
  for (const auto& [id, open] : runs_)
    if (caller.sees(open.tenant)) seen.emplace_back(open.opened, with_id(id, *open.run));
  std::sort(seen.begin(), seen.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  nlohmann::json data = nlohmann::json::array();
  for (auto& [_, j] : seen) data.push_back(std::move(j));
  return {{"object", "list"}, {"data", data}};
}

Status TrainingRuns::close(const Caller& caller, const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = runs_.find(id);
  if (it == runs_.end() || !caller.sees(it->second.tenant)) return not_found(id);
  runs_.erase(it);  // calls already posted keep the run alive until they answer
  return ok_status();
}

}  // namespace myriad::node
