// Who an adapter is, everywhere in Myriad: the engine, the scheduler, the
// host cache, the store, the actors and the wire. An AdapterId names one
// immutable published version; an AdapterName is what a client writes (the
// version may be left to "the newest"), resolved to an AdapterId by the
// registry before a request reaches an engine.
//
//   text                  tenant   name   version
//   "alpha/chat"          alpha    chat   0 (newest, resolved later)
//   "alpha/chat@3"        alpha    chat   3
//   "alpha/chat@latest"   alpha    chat   0
//   "chat"                (the caller's tenant)
//
// Tenants and names: 1..64 characters of [A-Za-z0-9._-], not starting with
// '.' or '-' (so either is safe as a file or folder name and in a URL path).
#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "runtime/result.h"

namespace myriad {

struct AdapterId {
  std::string tenant;
  std::string name;
  uint64_t version = 0;  // >= 1 once published

  // "tenant/name@version"
  std::string to_string() const;
  // "tenant/name"
  std::string qualified_name() const { return tenant + "/" + name; }
  auto operator<=>(const AdapterId&) const = default;
  bool operator==(const AdapterId&) const = default;
};

struct AdapterIdHash {
  size_t operator()(const AdapterId& id) const noexcept;
};

// A reference as written by a client; version 0 means the newest.
struct AdapterName {
  std::string tenant;
  std::string name;
  uint64_t version = 0;

  std::string to_string() const;  // "tenant/name" or "tenant/name@N"
  AdapterId pinned(uint64_t v) const { return AdapterId{tenant, name, v}; }
};

// kInvalidArgument naming the part at fault.
Status check_tenant(std::string_view tenant);
Status check_adapter_name(std::string_view name);

// Parses "tenant/name", "tenant/name@N", "tenant/name@latest", or a bare
// "name[@...]" which belongs to `default_tenant`.
Result<AdapterName> parse_adapter_name(std::string_view text, std::string_view default_tenant);

// `text` as a caller of `caller_tenant` names an adapter (parse_adapter_name;
// a bare name is the caller's). The one tenant rule of every front end:
// another tenant's adapter is kNotFound ("adapter 'TEXT' does not exist"),
// exactly as a missing one answers, unless the caller is an admin, who sees
// every tenant.
Result<AdapterName> parse_adapter_name_for(std::string_view text, std::string_view caller_tenant, bool admin);
// Parses "tenant/name@N" exactly (N >= 1), as AdapterId::to_string writes it.
Result<AdapterId> parse_adapter_id(std::string_view text);

}  // namespace myriad
