#include "runtime/adapter_resolver.h"

#include <charconv>

namespace myriad {

void StaticAdapterResolver::put(std::string name, uint64_t version, std::shared_ptr<const LoraWeights> weights) {
  auto v = std::make_shared<AdapterVersion>();
  v->name = name;
  v->version = version;
  v->weights = std::move(weights);
  table_[std::move(name)] = std::move(v);
}

void StaticAdapterResolver::remove(const std::string& name) { table_.erase(name); }

Result<std::shared_ptr<const AdapterVersion>> StaticAdapterResolver::resolve(std::string_view adapter) {
  std::string_view name = adapter;
  bool pinned = false;
  uint64_t want = 0;
  if (const size_t at = adapter.rfind('@'); at != std::string_view::npos) {
    name = adapter.substr(0, at);
    const std::string_view num = adapter.substr(at + 1);
    auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), want);
    if (num.empty() || ec != std::errc() || p != num.data() + num.size())
      return make_error(ErrorCode::kInvalidArgument,
                        "adapter '" + std::string(adapter) + "': version after '@' is not a number");
    pinned = true;
  }
  auto it = table_.find(name);
  if (it == table_.end()) return make_error(ErrorCode::kNotFound, "unknown adapter '" + std::string(name) + "'");
  if (pinned && it->second->version != want)
    return make_error(ErrorCode::kNotFound, "adapter '" + std::string(name) + "' has no version " +
                                                std::to_string(want) + " (current is " +
                                                std::to_string(it->second->version) + ")");
  return std::shared_ptr<const AdapterVersion>(it->second);
}

}  // namespace myriad
