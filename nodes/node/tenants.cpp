#include "tenants.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "runtime/adapter_id.h"
#include "runtime/sha256.h"

namespace myriad::node {

namespace {

std::array<uint8_t, 32> digest_of(std::string_view key) {
  Sha256 h;
  h.update(key);
  return h.finish();
}

Result<std::array<uint8_t, 32>> parse_hex_digest(std::string_view hex) {
  std::array<uint8_t, 32> d{};
  if (hex.size() != 64) return make_error(ErrorCode::kBadFile, "a sha256: key needs 64 hex digits");
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < 32; ++i) {
    const int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return make_error(ErrorCode::kBadFile, "a sha256: key has a character that is not hex");
    d[i] = uint8_t(hi * 16 + lo);
  }
  return d;
}

// Equal digests, looking at every byte whatever the first difference.
bool same_digest(const std::array<uint8_t, 32>& a, const std::array<uint8_t, 32>& b) {
  uint8_t diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= uint8_t(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

Tenants Tenants::open_access() { return Tenants(); }

Result<Tenants> Tenants::parse(std::string_view json_text, const std::string& source) {
  const nlohmann::json j = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  auto bad = [&](const std::string& what) { return make_error(ErrorCode::kBadFile, source + ": " + what); };
  if (j.is_discarded()) return bad("not valid JSON");
  if (!j.is_object()) return bad("must be a JSON object {\"KEY\": \"tenant\", ...}");
  Tenants t;
  size_t n = 0;
  for (auto it = j.begin(); it != j.end(); ++it, ++n) {
    const std::string& key = it.key();
    const std::string where = "entry " + std::to_string(n + 1);
    if (key.empty()) return bad(where + ": the key is empty");
    Entry e;
    if (key.rfind("sha256:", 0) == 0) {
      auto d = parse_hex_digest(std::string_view(key).substr(7));
      if (!d.ok()) return bad(where + ": " + d.error().message);
      e.digest = d.value();
    } else {
      e.digest = digest_of(key);
    }
    const nlohmann::json& v = it.value();
    if (v.is_string()) {
      e.caller.tenant = v.get<std::string>();
    } else if (v.is_object() && v.contains("tenant") && v["tenant"].is_string()) {
      e.caller.tenant = v["tenant"].get<std::string>();
      if (v.contains("admin")) {
        if (!v["admin"].is_boolean()) return bad(where + ": \"admin\" must be true or false");
        e.caller.admin = v["admin"].get<bool>();
      }
    } else {
      return bad(where + ": the value must be a tenant name or {\"tenant\": ..., \"admin\": ...}");
    }
    if (Status s = check_tenant(e.caller.tenant); !s.ok()) return bad(where + ": " + s.error().message);
    for (const Entry& other : t.keys_)
      if (same_digest(other.digest, e.digest)) return bad(where + ": the same key appears twice");
    t.keys_.push_back(std::move(e));
  }
  if (t.keys_.empty()) return bad("no keys (omit --api-keys for an open node)");
  return t;
}

Result<Tenants> Tenants::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(ErrorCode::kNotFound, "API keys file " + path + " cannot be opened");
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), path);
}

Result<Caller> Tenants::authenticate(std::optional<std::string_view> key) const {
  if (keys_.empty()) return Caller{"default", false};
  if (!key || key->empty()) return make_error(ErrorCode::kInvalidArgument, "missing API key (Authorization: Bearer KEY)");
  const auto d = digest_of(*key);
  const Entry* found = nullptr;
  for (const Entry& e : keys_)  // no early exit: the time does not depend on which key matched
    if (same_digest(e.digest, d)) found = &e;
  if (!found) return make_error(ErrorCode::kInvalidArgument, "invalid API key");
  return found->caller;
}

std::vector<std::string> Tenants::tenants() const {
  if (keys_.empty()) return {"default"};
  std::set<std::string> s;
  for (const Entry& e : keys_) s.insert(e.caller.tenant);
  return {s.begin(), s.end()};
}

}  // namespace myriad::node
