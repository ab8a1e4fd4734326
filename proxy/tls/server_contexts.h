#pragma once

// The TLS side of one listener: an SSL_CTX per configured certificate, built
// from config::ListenerTls, immutable once built and safe to share between
// workers (SSL_CTX is thread-safe for SSL_new and its session cache is locked
// inside OpenSSL).
//
// Per connection the session calls new_ssl(); the handshake then:
//  - picks the certificate by SNI (servername callback: SniTable, then
//    SSL_set_SSL_CTX onto that certificate's context, as nginx does; every
//    context is configured the same way except for its certificate);
//  - picks the protocol by ALPN in the listener's order (server preference);
//    a client whose ALPN list shares nothing with it gets the fatal
//    no_application_protocol alert (RFC 7301 3.2); a client without ALPN
//    gets AppProtocol::none, to be served as HTTP/1.1;
//  - encrypts and decrypts session tickets with the process's TicketKeyRing;
//  - with client_ca, requires a client certificate that chains to it.
//
// Policy, fixed here rather than configurable: TLS 1.2 and 1.3 only;
// `ciphers: default` = ECDHE key exchange with AES-GCM or ChaCha20-Poly1305
// for TLS 1.2 (TLS 1.3 keeps OpenSSL's three AEAD suites); the server's
// cipher order wins, except that a client preferring ChaCha20 (no AES
// hardware) gets it; groups X25519, P-256, P-384; OpenSSL security level 2
// (RSA keys >= 2048 bits, no SHA-1 signatures); no compression (CRIME), no
// renegotiation (CVE-2009-3555 class, and a CPU DoS lever), no 0-RTT early
// data (replayable); a session cache of 20480 sessions per listener with the
// ticket lifetime as timeout.
//
// Reload: build a new ServerContexts from the new config (re-reading every
// file) and publish it (ServerContextsSlot, or a field of the config
// snapshot). Connections keep the SSL they have, and each SSL keeps its
// ServerContexts alive (see new_ssl), so a reload never touches them.

#include <openssl/ssl.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/config/config.h"
#include "proxy/config/loader.h"
#include "proxy/tls/certificate.h"
#include "proxy/tls/openssl_ptr.h"
#include "proxy/tls/sni_table.h"
#include "proxy/tls/ticket_key_ring.h"

namespace ward::tls {

class ServerContexts : public std::enable_shared_from_this<ServerContexts> {
 public:
  struct BuildResult {
    std::shared_ptr<const ServerContexts> contexts;  // null when errors is not empty
    // The listener cannot serve TLS with this configuration: `ward check`
    // fails, start refuses, a reload keeps the running contexts.
    std::vector<config::ConfigError> errors;
    // It can, but the operator should know: a certificate outside its
    // validity period (serving it beats refusing to start: clients see the
    // expiry either way, and the expiry gauge alerts), a certificate SNI can
    // never select.
    std::vector<config::ConfigError> warnings;

    bool ok() const { return errors.empty(); }
  };

  // Reads the certificates, keys and client CA of `listener.tls` (which must
  // be set) and builds the contexts. Errors carry the certificate's config
  // mark (or the listener's, for listener-wide settings) and print as
  // `file:line:col: message`. `ring` is the process's ticket key ring (may be
  // null when session_tickets is false; `ward check` can pass a throwaway
  // one). `now` is wall-clock time, for the validity warnings.
  static BuildResult build(const config::Listener& listener, std::shared_ptr<TicketKeyRing> ring,
                           std::chrono::system_clock::time_point now);

  // A server-side SSL for one accepted connection, in accept state, without
  // BIOs (hand it to asio::ssl::stream(socket, ssl.release()), or set BIOs).
  // The SSL holds a reference to these contexts until it is freed, so the
  // callbacks never see them destroyed by a reload. Null when out of memory.
  SslPtr new_ssl() const;

  const std::string& listener_name() const { return listener_name_; }
  // In config order; [0] is the default certificate. For the gauge
  // ward_tls_certificate_expiry_seconds{listener, cert=cert_path} = not_after.
  const std::vector<CertificateInfo>& certificates() const { return certificates_; }
  // The certificate SNI would pick for `server_name` (index into certificates()).
  size_t select(std::string_view server_name) const { return sni_.select(server_name); }
  // The certificate a handshake on `ssl` picked; nullopt when `ssl` is not
  // one of these contexts' connections.
  std::optional<size_t> selected_certificate(const SSL* ssl) const;
  bool session_tickets() const { return ring_ != nullptr; }
  bool client_certificates_required() const { return client_ca_required_; }

  // Use build(); public only for std::make_shared.
  struct Private {};
  explicit ServerContexts(Private) {}

 private:
  friend struct ServerCallbacks;

  std::string listener_name_;
  std::vector<SslCtxPtr> contexts_;  // parallel to certificates_
  std::vector<CertificateInfo> certificates_;
  SniTable sni_;
  std::vector<std::string> alpn_;  // in preference order
  std::shared_ptr<TicketKeyRing> ring_;
  bool client_ca_required_ = false;
};

// The contexts a listener serves new connections with, replaced whole by a
// reload. Workers call current() once per accepted connection; the main
// thread calls reload() or publish().
class ServerContextsSlot {
 public:
  ServerContextsSlot(std::shared_ptr<const ServerContexts> initial,
                     std::shared_ptr<TicketKeyRing> ring)
      : current_(std::move(initial)), ring_(std::move(ring)) {}

  std::shared_ptr<const ServerContexts> current() const {
    std::lock_guard lock(mu_);  // guards current_ (publish vs. current)
    return current_;
  }
  void publish(std::shared_ptr<const ServerContexts> next) {
    std::lock_guard lock(mu_);  // guards current_
    current_ = std::move(next);
  }

  // Re-reads the files of `listener` (its new config) into new contexts and
  // publishes them when they build without errors; otherwise keeps serving
  // the current ones. Either way returns the errors and warnings.
  ServerContexts::BuildResult reload(const config::Listener& listener,
                                     std::chrono::system_clock::time_point now);

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const ServerContexts> current_;
  std::shared_ptr<TicketKeyRing> ring_;
};

}  // namespace ward::tls
