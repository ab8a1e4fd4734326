#pragma once

// TLS towards the servers of an upstream (`tls: true`): one SSL_CTX per
// upstream, immutable and shared by the workers' pools.
//
// The peer is verified against the system CAs, or only against `tls_ca` when
// it is set (a private CA should not be mixed with public ones). The name
// checked, and sent as SNI, is `tls_server_name`, else the server's host when
// it is a DNS name. A server given as an IP literal without tls_server_name
// is verified against the IP addresses in its certificate and gets no SNI
// (RFC 6066 3: SNI carries host names only). Hostname matching follows RFC
// 6125 via X509_VERIFY_PARAM_set1_host: wildcards only as a whole left-most
// label. TLS 1.2 minimum, OpenSSL's default cipher suites at security level
// 2 (upstreams are ours to fix, but an internal server may still need an
// older AES-CBC suite), ALPN http/1.1 (the pools speak HTTP/1.1).

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/config/config.h"
#include "proxy/config/loader.h"
#include "proxy/tls/openssl_ptr.h"

namespace ward::tls {

class ClientContext {
 public:
  struct BuildResult {
    std::shared_ptr<const ClientContext> context;  // null when errors is not empty
    std::vector<config::ConfigError> errors;       // at the upstream's mark
    bool ok() const { return errors.empty(); }
  };

  // Reads tls_ca (when set) or the system CA store.
  static BuildResult build(const config::Upstream& upstream);

  // A client-side SSL, in connect state, for a server whose configured host
  // is `server_host` (a DNS name or an IP literal, no brackets), with SNI and
  // peer verification set. Null when out of memory or when there is no name
  // to verify. Data plane: no throw.
  SslPtr new_ssl(std::string_view server_host) const;

  // The name new_ssl verifies for `server_host`.
  std::string verified_name(std::string_view server_host) const;

  // Use build(); public only for std::make_shared.
  struct Private {};
  explicit ClientContext(Private) {}

 private:
  SslCtxPtr ctx_;
  std::string server_name_;  // tls_server_name, "" = the server's host
};

}  // namespace ward::tls
