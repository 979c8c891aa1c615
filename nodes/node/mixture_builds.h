// Mixtures of experts built on the node from an uploaded corpus (issue 22,
// docs/moe.md): POST /v1/mixtures with a "training_file" (a /v1/files
// upload of {"text": ...} lines) clusters the corpus (TF-IDF, spherical
// k-means) at once, then trains one expert per cluster as a fine-tuning job
// of its own (FineTuning: beside inference, resumed after a restart), and
// when every job has succeeded stores the router over the experts' last
// versions as the mixture tenant/name.
//
//   training ──(every job succeeded)──> succeeded (the mixture is stored)
//      │──────(a job failed)──────────> failed (the other jobs are cancelled)
//      └──────(cancel)────────────────> cancelled (its jobs are cancelled)
//
// Each build is a record in <data>/mixture_builds/<id>.json (the router,
// the assignments, the job ids), rewritten atomically at each change of
// state; a node restarted mid-build watches its jobs again. A watcher thread
// polls the jobs (every 200 ms) while a build trains. Tenancy as for
// fine-tuning jobs. Thread-safe.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "fine_tuning.h"
#include "runtime/adapter_store.h"
#include "runtime/moe/mixture.h"
#include "runtime/tokenizer.h"
#include "tenants.h"

namespace myriad::node {

class MixtureBuilds {
 public:
  struct Hooks {
    // kInvalidArgument when `name` cannot name a new mixture of the caller's.
    std::function<Status(const Caller&, std::string_view name)> check_name;
    // Stores the router over the experts' versions as the mixture `name`.
    std::function<Result<MixtureRecord>(const Caller&, std::string_view name, const moe::Mixture&,
                                        std::vector<AdapterId>)>
        store_mixture;
  };

  // Reads the stored builds; `jobs` must outlive this.
  static Result<std::unique_ptr<MixtureBuilds>> open(const std::string& data_dir, std::string base_model,
                                                     FineTuning& jobs, std::shared_ptr<const Tokenizer> tokenizer,
                                                     Hooks hooks);
  ~MixtureBuilds();  // stops the watcher

  // Starts watching the builds that train (also those a restart found).
  void start();

  // POST /v1/mixtures with "training_file": {"name", "training_file", "k",
  // "seed"?, "top_k"?, "temperature"?, "hyperparameters"? (as a fine-tuning
  // job's, for every expert)}. Clusters and creates the jobs before it
  // answers; every error of the request, the corpus or the jobs answers here
  // and leaves nothing behind.
  Result<nlohmann::json> create(const Caller& caller, const nlohmann::json& request);
  // Newest first.
  Result<nlohmann::json> list(const Caller& caller) const;
  Result<nlohmann::json> get(const Caller& caller, const std::string& id) const;
  // A build already ended is answered as it is.
  Result<nlohmann::json> cancel(const Caller& caller, const std::string& id);
  // The cluster of every corpus line, in order (a JSON array).
  Result<nlohmann::json> assignments(const Caller& caller, const std::string& id) const;

 private:
  struct Build;
  MixtureBuilds() = default;
  Status save(const Build& b) const;
  nlohmann::json build_json(const Build& b) const;
  Result<Build*> build_of(const Caller& caller, const std::string& id) const;
  void watch_loop();
  void advance(Build& b);  // with mu_ held: a training build's jobs decide its state

  std::string dir_;
  std::string base_model_;
  FineTuning* jobs_ = nullptr;
  std::shared_ptr<const Tokenizer> tokenizer_;
  Hooks hooks_;
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Build>> builds_;
  std::vector<std::string> order_;  // creation order
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread watcher_;
};

}  // namespace myriad::node
