// "Which version of this adapter is current?": the scheduler asks once per
// request, at admission, and pins the request to the answer (a newer
// version published later does not change a request already admitted).
// The catalog / adapter store implements it; StaticAdapterResolver is a
// fixed table for tests, benches and the simulator.
// Implementations are called from the engine thread only.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "runtime/lora_weights.h"
#include "runtime/result.h"

namespace myriad {

// One immutable published version of an adapter. Two requests share an
// adapter slot only if they pin the same (name, version).
struct AdapterVersion {
  std::string name;        // without any "@N" suffix
  uint64_t version = 0;
  std::shared_ptr<const LoraWeights> weights;  // what a slot is loaded from (may be null for a simulated executor)

  std::string key() const { return name + "@" + std::to_string(version); }
};

class AdapterResolver {
 public:
  virtual ~AdapterResolver() = default;
  // `adapter` is never empty (the base model is not resolved). Unknown
  // adapter => kNotFound naming it.
  virtual Result<std::shared_ptr<const AdapterVersion>> resolve(std::string_view adapter) = 0;
};

// A fixed name -> current version table. "name@N" resolves only if N is the
// version held.
class StaticAdapterResolver final : public AdapterResolver {
 public:
  // Replaces any version held under that name (a new "current" version).
  void put(std::string name, uint64_t version, std::shared_ptr<const LoraWeights> weights);
  void remove(const std::string& name);
  Result<std::shared_ptr<const AdapterVersion>> resolve(std::string_view adapter) override;

 private:
  std::map<std::string, std::shared_ptr<const AdapterVersion>, std::less<>> table_;
};

}  // namespace myriad
