// myriad-node: one node of the service.
//   --role all (default): the OpenAI-compatible HTTP API (--http) and the
//     Cap'n Proto RPC API (--rpc, schema/api.capnp) over one engine: the base
//     model of --model, the adapters published in the store under --data, on
//     the CPU or a CUDA device.
//   --role gateway: the same front ends and store, no engine; workers join on
//     --cluster HOST:PORT and requests are placed on them.
//   --role worker: one engine that joins a gateway (--join HOST:PORT); no
//     HTTP or RPC listener; adapters are fetched from the gateway.
// SIGTERM or SIGINT drains: new requests get 503 (RPC: `unavailable`),
// running ones finish, then the process exits 0 (a worker: its waiting
// requests move to other workers first). Settings: flags, or a config file
// (--config FILE, the same names as TOML/INI keys; flags win).
#include <csignal>
#include <cstdio>
#include <string>

#include "cluster_worker.h"
#include "http_server.h"
#include "node_service.h"
#include "rpc_server.h"
#include "nodes/cli_app.h"
#include "runtime/log.h"
#include "tenants.h"

using namespace myriad;

namespace {

Result<std::pair<std::string, uint16_t>> host_port(const std::string& flag, const std::string& value) {
  const size_t colon = value.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == value.size())
    return make_error(ErrorCode::kInvalidArgument, flag + " " + value + ": expected HOST:PORT");
  const std::string port = value.substr(colon + 1);
  char* end = nullptr;
  const long p = std::strtol(port.c_str(), &end, 10);
  if (*end != '\0' || p < 0 || p > 65535)
    return make_error(ErrorCode::kInvalidArgument, flag + " " + value + ": the port must be 0..65535");
  return std::pair{value.substr(0, colon), uint16_t(p)};
}

Result<std::string> read_secret(const std::string& path) {
  if (path.empty()) return std::string();
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return make_error(ErrorCode::kNotFound, "--cluster-secret " + path + ": cannot open it");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0 && out.size() < (1u << 16)) out.append(buf, n);
  std::fclose(f);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();  // `echo secret > file`
  if (out.size() < 16)
    return make_error(ErrorCode::kInvalidArgument, "--cluster-secret " + path + ": use at least 16 bytes");
  return out;
}

sigset_t block_stop_signals() {
  // Signals are taken by sigwait: block them before any thread starts.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  return stop_signals;
}

}  // namespace

