#include "runtime/adapter_source.h"

namespace myriad {

void StaticAdapterSource::put(const AdapterId& id, std::shared_ptr<const LoraWeights> weights) {
  std::lock_guard lock(mu_);
  table_[id] = std::move(weights);
}

void StaticAdapterSource::remove(const AdapterId& id) {
  std::lock_guard lock(mu_);
  table_.erase(id);
}

void StaticAdapterSource::fetch(const AdapterId& id, FetchDone done) {
  std::shared_ptr<const LoraWeights> w;
  bool found = false;
  {
    std::lock_guard lock(mu_);
    if (auto it = table_.find(id); it != table_.end()) {
      w = it->second;
      found = true;
    }
  }
  if (!found) {
    done(make_error(ErrorCode::kNotFound, "unknown adapter " + id.to_string()));
    return;
  }
  done(std::move(w));
}

CachedAdapterSource::CachedAdapterSource(AdapterCache& cache) : cache_(cache) {
  worker_ = std::thread([this] { run(); });
}

CachedAdapterSource::~CachedAdapterSource() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  worker_.join();
}

void CachedAdapterSource::fetch(const AdapterId& id, FetchDone done) {
  {
    std::lock_guard lock(mu_);
    if (!stop_) {
      queue_.emplace_back(id, std::move(done));
      cv_.notify_one();
      return;
    }
  }
  done(make_error(ErrorCode::kCancelled, "adapter source is shutting down; " + id.to_string() + " not fetched"));
}

void CachedAdapterSource::run() {
  for (;;) {
    std::pair<AdapterId, FetchDone> job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) break;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    job.second(cache_.get(job.first));
  }
  // Queued fetches are answered, never dropped.
  std::deque<std::pair<AdapterId, FetchDone>> left;
  {
    std::lock_guard lock(mu_);
    left.swap(queue_);
  }
  for (auto& [id, done] : left)
    done(make_error(ErrorCode::kCancelled, "adapter source is shutting down; " + id.to_string() + " not fetched"));
}

}  // namespace myriad
