// A workaround for CAF 0.17's OpenSSL module, linked into myriad-node.
//
// libcaf_openssl (caf/openssl/session.cpp) calls SSL_read, SSL_write,
// SSL_accept and SSL_connect, then SSL_get_error, without first emptying the
// thread's OpenSSL error queue, which SSL_get_error requires ("the current
// thread's error queue must be empty before the TLS/SSL I/O operation is
// attempted"). The middleman runs every connection on one thread. So when
// one peer's connection fails (a worker killed: OpenSSL queues "unexpected
// eof while reading", and CAF never reads it), the next call on every other
// connection that merely wants more bytes reads that stale error as fatal,
// and CAF closes the connection: killing one worker dropped every other
// worker's TLS link (they rejoined; their requests were placed again).
//
// myriad-node defines these four functions. The dynamic linker binds
// libcaf_openssl's calls to an executable's definitions first, so each call
// empties the queue, then runs libssl's own (found with dlsym(RTLD_NEXT)).
// tests/cluster/cluster_test.py --tls shows the difference (no worker but the
// killed ones is lost).
#include <dlfcn.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cstdio>
#include <cstdlib>

namespace {

template <typename Fn>
Fn next_definition(const char* name) {
  void* f = dlsym(RTLD_NEXT, name);
  if (f == nullptr) {
    std::fprintf(stderr, "myriad-node: libssl's %s not found: %s\n", name, dlerror());
    std::abort();
  }
  return reinterpret_cast<Fn>(f);
}

}  // namespace

extern "C" {

int SSL_read(SSL* ssl, void* buf, int num) {
  static const auto real = next_definition<int (*)(SSL*, void*, int)>("SSL_read");
  ERR_clear_error();
  return real(ssl, buf, num);
}

int SSL_write(SSL* ssl, const void* buf, int num) {
  static const auto real = next_definition<int (*)(SSL*, const void*, int)>("SSL_write");
  ERR_clear_error();
  return real(ssl, buf, num);
}

int SSL_accept(SSL* ssl) {
  static const auto real = next_definition<int (*)(SSL*)>("SSL_accept");
  ERR_clear_error();
  return real(ssl);
}

int SSL_connect(SSL* ssl) {
  static const auto real = next_definition<int (*)(SSL*)>("SSL_connect");
  ERR_clear_error();
  return real(ssl);
}

}  // extern "C"
