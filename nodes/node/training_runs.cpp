// TrainingRuns (training_runs.h).
#include "training_runs.h"

#include <chrono>
#include <cstdio>

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
  // Unique within the process and ordered: the clock's microseconds, then a counter.
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  char id[48];
  std::snprintf(id, sizeof id, "run-%016llx%04llx", (unsigned long long)us, (unsigned long long)(next_++ & 0xffff));
  runs_[id] = Open{caller.tenant, std::move(run)};
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
  nlohmann::json data = nlohmann::json::array();
  for (const auto& [id, open] : runs_)
    if (caller.sees(open.tenant)) data.push_back(with_id(id, *open.run));
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
