// The client RPC API of a node (schema/api.capnp, Cap'n Proto two-party RPC
// on --rpc): the same service as the HTTP API (http_server.h), as
// capabilities. One thread runs a kj event loop that owns every connection;
// the engine's events arrive on the worker thread and hop onto the loop
// through a per-request mailbox woken by a cross-thread fulfiller, so the
// engine never waits for a client.
//
// Bounded like HTTP, by the same per-tenant book (tenant_limits.h): a tenant
// over its open requests or tokens per minute gets `overloaded`; an upload
// larger than max_upload_bytes gets resourceExhausted before a byte is sent;
// a client that stops acknowledging its token stream until
// max_buffered_events events of one request wait in its mailbox gets that
// request cancelled. Dropping a generate call, or the connection, cancels
// its request. While the node drains, generate answers `unavailable`.
//
// Every kj/capnp-rpc header stays in rpc_server.cpp: this header is plain
// C++. Thread-safe: start/stop from any one thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "node_service.h"
#include "runtime/result.h"
#include "tenant_limits.h"
#include "tenants.h"

namespace myriad::node {

struct RpcOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8001;  // 0: any free port (port() says which)
  // Per-tenant limits (open requests, tokens per minute), shared with the
  // HTTP server; null = the server's own, by default values.
  std::shared_ptr<TenantLimits> limits;
  size_t max_upload_bytes = size_t(8) << 20;  // adapter_model.safetensors of one upload
  size_t max_buffered_events = 4096;          // per request, waiting for the client to acknowledge
};

class RpcServer {
 public:
  // Binds and starts serving; kIo naming the address when it cannot bind.
  static Result<std::unique_ptr<RpcServer>> start(NodeService& service, const Tenants& tenants,
                                                  const RpcOptions& options);
  ~RpcServer();  // stop()
  uint16_t port() const;
  // Waits (up to 2 s) for open generate calls to be answered, then closes
  // every connection and joins the loop's thread. Call after
  // NodeService::drain() so running requests finish first.
  void stop();

 private:
  struct Impl;
  explicit RpcServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace myriad::node
