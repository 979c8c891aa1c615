// Host-memory LRU cache of adapters (see runtime/adapter_cache.h).
#include "runtime/adapter_cache.h"

namespace myriad {

AdapterLoader staging_loader(AdapterLoader load, const Executor& executor) {
  return [load = std::move(load), &executor]() -> Result<std::shared_ptr<const LoraWeights>> {
    auto weights = load();
    if (!weights.ok()) return weights;
    return executor.stage_adapter(std::move(weights).value());
  };
}

Status AdapterCache::add(const AdapterId& key, AdapterLoader loader) {
  std::lock_guard lock(mu_);
  if (entries_.count(key)) return make_error(ErrorCode::kInvalidArgument, "adapter " + key.to_string() + " is already registered");
  entries_[key].loader = std::move(loader);
  return ok_status();
}

Status AdapterCache::remove(const AdapterId& key) {
  std::unique_lock lock(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return make_error(ErrorCode::kNotFound, "adapter " + key.to_string() + " is not registered");
  // Wait out a load in flight; the entry may be removed meanwhile, so re-find.
  loaded_.wait(lock, [&] { it = entries_.find(key); return it == entries_.end() || !it->second.loading; });
  if (it == entries_.end()) return make_error(ErrorCode::kNotFound, "adapter " + key.to_string() + " is not registered");
  used_ -= it->second.bytes;
  entries_.erase(it);
  return ok_status();
}

bool AdapterCache::make_room(size_t need) {
  while (used_ + need > budget_) {
    Entry* victim = nullptr;
    for (auto& [k, e] : entries_) {
      if (e.weights && !e.pinned && (!victim || e.last_use < victim->last_use)) victim = &e;
    }
    if (!victim) return false;
    used_ -= victim->bytes;
    victim->bytes = 0;
    victim->weights.reset();
    ++stats_.evictions;
  }
  return true;
}

Result<std::shared_ptr<const LoraWeights>> AdapterCache::get(const AdapterId& key) {
  std::unique_lock lock(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return make_error(ErrorCode::kNotFound, "adapter " + key.to_string() + " is not registered");
  // Another thread may be loading it: wait, then take its result (or retry).
  loaded_.wait(lock, [&] { it = entries_.find(key); return it == entries_.end() || !it->second.loading; });
  if (it == entries_.end()) return make_error(ErrorCode::kNotFound, "adapter " + key.to_string() + " was removed");
  if (it->second.weights) {
    ++stats_.hits;
    it->second.last_use = ++clock_;
    return it->second.weights;
  }
  ++stats_.misses;
  it->second.loading = true;
  AdapterLoader loader = it->second.loader;
  lock.unlock();
  Result<std::shared_ptr<const LoraWeights>> r = loader();  // disk I/O outside the lock
  lock.lock();
  it = entries_.find(key);  // still there: remove() waits while loading
  it->second.loading = false;
  loaded_.notify_all();
  if (!r.ok()) {
    ++stats_.load_failures;
    return r.error();
  }
  Entry& e = it->second;
  const size_t bytes = r.value()->bytes();
  if (e.pinned || make_room(bytes)) {
    e.weights = r.value();
    e.bytes = bytes;
    e.last_use = ++clock_;
    used_ += bytes;
  } else {
    ++stats_.uncached;
  }
  return r;
}

Status AdapterCache::pin(const AdapterId& key) {
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end()) return make_error(ErrorCode::kNotFound, "adapter " + key.to_string() + " is not registered");
    it->second.pinned = true;
  }
  auto r = get(key);
  if (!r.ok()) {
    unpin(key);
    return r.error();
  }
  return ok_status();
}

void AdapterCache::unpin(const AdapterId& key) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return;
  it->second.pinned = false;
  make_room(0);  // pinned bytes may have held the cache above budget
}

Status AdapterCache::unload(const AdapterId& key) {
  std::unique_lock lock(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return make_error(ErrorCode::kNotFound, "adapter " + key.to_string() + " is not registered");
  if (it->second.pinned) return make_error(ErrorCode::kInvalidArgument, "adapter " + key.to_string() + " is pinned; unpin it before unloading");
  loaded_.wait(lock, [&] { it = entries_.find(key); return it == entries_.end() || !it->second.loading; });
  if (it == entries_.end()) return make_error(ErrorCode::kNotFound, "adapter " + key.to_string() + " was removed");
  used_ -= it->second.bytes;
  it->second.bytes = 0;
  it->second.weights.reset();
  return ok_status();
}

bool AdapterCache::registered(const AdapterId& key) const {
  std::lock_guard lock(mu_);
  return entries_.count(key) > 0;
}
std::vector<AdapterId> AdapterCache::cached_ids() const {
  std::lock_guard lock(mu_);
  std::vector<AdapterId> out;
  for (const auto& [id, e] : entries_)
    if (e.weights) out.push_back(id);
  return out;
}

bool AdapterCache::cached(const AdapterId& key) const {
  std::lock_guard lock(mu_);
  auto it = entries_.find(key);
  return it != entries_.end() && it->second.weights != nullptr;
}
size_t AdapterCache::num_registered() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}
size_t AdapterCache::num_cached() const {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (const auto& [k, e] : entries_) n += e.weights != nullptr;
  return n;
}
size_t AdapterCache::bytes_used() const {
  std::lock_guard lock(mu_);
  return used_;
}
AdapterCache::Stats AdapterCache::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace myriad
