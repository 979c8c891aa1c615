#include "prometheus.h"

#include <map>
#include <tuple>
#include <nlohmann/json.hpp>

#include "runtime/adapter_id.h"

namespace myriad::node {

namespace {

using nlohmann::json;

// Label values: backslash, quote and newline escaped, as the format asks.
std::string label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

double num(const json& j, const char* key) { return j.contains(key) && j[key].is_number() ? j[key].get<double>() : 0.0; }

void metric(std::string& out, const std::string& name, const char* type, const char* help) {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

void sample(std::string& out, const std::string& name, const std::string& labels, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  out += name;
  if (!labels.empty()) out += "{" + labels + "}";
  out += ' ';
  out += buf;
  out += '\n';
}

// tenant="...",adapter="..." of an engine metrics key: "tenant/name", or
// "(base)" for the base model (no tenant, no adapter).
std::string adapter_labels(const std::string& key) {
  const size_t slash = key.find('/');
  const std::string tenant = slash == std::string::npos ? "" : key.substr(0, slash);
  return "tenant=\"" + label(tenant) + "\",adapter=\"" + label(key == "(base)" ? "" : key) + "\"";
}

}  // namespace

std::string prometheus_text(const std::string& metrics_json, const EngineWorkerStats& live, bool draining) {
  const json m = json::parse(metrics_json, nullptr, /*allow_exceptions=*/false);
  std::string out;
  if (m.is_discarded() || !m.is_object()) return out;
  // Per tenant: the engine keys per-adapter figures by "tenant/name"; the
  // base model's requests are the tenant-less "(base)".
  const json& per = m.contains("per_adapter") ? m["per_adapter"] : json::object();

  metric(out, "myriad_requests_total", "counter", "Requests by tenant and outcome.");
  for (auto it = per.begin(); it != per.end(); ++it)
    for (const char* outcome : {"submitted", "rejected", "finished", "cancelled", "deadline", "failed"})
      sample(out, "myriad_requests_total", adapter_labels(it.key()) + ",outcome=\"" + outcome + "\"",
             num(it.value(), outcome));
  metric(out, "myriad_output_tokens_total", "counter", "Tokens generated, by tenant and adapter.");
  for (auto it = per.begin(); it != per.end(); ++it)
    sample(out, "myriad_output_tokens_total", adapter_labels(it.key()), num(it.value(), "output_tokens"));
  const json& overall = m.contains("overall") ? m["overall"] : json::object();
  for (const char* h : {"ttft_ms", "itl_ms", "queue_ms", "e2e_ms"}) {
    const std::string name = std::string("myriad_") + h;
    metric(out, name, "summary", "Latency in milliseconds (quantiles over the node's lifetime).");
    const json& hj = overall.contains(h) ? overall[h] : json::object();
    for (const auto& [q, key] : {std::pair{"0.5", "p50"}, std::pair{"0.9", "p90"}, std::pair{"0.99", "p99"}})
      sample(out, name, std::string("quantile=\"") + q + "\"", num(hj, key));
    sample(out, name + "_count", "", num(hj, "count"));
    sample(out, name + "_sum", "", num(hj, "count") * num(hj, "mean"));
  }
  for (const auto& [key, help] : {std::pair{"steps", "Engine steps that ran rows."},
                                  std::pair{"swaps", "Adapters swapped out at the end of their quantum."},
                                  std::pair{"slot_loads", "Adapter loads into device slots begun."},
                                  std::pair{"load_failures", "Adapter loads that failed."},
                                  std::pair{"evictions", "Adapters evicted from device slots."},
                                  std::pair{"preemptions", "Sequences whose KV blocks were freed for recompute."}}) {
    const std::string name = std::string("myriad_") + key + "_total";
    metric(out, name, "counter", help);
    sample(out, name, "", num(m, key));
  }
  metric(out, "myriad_slot_load_ms", "summary", "Adapter load into a slot, milliseconds.");
  const json& sl = m.contains("slot_load_ms") ? m["slot_load_ms"] : json::object();
  sample(out, "myriad_slot_load_ms", "quantile=\"0.5\"", num(sl, "p50"));
  sample(out, "myriad_slot_load_ms", "quantile=\"0.99\"", num(sl, "p99"));
  sample(out, "myriad_slot_load_ms_count", "", num(sl, "count"));
  for (const auto& [key, help] :
       {std::pair{"step_device_ms", "Device time of a step, milliseconds."},
        std::pair{"step_plan_ms", "Host time planning a step (scheduling, loads begun), milliseconds."},
        std::pair{"step_complete_ms", "Host time applying a step's results (events to clients), milliseconds."}}) {
    const std::string name = std::string("myriad_") + key;
    metric(out, name, "summary", help);
    const json& hj = m.contains(key) ? m[key] : json::object();
    sample(out, name, "quantile=\"0.5\"", num(hj, "p50"));
    sample(out, name, "quantile=\"0.99\"", num(hj, "p99"));
    sample(out, name + "_count", "", num(hj, "count"));
    sample(out, name + "_sum", "", num(hj, "count") * num(hj, "mean"));
  }
  metric(out, "myriad_batch_occupancy", "gauge", "Mean rows per step over the batch capacity.");
  sample(out, "myriad_batch_occupancy", "", num(m, "batch_occupancy"));
  metric(out, "myriad_requests_queued", "gauge", "Requests waiting in the scheduler's queues.");
  sample(out, "myriad_requests_queued", "", double(live.queued));
  metric(out, "myriad_requests_running", "gauge", "Requests in the running batch.");
  sample(out, "myriad_requests_running", "", double(live.running));
  metric(out, "myriad_requests_in_flight", "gauge", "Requests accepted and not yet answered.");
  sample(out, "myriad_requests_in_flight", "", double(live.in_flight));
  metric(out, "myriad_draining", "gauge", "1 while the node drains for shutdown.");
  sample(out, "myriad_draining", "", draining ? 1.0 : 0.0);
  // The gateway's view of each worker (what placement reads).
  const json& g = m.contains("gateway") && m["gateway"].is_object() ? m["gateway"] : json::object();
  const json& workers = g.contains("workers") && g["workers"].is_array() ? g["workers"] : json::array();
  for (const auto& [key, type, help] :
       {std::tuple{"up", "gauge", "1 while the worker is live, 0 once lost (down, or its load reports stopped)."},
        std::tuple{"pending_tokens", "gauge", "Tokens to compute for the worker's queued and running requests, as last reported."},
        std::tuple{"queued", "gauge", "Requests waiting in the worker's engine, as last reported."},
        std::tuple{"running", "gauge", "Requests in the worker's running batch, as last reported."},
        std::tuple{"resident", "gauge", "Adapter versions in the worker's slots, as last reported."},
        std::tuple{"host_cached", "gauge", "Adapter versions in the worker's host memory, as last reported."},
        std::tuple{"heartbeats_missed", "gauge",
                   "Heartbeats (one every 100 ms) missed since the worker was last heard; 0 for a lost one."}}) {
    const std::string name = std::string("myriad_worker_") + key;
    metric(out, name, type, help);
    for (const json& w : workers) {
      const double v = w.contains(key) && w[key].is_boolean() ? (w[key].get<bool>() ? 1.0 : 0.0) : num(w, key);
      sample(out, name, "worker=\"" + label(w.value("id", "")) + "\"", v);
    }
  }
  metric(out, "myriad_worker_report_age_seconds", "gauge",
         "Time since the worker's latest full load report (growing while it heartbeats: a long or hung step).");
  for (const json& w : workers)
    sample(out, "myriad_worker_report_age_seconds", "worker=\"" + label(w.value("id", "")) + "\"",
           num(w, "report_age_ms") / 1000.0);
  metric(out, "myriad_worker_step_ms", "gauge", "Mean device time of the worker's recent steps, as last reported.");
  for (const json& w : workers)
    sample(out, "myriad_worker_step_ms", "worker=\"" + label(w.value("id", "")) + "\"", num(w, "step_ms"));
  metric(out, "myriad_worker_draining", "gauge", "1 while the worker takes no new requests (leaving or drained).");
  for (const json& w : workers)
    sample(out, "myriad_worker_draining", "worker=\"" + label(w.value("id", "")) + "\"",
           w.value("draining", false) ? 1.0 : 0.0);
  metric(out, "myriad_gateway_held_requests", "gauge", "Requests the gateway holds while no worker can take them.");
  sample(out, "myriad_gateway_held_requests", "", num(g, "held"));
  // Cluster totals over the live workers.
  double up = 0, queued = 0, running = 0, pending = 0;
  for (const json& w : workers) {
    if (!w.value("up", false)) continue;
    up += 1;
    queued += num(w, "queued");
    running += num(w, "running");
    pending += num(w, "pending_tokens");
  }
  for (const auto& [name, help, v] :
       {std::tuple{"myriad_cluster_workers_up", "Workers taking part (not lost).", up},
        std::tuple{"myriad_cluster_queued_requests", "Requests waiting in the live workers' engines.", queued},
        std::tuple{"myriad_cluster_running_requests", "Requests in the live workers' running batches.", running},
        std::tuple{"myriad_cluster_pending_tokens", "Tokens to compute on the live workers.", pending}}) {
    metric(out, name, "gauge", help);
    sample(out, name, "", v);
  }
  for (const auto& [name, key, help] :
       {std::tuple{"myriad_gateway_placed_again_total", "placed_again",
                   "Requests placed on another worker after theirs was lost or left."},
        std::tuple{"myriad_gateway_resumed_total", "resumed",
                   "Requests placed again after tokens their client had: resumed after them (prefilled, not sent again)."},
        std::tuple{"myriad_gateway_resumed_tokens_total", "resumed_tokens",
                   "Output tokens prefilled by resumed requests instead of computed again."},
        std::tuple{"myriad_gateway_adapter_placements_total", "placed_adapter", "Adapter requests placed on a worker."},
        std::tuple{"myriad_gateway_resident_placements_total", "placed_resident",
                   "Adapter requests placed on a worker that held the adapter in a slot (affinity hits)."}}) {
    metric(out, name, "counter", help);
    sample(out, name, "", num(g, key));
  }
  return out;
}

std::string prometheus_fine_tuning_text(const std::map<std::string, int64_t>& jobs_by_status, int64_t trained_tokens,
                                        int64_t steps, int64_t versions) {
  std::string out;
  metric(out, "myriad_fine_tuning_jobs", "gauge", "Fine-tuning jobs on this node by status.");
  for (const auto& [status, n] : jobs_by_status)
    out += "myriad_fine_tuning_jobs{status=\"" + status + "\"} " + std::to_string(n) + "\n";
  metric(out, "myriad_fine_tuning_trained_tokens_total", "counter",
         "Tokens in the rows of every fine-tuning step run since the node started.");
  out += "myriad_fine_tuning_trained_tokens_total " + std::to_string(trained_tokens) + "\n";
  metric(out, "myriad_fine_tuning_steps_total", "counter", "Optimizer steps of fine-tuning jobs since the node started.");
  out += "myriad_fine_tuning_steps_total " + std::to_string(steps) + "\n";
  metric(out, "myriad_fine_tuning_versions_total", "counter",
         "Adapter versions fine-tuning jobs published since the node started.");
  out += "myriad_fine_tuning_versions_total " + std::to_string(versions) + "\n";
  return out;
}

}  // namespace myriad::node
