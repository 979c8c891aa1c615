// myriad-node: one node of the service. `--role all` (the only role so far)
// serves the OpenAI-compatible HTTP API (--http) and the Cap'n Proto RPC API
// (--rpc, schema/api.capnp) over one engine: the base model of
// --model, the adapters published in the store under --data, on the CPU or
// a CUDA device. SIGTERM or SIGINT drains: new requests get 503 (RPC:
// `unavailable`), running ones finish, then the process exits 0. Settings: flags, or a config file
// (--config FILE, the same names as TOML/INI keys; flags win).
#include <csignal>
#include <cstdio>
#include <string>

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

}  // namespace

int main(int argc, char** argv) {
  node::NodeOptions o;
  std::string role = "all", http = "127.0.0.1:8000", rpc = "127.0.0.1:8001", api_keys;
  size_t max_body = size_t(8) << 20;
  int max_open = 256;
  int64_t tokens_per_minute = 0;
  LogLevel log_level = LogLevel::kInfo;
  CLI::App app("Serves a base model and its LoRA adapters through the OpenAI-compatible HTTP API and Cap'n Proto RPC.", "myriad-node");
  cli::set_conventions(app);
  app.set_config("--config", "", "settings file (TOML or INI, keys named as the flags); flags override it");
  app.add_option("--role", role, "all: the whole service in this process (gateway and worker roles come later)")
      ->option_text("ROLE")
      ->check(CLI::IsMember({"all"}));
  app.add_option("--model", o.model_dir, "Hugging Face model folder (with tokenizer.json)")->option_text("DIR")->required();
  app.add_option("--model-name", o.model_name, "the base model's name in the API (default: the folder's name)")
      ->option_text("NAME");
  app.add_option("--data", o.data_dir, "the adapter store's folder, created if missing")->option_text("DIR")->required();
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
  app.add_option("--kv-blocks", o.kv_blocks, "KV blocks of 16 tokens (default: sized from the context)")
      ->option_text("N")
      ->check(cli::at_least(0));
  app.add_option("--max-body-bytes", max_body, "largest request body and RPC adapter upload (default 8 MiB; larger: 413 / resourceExhausted)")->option_text("N");
  app.add_option("--max-open-per-tenant", max_open, "requests a tenant may have open (default 256; more: 429)")
      ->option_text("N")
      ->check(cli::at_least(1));
  app.add_option("--tokens-per-minute-per-tenant", tokens_per_minute,
                 "prompt + max_tokens a tenant may ask for per minute (default 0: no limit; more: 429)")
      ->option_text("N")
      ->check(cli::at_least(0));
  cli::add_log_level(app, log_level);
  if (const auto exit_code = cli::parse(app, argc, argv, log_level)) return *exit_code;

  auto fail = [](const Error& e, int code = 1) {
    std::fprintf(stderr, "myriad-node: %s\n", e.to_string().c_str());
    return code;
  };
  auto http_addr = host_port("--http", http);
  if (!http_addr.ok()) return fail(http_addr.error(), 2);
  auto rpc_addr = host_port("--rpc", rpc);
  if (!rpc_addr.ok()) return fail(rpc_addr.error(), 2);
  auto tenants = api_keys.empty() ? Result<node::Tenants>(node::Tenants::open_access()) : node::Tenants::load(api_keys);
  if (!tenants.ok()) return fail(tenants.error(), 2);

  // Signals are taken by sigwait below: block them before any thread starts.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto service = node::NodeService::start(o);
  if (!service.ok()) return fail(service.error());
  // One book of per-tenant limits for both front ends.
  auto limits = node::TenantLimits::create({max_open, tokens_per_minute});
  node::HttpOptions ho;
  ho.host = http_addr.value().first;
  ho.port = http_addr.value().second;
  ho.max_body_bytes = max_body;
  ho.limits = limits;
  auto server = node::HttpServer::start(**service, tenants.value(), ho);
  if (!server.ok()) return fail(server.error());
  node::RpcOptions ro;
  ro.host = rpc_addr.value().first;
  ro.port = rpc_addr.value().second;
  ro.limits = limits;
  ro.max_upload_bytes = max_body;
  auto rpc_server = node::RpcServer::start(**service, tenants.value(), ro);
  if (!rpc_server.ok()) return fail(rpc_server.error());
  std::printf("myriad-node: serving %s on http://%s:%u\n", (*service)->model_name().c_str(), ho.host.c_str(),
              unsigned((*server)->port()));
  std::printf("myriad-node: serving %s on rpc://%s:%u\n", (*service)->model_name().c_str(), ro.host.c_str(),
              unsigned((*rpc_server)->port()));
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
