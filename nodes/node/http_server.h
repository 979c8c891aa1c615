// The OpenAI-compatible HTTP API of a node (Boost.Beast, one thread running
// an io_context; the engine steps on its own thread, so a slow client never
// stalls it): POST /v1/completions and /v1/chat/completions (streamed as
// server-sent events or not), GET /v1/models, adapter management
// (POST /v1/adapters {"name","path"}, DELETE /v1/adapters/{name}, vLLM's
// POST /v1/load_lora_adapter and /v1/unload_lora_adapter), and, without a
// key, GET /health and GET /metrics (Prometheus text), and the web console
// (GET / and /console/*, console_assets.h; its data: GET /v1/adapters and
// the stream GET /v1/console/live, console_api.h). Requests parse and
// answer through the protocol layer (nodes/openai), errors in OpenAI's shape.
// docs/api.md lists every field.
//
// Bounded: bodies over max_body_bytes get 413; a tenant over its limits
// (tenant_limits.h: open requests, tokens per minute) gets 429 with
// Retry-After; a
// client that disconnects mid-stream has its request cancelled.
// Thread-safe: start/stop from any one thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "node_service.h"
#include "runtime/result.h"
#include "tenant_limits.h"
#include "tenants.h"

namespace myriad::node {

struct HttpOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8000;  // 0: any free port (port() says which)
  size_t max_body_bytes = size_t(8) << 20;
  // Per-tenant limits (open requests, tokens per minute; over them: 429),
  // shared with the RPC server; null = the server's own, by default values.
  std::shared_ptr<TenantLimits> limits;
  // The web console's files: "" = the copy built into the binary; a folder
  // = read from it at each request (for working on the pages).
  std::string console_dir;
};

class HttpServer {
 public:
  // Binds and starts serving; kIo naming the address when it cannot bind.
  static Result<std::unique_ptr<HttpServer>> start(NodeService& service, const Tenants& tenants,
                                                   const HttpOptions& options);
  ~HttpServer();  // stop()
  uint16_t port() const;
  // Stops accepting connections, ends open ones, joins the thread.
  void stop();

 private:
  struct Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace myriad::node
