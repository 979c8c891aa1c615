// Who is calling: API keys mapped to tenants, from the node's --api-keys
// file, a JSON object
//   {"KEY": "tenant", "sha256:<hex of a key>": "tenant", "KEY2": {"tenant": "ops", "admin": true}}
// Keys are held only as SHA-256 digests and compared in constant time; an
// admin key sees the whole node. Without a file there is one tenant,
// "default", and no key is needed. Immutable after load; thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/result.h"

namespace myriad::node {

struct Caller {
  std::string tenant;
  bool admin = false;
  // What the caller may see of a record of `owner`: its own tenant's, or all as an admin.
  bool sees(const std::string& owner) const { return admin || tenant == owner; }
};

class Tenants {
 public:
  // One tenant ("default"), no keys.
  static Tenants open_access();
  // kBadFile naming the entry at fault (a tenant name that is not one, a
  // malformed digest, a value of the wrong type).
  static Result<Tenants> parse(std::string_view json_text, const std::string& source);
  static Result<Tenants> load(const std::string& path);

  // The caller of an `Authorization: Bearer KEY` value (the bare key);
  // kNotFound-free: an absent or unknown key is kInvalidArgument "invalid API key".
  Result<Caller> authenticate(std::optional<std::string_view> key) const;
  bool requires_key() const { return !keys_.empty(); }
  // Every tenant named in the file ("default" without one).
  std::vector<std::string> tenants() const;

 private:
  struct Entry {
    std::array<uint8_t, 32> digest{};
    Caller caller;
  };
  std::vector<Entry> keys_;
};

}  // namespace myriad::node
