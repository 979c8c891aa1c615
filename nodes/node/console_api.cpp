#include "console_api.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <map>

#include "adapter_traffic.h"
#include "fine_tuning.h"

namespace myriad::node {
namespace {

using json = nlohmann::json;

json quantiles(const LatencyHistogram& h) {
  return {{"p50", h.quantile_ms(0.50)}, {"p90", h.quantile_ms(0.90)}, {"p99", h.quantile_ms(0.99)}, {"count", h.count()}};
}

json quantiles(const json& hist) {
  auto q = [&](const char* k) { return hist.is_object() ? hist.value(k, 0.0) : 0.0; };
  return {{"p50", q("p50")}, {"p90", q("p90")}, {"p99", q("p99")}, {"count", hist.is_object() ? hist.value("count", uint64_t(0)) : 0}};
}

// What clients got from an adapter (adapter_traffic.h): zeros before its first request.
json request_figures(const AdapterTraffic& traffic, const std::string& qualified) {
  const AdapterTraffic::Figures f = traffic.figures(qualified).value_or(AdapterTraffic::Figures{});
  return {{"requests", f.requests},   {"finished", f.finished},           {"failed", f.failed},
          {"cancelled", f.cancelled}, {"output_tokens", f.output_tokens}, {"ttft_ms", quantiles(f.ttft_ms)},
          {"itl_ms", quantiles(f.itl_ms)}, {"e2e_ms", quantiles(f.e2e_ms)}};
}

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// One adapter: its versions (oldest first) with where each is now.
json adapter_with_status(NodeService& service, const Caller& caller, const std::vector<AdapterRecord>& versions) {
  const AdapterId& first = versions.front().id;
  std::map<uint64_t, VersionStatus> status;
  if (auto s = service.adapter_status(caller, first); s.ok())
    for (VersionStatus& v : s.value()) status[v.version] = std::move(v);
  json list = json::array();
  for (const AdapterRecord& r : versions) {
    json v = adapter_json(r);
    const auto it = status.find(r.id.version);
    json where = json::array();
    if (it != status.end()) {
      v["pins"] = it->second.pins;
      v["deleting"] = it->second.deleting;
      for (const VersionPlacement& p : it->second.residency) {
        json e = {{"worker", p.worker}, {"where", p.where}};
        if (p.slot >= 0) e["slot"] = p.slot;
        if (!p.error.empty()) e["error"] = p.error;
        where.push_back(std::move(e));
      }
    } else {
      v["pins"] = 0;
      v["deleting"] = false;
    }
    if (where.empty()) where.push_back({{"worker", nullptr}, {"where", "store"}});
    v["residency"] = std::move(where);
    list.push_back(std::move(v));
  }
  const std::string qualified = first.qualified_name();
  return {{"id", qualified},
          {"object", "adapter"},
          {"tenant", first.tenant},
          {"name", first.name},
          {"versions", std::move(list)},
          {"metrics", request_figures(service.adapter_traffic(), qualified)}};
}

// The caller's adapters, each a run of its versions, sorted by tenant/name.
Result<std::vector<std::vector<AdapterRecord>>> grouped_adapters(NodeService& service, const Caller& caller) {
  auto all = service.list_adapters(caller);
  if (!all.ok()) return all.error();
  std::vector<AdapterRecord> records = std::move(all.value());
  std::stable_sort(records.begin(), records.end(), [](const AdapterRecord& a, const AdapterRecord& b) {
    if (a.id.tenant != b.id.tenant) return a.id.tenant < b.id.tenant;
    if (a.id.name != b.id.name) return a.id.name < b.id.name;
    return a.id.version < b.id.version;
  });
  std::vector<std::vector<AdapterRecord>> out;
  for (AdapterRecord& r : records) {
    if (out.empty() || out.back().front().id.tenant != r.id.tenant || out.back().front().id.name != r.id.name)
      out.emplace_back();
    out.back().push_back(std::move(r));
  }
  return out;
}

}  // namespace

json adapter_json(const AdapterRecord& r) {
  return {{"id", r.id.to_string()},       {"tenant", r.id.tenant},        {"name", r.id.name},
          {"version", r.id.version},      {"rank", r.rank},               {"alpha", r.alpha},
          {"target_modules", r.target_modules}, {"sha256", r.sha256},     {"size_bytes", r.size_bytes},
          {"created", r.created_unix_ms / 1000}};
}

Result<json> adapter_page(NodeService& service, const Caller& caller, const AdapterPageQuery& query) {
  auto adapters = grouped_adapters(service, caller);
  if (!adapters.ok()) return adapters.error();
  const std::string needle = lower(query.contains);
  std::vector<const std::vector<AdapterRecord>*> matching;
  for (const auto& versions : adapters.value())
    if (needle.empty() || lower(versions.front().id.qualified_name()).find(needle) != std::string::npos)
      matching.push_back(&versions);
  // The first adapter after `after` in the same order (it need not exist any more).
  auto start = matching.begin();
  if (!query.after.empty())
    start = std::find_if(matching.begin(), matching.end(),
                         [&](const auto* v) { return v->front().id.qualified_name() > query.after; });
  json data = json::array();
  std::string last_id;
  auto it = start;
  for (; it != matching.end() && data.size() < query.limit; ++it) {
    data.push_back(adapter_with_status(service, caller, **it));
    last_id = (*it)->front().id.qualified_name();
  }
  return json{{"object", "list"},
              {"data", std::move(data)},
              {"total", matching.size()},
              {"has_more", it != matching.end()},
              {"last_id", last_id.empty() ? json(nullptr) : json(last_id)}};
}

Result<json> adapter_entry(NodeService& service, const Caller& caller, std::string_view name) {
  auto versions = service.adapter_versions(caller, name);
  if (!versions.ok()) return versions.error();
  return adapter_with_status(service, caller, versions.value());
}

json live_snapshot(NodeService& service) {
  const json view = service.cluster_view();
  json engine = json::parse(service.metrics_json(), nullptr, /*allow_exceptions=*/false);
  if (!engine.is_object()) engine = json::object();
  const json overall = engine.value("overall", json::object());
  json workers = json::array();
  uint64_t queued = 0, running = 0, worker_tokens = 0, worker_requests = 0, worker_slot_loads = 0, worker_swaps = 0;
  for (const json& w : view.value("workers", json::array())) {
    queued += w.value("queued", uint64_t(0));
    running += w.value("running", uint64_t(0));
    workers.push_back({{"id", w.value("id", "")},
                       {"device", w.value("device", "")},
                       {"up", w.value("up", false)},
                       {"draining", w.value("draining", false)},
                       {"slots", w.value("slots", 0)},
                       {"active", w.value("resident_adapters", json::array())},
                       {"host_cached", w.value("host_cached", 0)},
                       {"queued", w.value("queued", 0)},
                       {"running", w.value("running", 0)},
                       {"step_ms", w.value("step_ms", 0.0)},
                       {"output_tokens", w.value("output_tokens", uint64_t(0))},
                       {"requests", w.value("requests", uint64_t(0))},
                       {"slot_loads", w.value("slot_loads", uint64_t(0))},
                       {"swaps", w.value("swaps", uint64_t(0))},
                       {"ttft_ms", w.value("ttft_ms", json::object())},
                       {"itl_ms", w.value("itl_ms", json::object())}});
    worker_tokens += w.value("output_tokens", uint64_t(0));
    worker_requests += w.value("requests", uint64_t(0));
    worker_slot_loads += w.value("slot_loads", uint64_t(0));
    worker_swaps += w.value("swaps", uint64_t(0));
  }
  // A gateway runs no engine: its totals are its workers' (as last reported).
  const bool local_engine = engine.contains("overall");
  json training = json::object();
  if (FineTuning* ft = service.fine_tuning())
    for (const auto& [status, n] : ft->counts().jobs) training[status] = n;
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  return {{"time_ms", std::chrono::duration_cast<std::chrono::milliseconds>(now).count()},
          {"workers", std::move(workers)},
          {"totals",
           {{"requests", local_engine ? overall.value("submitted", uint64_t(0)) : worker_requests},
            {"finished", overall.value("finished", uint64_t(0))},
            {"failed", overall.value("failed", uint64_t(0))},
            {"output_tokens", local_engine ? overall.value("output_tokens", uint64_t(0)) : worker_tokens},
            {"swaps", local_engine ? engine.value("swaps", uint64_t(0)) : worker_swaps},
            {"slot_loads", local_engine ? engine.value("slot_loads", uint64_t(0)) : worker_slot_loads},
            {"steps", engine.value("steps", uint64_t(0))},
            {"queued", queued},
            {"running", running}}},
          {"latency",
           {{"ttft_ms", quantiles(overall.value("ttft_ms", json()))},
            {"itl_ms", quantiles(overall.value("itl_ms", json()))},
            {"e2e_ms", quantiles(overall.value("e2e_ms", json()))}}},
          {"training", std::move(training)}};
}

json live_for(json snapshot, const Caller& caller) {
  if (caller.admin) return snapshot;
  const std::string own = caller.tenant + "/";
  for (json& w : snapshot["workers"])
    for (json& a : w["active"])
      if (!a.is_string() || a.get<std::string>().rfind(own, 0) != 0) a = "(other tenant)";
  return snapshot;
}

}  // namespace myriad::node
