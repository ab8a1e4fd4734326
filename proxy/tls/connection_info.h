#pragma once

// What a session asks of one TLS connection: the negotiated application
// protocol, the server name, the verified client identity, the version for
// the access log, and why a handshake failed (for
// ward_tls_handshake_errors_total{listener,reason}). Data plane: nothing here
// allocates except the returned strings, throws or blocks.

#include <openssl/ssl.h>

#include <array>
#include <optional>
#include <string>
#include <string_view>

namespace ward::tls {

// The ALPN result (RFC 7301). `none`: the client sent no ALPN extension;
// treat it as HTTP/1.1 (old clients, curl --no-alpn, health checkers).
enum class AppProtocol { none, http1, h2 };

AppProtocol negotiated_protocol(const SSL* ssl);
std::string_view to_string(AppProtocol p);  // "none", "http/1.1", "h2"

// The SNI the client sent ("" when none), as sent (not lower-cased).
std::string_view server_name(const SSL* ssl);

// The subject (RFC 2253, "CN=client,O=Example") of the client certificate,
// only when one was presented and verified against client_ca; for logs.
std::optional<std::string> peer_subject(const SSL* ssl);

// "TLSv1.3", "TLSv1.2": the access log's tls_version.
std::string_view protocol_version(const SSL* ssl);
// "TLS_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256".
std::string_view cipher_name(const SSL* ssl);

// Call before freeing the SSL of a connection that ends without the
// close_notify exchange (the client vanished, a timeout, a reset): marks it
// shut down, so OpenSSL keeps its session in the listener's cache instead of
// dropping it as suspect (ssl_clear_bad_session; nginx does the same). A
// fatal alert has already invalidated the session and this does not undo
// that. Stateless tickets do not need it; session-id resumption (TLS 1.2)
// and `session_tickets: false` do.
void end_without_close_notify(SSL* ssl);

// Why a handshake failed, as a metric label. The set is closed so each
// label can be registered (at zero) up front.
enum class HandshakeError {
  no_shared_cipher,         // the client offers no cipher suite or group we accept
  unsupported_protocol,     // SSLv3 / TLS 1.0 / 1.1, or 1.2 under min_version 1.3
  no_application_protocol,  // ALPN offered, but none of the listener's alpn
  no_client_certificate,    // mTLS listener, the client sent no certificate
  unknown_ca,               // the client certificate does not chain to client_ca
  bad_certificate,          // the client certificate chains but is invalid (expired...)
  certificate_rejected,     // the client refused OUR certificate (alert: unknown CA,
                            // expired, bad certificate): check the served chain
  not_tls,                  // plain HTTP or other non-TLS bytes on a TLS port
  closed,                   // the peer closed or reset the connection mid-handshake
  other,
};

inline constexpr std::array<HandshakeError, 10> kHandshakeErrors = {
    HandshakeError::no_shared_cipher,
    HandshakeError::unsupported_protocol,
    HandshakeError::no_application_protocol,
    HandshakeError::no_client_certificate,
    HandshakeError::unknown_ca,
    HandshakeError::bad_certificate,
    HandshakeError::certificate_rejected,
    HandshakeError::not_tls,
    HandshakeError::closed,
    HandshakeError::other,
};

std::string_view to_string(HandshakeError e);  // the label: "no_shared_cipher"...

// Classifies a failed handshake step. Call on the thread that made the
// failing SSL call (SSL_do_handshake, or a read/write that ran the
// handshake), right after it, with that call's return value: it reads
// SSL_get_error and OpenSSL's per-thread error queue, and empties the
// queue (so the next connection on this thread starts clean).
HandshakeError classify_handshake_error(const SSL* ssl, int ret);

// The same from one packed OpenSSL error code, for a caller that got the
// failure through another layer. asio::ssl::stream takes the code off the
// queue itself and reports error_code(code, asio::error::get_ssl_category()):
// pass ec.value() here. Map asio's ssl::error::stream_truncated and eof to
// HandshakeError::closed yourself; 0 (no code) is `closed` here too.
HandshakeError classify_handshake_error_code(const SSL* ssl, unsigned long openssl_error);

}  // namespace ward::tls
