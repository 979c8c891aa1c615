#include "actors/registry_index.h"

namespace myriad::actors {

void RegistryIndex::add(const AdapterRecord& record) {
  adapters_[{record.id.tenant, record.id.name}][record.id.version] = record;
}

void RegistryIndex::remove(const AdapterId& id) {
  auto it = adapters_.find({id.tenant, id.name});
  if (it == adapters_.end()) return;
  it->second.erase(id.version);
  if (it->second.empty()) adapters_.erase(it);
}

std::optional<AdapterRecord> RegistryIndex::resolve(const AdapterName& name) const {
  auto it = adapters_.find({name.tenant, name.name});
  if (it == adapters_.end() || it->second.empty()) return std::nullopt;
  if (name.version == 0) return it->second.rbegin()->second;
  auto v = it->second.find(name.version);
  if (v == it->second.end()) return std::nullopt;
  return v->second;
}

std::vector<AdapterRecord> RegistryIndex::versions(const std::string& tenant, const std::string& name) const {
  std::vector<AdapterRecord> out;
  auto it = adapters_.find({tenant, name});
  if (it == adapters_.end()) return out;
  for (const auto& [version, record] : it->second) out.push_back(record);
  return out;
}

std::vector<AdapterRecord> RegistryIndex::list(const std::string& tenant) const {
  std::vector<AdapterRecord> out;
  auto it = tenant.empty() ? adapters_.begin() : adapters_.lower_bound({tenant, std::string()});
  for (; it != adapters_.end() && (tenant.empty() || it->first.first == tenant); ++it)
    for (const auto& [version, record] : it->second) out.push_back(record);
  return out;
}

}  // namespace myriad::actors
