// The training runs a node's HTTP API keeps open, by id (the RPC API holds
// each run as a capability of its connection instead): POST
// /v1/training_runs opens one and answers its id, the calls name it in
// their path, DELETE closes it. A run lives until it is closed or the node
// stops (its published versions stay in the store). Tenancy as for jobs: a
// caller sees only its tenant's runs (an admin sees all); another tenant's
// is kNotFound like a missing one. At most `max_open` runs at once (beyond:
// kResourceExhausted), since each holds an adapter, its gradients and AdamW
// state in memory. Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "runtime/result.h"
#include "tenants.h"
#include "training_run.h"

namespace myriad::node {

class TrainingRuns {
 public:
  explicit TrainingRuns(size_t max_open = 64) : max_open_(max_open) {}

  // Keeps `run` under a new id ("run-..."); answers its description with the id.
  Result<nlohmann::json> add(const Caller& caller, std::shared_ptr<TrainingRun> run);
  Result<std::shared_ptr<TrainingRun>> get(const Caller& caller, const std::string& id) const;
  // The run's description with its id.
  Result<nlohmann::json> describe(const Caller& caller, const std::string& id) const;
  // The caller's runs, oldest first: {"object": "list", "data": [...]}.
  nlohmann::json list(const Caller& caller) const;
  Status close(const Caller& caller, const std::string& id);

 private:
  struct Open {
    std::string tenant;
    std::shared_ptr<TrainingRun> run;
    uint64_t opened = 0;  // the order of add(): what list() answers in
  };
  static nlohmann::json with_id(const std::string& id, const TrainingRun& run);

  size_t max_open_;
  mutable std::mutex mu_;
  std::map<std::string, Open> runs_;  // by id
  uint64_t next_ = 1;
};

}  // namespace myriad::node
