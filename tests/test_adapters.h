// Adapter ids for tests: every test adapter belongs to tenant "t" and is
// published as version 1 unless a test says otherwise.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/adapter_id.h"
#include "runtime/request.h"

namespace myriad::testing {

inline AdapterId test_adapter(const std::string& name, uint64_t version = 1) { return AdapterId{"t", name, version}; }

// A request's adapter list for `name` ("" = the base model).
inline std::vector<AdapterUse> adapter_use(const std::string& name) {
  if (name.empty()) return {};
  return {AdapterUse{test_adapter(name)}};
}

}  // namespace myriad::testing
