// What the web console reads that the OpenAI API does not answer, as JSON:
// a page of the caller's adapters with each version's residency and the
// adapter's request figures (GET /v1/adapters[/{name}]), and a live
// snapshot of the node: workers, their active sets, totals and latency
// (GET /v1/console/live, streamed). docs/api.md lists every field.
//
// Tenancy as everywhere: a tenant sees its own adapters; in the live view,
// another tenant's adapter in a slot shows as "(other tenant)". An admin
// sees the whole node.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "node_service.h"
#include "runtime/result.h"
#include "tenants.h"

namespace myriad::node {

// One published version as the adapter API shows it.
nlohmann::json adapter_json(const AdapterRecord& r);

struct AdapterPageQuery {
  size_t limit = 50;        // adapters (not versions) per page, 1..1000
  std::string after;        // "tenant/name": the page starts after it
  std::string contains;     // only names containing this (case-insensitive), "" = all
};

// {"object":"list","data":[adapter...],"total","has_more","last_id"}, sorted
// by tenant/name; each adapter {"id","tenant","name","versions":[...with
// "pins","deleting","residency"],"metrics":{...}}.
Result<nlohmann::json> adapter_page(NodeService& service, const Caller& caller, const AdapterPageQuery& query);
// One adapter of that shape; kNotFound as resolve() answers it.
Result<nlohmann::json> adapter_entry(NodeService& service, const Caller& caller, std::string_view name);

// The node now, as an admin sees it: {"time_ms","workers":[...],"totals",
// "latency","training"}.
nlohmann::json live_snapshot(NodeService& service);
// The same for a caller: other tenants' adapter names hidden.
nlohmann::json live_for(nlohmann::json snapshot, const Caller& caller);

}  // namespace myriad::node
