// The registry's in-memory view of the adapter catalog: every published
// version by (tenant, name), so resolving a name on a request's path costs a
// map lookup instead of an SQLite query (a burst of 400 requests queued
// ~260 ms behind 800 queries in one registry thread). The registry actor is
// the store's only writer in a node, so it keeps the index in step: filled
// from the store at start, then told of each publish and removal after the
// store has committed it.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "runtime/adapter_id.h"
#include "runtime/adapter_store.h"

namespace myriad::actors {

class RegistryIndex {
 public:
  void add(const AdapterRecord& record);
  void remove(const AdapterId& id);
  // Version 0 = the newest; nullopt when there is no such version.
  std::optional<AdapterRecord> resolve(const AdapterName& name) const;
  // Oldest first; empty when the adapter does not exist.
  std::vector<AdapterRecord> versions(const std::string& tenant, const std::string& name) const;
  // Ordered by tenant, name, version, as the store lists them; "" = every tenant.
  std::vector<AdapterRecord> list(const std::string& tenant) const;

 private:
  using Key = std::pair<std::string, std::string>;  // (tenant, name)
  std::map<Key, std::map<uint64_t, AdapterRecord>> adapters_;
};

}  // namespace myriad::actors