int main(int argc, char** argv) {
  node::NodeOptions o;
  std::string role = "all", http = "127.0.0.1:8000", rpc = "127.0.0.1:8001", api_keys;
  std::string cluster = "127.0.0.1:7700", join, secret_file, worker_id;
  size_t max_body = size_t(8) << 20;
  size_t rpc_max_buffered = 4096;
  int max_open = 256;
  int64_t tokens_per_minute = 0;
  LogLevel log_level = LogLevel::kInfo;
  CLI::App app("Serves a base model and its LoRA adapters through the OpenAI-compatible HTTP API and Cap'n Proto RPC.", "myriad-node");
  cli::set_conventions(app);
  app.set_config("--config", "", "settings file (TOML or INI, keys named as the flags); flags override it");
  app.add_option("--role", role,
                 "all: the whole service in this process; gateway: front ends and store, workers join on "
                 "--cluster; worker: an engine that joins --join")
      ->option_text("ROLE")
      ->check(CLI::IsMember({"all", "gateway", "worker"}));
  app.add_option("--cluster", cluster, "gateway: where workers join (default 127.0.0.1:7700; port 0 picks one)")
      ->option_text("HOST:PORT");
  app.add_option("--join", join, "worker: the gateway's --cluster address")->option_text("HOST:PORT");
  app.add_option("--cluster-secret", secret_file,
                 "gateway and worker: a file of at least 16 bytes shared by the cluster's members; without it "
                 "joins come only from the gateway's host")
      ->option_text("FILE");
  app.add_option("--cluster-tls-cert", o.cluster_tls.certificate,
                 "gateway and worker: this member's TLS certificate (PEM); with --cluster-tls-key and "
                 "--cluster-tls-ca the cluster port speaks TLS and each side checks the other's certificate")
      ->option_text("FILE");
  app.add_option("--cluster-tls-key", o.cluster_tls.key, "gateway and worker: its private key (PEM)")->option_text("FILE");
  app.add_option("--cluster-tls-ca", o.cluster_tls.ca, "gateway and worker: the cluster's CA certificate (PEM)")
      ->option_text("FILE");
  app.add_option("--worker-id", worker_id, "worker: its id in the cluster (default HOST/PID)")->option_text("ID");
  double join_timeout_ms = 10000;
  app.add_option("--join-timeout-ms", join_timeout_ms,
                 "worker: the gateway must finish the cluster handshake within this, else the worker exits with an "
                 "error (TLS on one side only hangs it)")
      ->option_text("MS")
      ->check(cli::at_least(1));
  auto* heartbeat_timeout =
      app.add_option("--heartbeat-timeout-ms", o.heartbeat_timeout_ms,
                     "gateway: a worker unheard this long is lost and its requests move (default 10000; 0: only a "
                     "closed connection loses it)")
          ->option_text("MS")
          ->check(cli::at_least(0));
  std::string placement = "affinity";
  app.add_option("--placement", placement,
                 "gateway: affinity (a worker holding the adapter, else the least loaded; default), least-loaded "
                 "or random (baselines for bench/cluster)")
      ->option_text("P")
      ->check(CLI::IsMember({"affinity", "least-loaded", "random"}));
  app.add_option("--max-wait-for-worker-ms", o.max_wait_for_worker_ms,
                 "a request waits this long for a worker when none is up (default 30000)")
      ->option_text("MS")
      ->check(cli::at_least(0));
  app.add_option("--model", o.model_dir, "Hugging Face model folder (with tokenizer.json)")->option_text("DIR")->required();
  app.add_option("--model-name", o.model_name, "the base model's name in the API (default: the folder's name)")
      ->option_text("NAME");
  app.add_option("--data", o.data_dir,
                 "the adapter store's folder, created if missing (worker: its adapter cache; default a private "
                 "temporary folder)")
      ->option_text("DIR");
  app.add_option("--http", http, "HTTP address (default 127.0.0.1:8000; port 0 picks a free one)")
      ->option_text("HOST:PORT");
  app.add_option("--rpc", rpc, "Cap'n Proto RPC address (schema/api.capnp; default 127.0.0.1:8001; port 0 picks a free one)")
      ->option_text("HOST:PORT");
  app.add_option("--api-keys", api_keys, "JSON {\"KEY\": \"tenant\", ...}; without it one open tenant, 'default'")
      ->option_text("FILE");
  app.add_option("--slots", o.slots, "adapter slots on the device (default 8)")->option_text("N")->check(cli::at_least(1));
  app.add_option("--device", o.device, "cpu | cuda (default cpu)")->option_text("D")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--threads", o.threads, "CPU threads (default: every core)")->option_text("N")->check(cli::at_least(0));
  app.add_option("--max-running", o.max_running, "sequences in the batch (default 32)")
      ->option_text("N")
      ->check(cli::at_least(1));
  app.add_option("--max-waiting", o.max_waiting,
                 "requests queued ahead of the worker's engine (default 1024; more: 429 overloaded)")
      ->option_text("N")
      ->check(cli::at_least(1));
  app.add_option("--max-tokens-per-step", o.max_tokens_per_step, "tokens in one step (default 512)")
      ->option_text("N")
      ->check(cli::at_least(1));
  app.add_option("--quantum-ms", o.quantum_ms, "time slice of the active adapters, ms (default 50)")
      ->option_text("MS")
      ->check(cli::at_least(0));
  app.add_option("--admission", o.admission,
                 "timeslice: the scheduler actor lets only its active set's adapters (at most --slots) into the "
                 "engine, rotating them every --quantum-ms; fifo: arrival order, the engine time-slices what it holds "
                 "(default timeslice)")
      ->option_text("MODE")
      ->check(CLI::IsMember({"timeslice", "fifo"}));
  app.add_option("--kv-blocks", o.kv_blocks, "KV blocks of 16 tokens (default: sized from the context)")
      ->option_text("N")
      ->check(cli::at_least(0));
  std::string console_dir;
  app.add_option("--console-dir", console_dir,
                 "serve the web console's files from this folder instead of the copy built in (for working on nodes/console)")
      ->check(CLI::ExistingDirectory)
      ->option_text("DIR");
  app.add_option("--max-body-bytes", max_body, "largest request body and RPC adapter upload (default 8 MiB; larger: 413 / resourceExhausted)")->option_text("N");
  app.add_option("--rpc-max-buffered-events", rpc_max_buffered,
                 "token events of one RPC request that may wait for a client that stopped acknowledging (default "
                 "4096; more: the request is cancelled and answered resourceExhausted)")
      ->option_text("N")
      ->check(cli::at_least(1));
  app.add_option("--max-open-per-tenant", max_open, "requests a tenant may have open (default 256; more: 429)")
      ->option_text("N")
      ->check(cli::at_least(1));
  app.add_option("--tokens-per-minute-per-tenant", tokens_per_minute,
                 "prompt + max_tokens a tenant may ask for per minute (default 0: no limit; more: 429)")
      ->option_text("N")
      ->check(cli::at_least(0));
  app.add_option("--publish-every", o.fine_tuning_publish_every,
                 "fine-tuning: optimizer steps between a job's published versions (default 10)")
      ->option_text("N")
      ->check(cli::at_least(1));
  app.add_option("--max-training-jobs", o.max_training_jobs,
                 "fine-tuning jobs training at once; more wait queued (default 4)")
      ->option_text("N")
      ->check(cli::at_least(1));
  app.add_option("--training-share", o.training_share,
                 "fine-tuning's share of the worker's busy time while requests run (default 0.25)")
      ->option_text("F")
      ->check(CLI::Range(0.01, 0.99));
  cli::add_log_level(app, log_level);
  if (const auto exit_code = cli::parse(app, argc, argv, log_level)) return *exit_code;

  auto fail = [](const Error& e, int code = 1) {
    std::fprintf(stderr, "myriad-node: %s\n", e.to_string().c_str());
    return code;
  };
  auto secret = read_secret(secret_file);
  if (!secret.ok()) return fail(secret.error(), 2);
  o.role = role;
  o.placement = parse_placement_policy(placement).value();  // checked by IsMember
  if (role == "worker") {
    if (join.empty()) return fail(make_error(ErrorCode::kInvalidArgument, "--role worker needs --join HOST:PORT"), 2);
    auto join_addr = host_port("--join", join);
    if (!join_addr.ok()) return fail(join_addr.error(), 2);
    node::ClusterWorkerOptions wo;
    wo.node = o;
    wo.join_host = join_addr.value().first;
    wo.join_port = join_addr.value().second;
    wo.cluster_secret = secret.value();
    wo.worker_id = worker_id;
    wo.handshake_timeout_ms = join_timeout_ms;
    sigset_t stop_signals = block_stop_signals();
    auto worker = node::ClusterWorker::start(wo);
    if (!worker.ok()) return fail(worker.error());
    std::printf("myriad-node: worker %s joined %s\n", (*worker)->id().c_str(), join.c_str());
    std::fflush(stdout);
    int sig = 0;
    sigwait(&stop_signals, &sig);
    std::printf("myriad-node: %s: leaving the cluster\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    std::fflush(stdout);
    (*worker)->leave();  // waiting requests move to other workers; running ones finish
    std::printf("myriad-node: stopped\n");
    return 0;
  }
  if (o.data_dir.empty()) return fail(make_error(ErrorCode::kInvalidArgument, "--data DIR is required"), 2);
  if (role == "gateway") {
    auto cluster_addr = host_port("--cluster", cluster);
    if (!cluster_addr.ok()) return fail(cluster_addr.error(), 2);
    o.cluster_host = cluster_addr.value().first;
    o.cluster_port = cluster_addr.value().second;
    o.cluster_secret = secret.value();
    // Workers heartbeat every 100 ms also inside a long step, so 10 s of
    // silence means a host or link gone without closing its connection.
    if (heartbeat_timeout->count() == 0) o.heartbeat_timeout_ms = 10000;
  }
  auto http_addr = host_port("--http", http);
  if (!http_addr.ok()) return fail(http_addr.error(), 2);
  auto rpc_addr = host_port("--rpc", rpc);
  if (!rpc_addr.ok()) return fail(rpc_addr.error(), 2);
  auto tenants = api_keys.empty() ? Result<node::Tenants>(node::Tenants::open_access()) : node::Tenants::load(api_keys);
  if (!tenants.ok()) return fail(tenants.error(), 2);

  sigset_t stop_signals = block_stop_signals();

  auto service = node::NodeService::start(o);
  if (!service.ok()) return fail(service.error());
  // One book of per-tenant limits for both front ends.
  auto limits = node::TenantLimits::create({max_open, tokens_per_minute});
  node::HttpOptions ho;
  ho.host = http_addr.value().first;
  ho.port = http_addr.value().second;
  ho.max_body_bytes = max_body;
  ho.limits = limits;
  ho.console_dir = console_dir;
  auto server = node::HttpServer::start(**service, tenants.value(), ho);
  if (!server.ok()) return fail(server.error());
  node::RpcOptions ro;
  ro.host = rpc_addr.value().first;
  ro.port = rpc_addr.value().second;
  ro.limits = limits;
  ro.max_upload_bytes = max_body;
  ro.max_buffered_events = rpc_max_buffered;
  auto rpc_server = node::RpcServer::start(**service, tenants.value(), ro);
  if (!rpc_server.ok()) return fail(rpc_server.error());
  std::printf("myriad-node: serving %s on http://%s:%u\n", (*service)->model_name().c_str(), ho.host.c_str(),
              unsigned((*server)->port()));
  std::printf("myriad-node: serving %s on rpc://%s:%u\n", (*service)->model_name().c_str(), ro.host.c_str(),
              unsigned((*rpc_server)->port()));
  if (role == "gateway")
    std::printf("myriad-node: workers join on %s:%u\n", o.cluster_host.c_str(), unsigned((*service)->cluster_port()));
  std::fflush(stdout);

  int sig = 0;
  sigwait(&stop_signals, &sig);
  std::printf("myriad-node: %s: draining\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  std::fflush(stdout);
  (*service)->drain();  // new requests now get 503; running ones finish and are answered
  (*server)->stop();
  (*rpc_server)->stop();
  std::printf("myriad-node: stopped\n");
  return 0;
}
