#include "proxy/tls/connection_info.h"

#include <openssl/err.h>
#include <openssl/x509_vfy.h>

#include "proxy/tls/certificate.h"

namespace ward::tls {

namespace {

std::string_view negotiated_alpn(const SSL* ssl) {
  const unsigned char* data = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl, &data, &len);
  return {reinterpret_cast<const char*>(data), data != nullptr ? len : 0};
}

// Whether a failed client-certificate verification means "not issued by a
// CA we trust" rather than "issued by one, but wrong".
bool is_unknown_issuer(long verify_result) {
  switch (verify_result) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
      return true;
    default:
      return false;
  }
}

// One SSL-library reason code; nullopt for reasons this does not know.
std::optional<HandshakeError> classify_reason(const SSL* ssl, int reason) {
  switch (reason) {
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_SHARED_GROUPS:
    case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
      return HandshakeError::no_shared_cipher;
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_VERSION_TOO_HIGH:
    case SSL_R_WRONG_SSL_VERSION:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
      return HandshakeError::unsupported_protocol;
    case SSL_R_NO_APPLICATION_PROTOCOL:
      return HandshakeError::no_application_protocol;
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
      return HandshakeError::no_client_certificate;
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
      return is_unknown_issuer(SSL_get_verify_result(ssl)) ? HandshakeError::unknown_ca
                                                           : HandshakeError::bad_certificate;
    // Alerts the client sent about the certificate we served.
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
      return HandshakeError::certificate_rejected;
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_UNKNOWN_PROTOCOL:
      return HandshakeError::not_tls;
    case SSL_R_UNEXPECTED_EOF_WHILE_READING:
      return HandshakeError::closed;
    default:
      return std::nullopt;
  }
}

}  // namespace

AppProtocol negotiated_protocol(const SSL* ssl) {
  std::string_view p = negotiated_alpn(ssl);
  if (p == "h2") {
    return AppProtocol::h2;
  }
  if (p == "http/1.1") {
    return AppProtocol::http1;
  }
  return AppProtocol::none;
}

std::string_view to_string(AppProtocol p) {
  switch (p) {
    case AppProtocol::http1:
      return "http/1.1";
    case AppProtocol::h2:
      return "h2";
    case AppProtocol::none:
      break;
  }
  return "none";
}

std::string_view server_name(const SSL* ssl) {
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  return name != nullptr ? std::string_view(name) : std::string_view();
}

std::optional<std::string> peer_subject(const SSL* ssl) {
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr || SSL_get_verify_result(ssl) != X509_V_OK) {
    return std::nullopt;
  }
  return name_to_string(X509_get_subject_name(cert));
}

std::string_view protocol_version(const SSL* ssl) {
  return SSL_get_version(ssl);
}

std::string_view cipher_name(const SSL* ssl) {
  const char* name = SSL_CIPHER_get_name(SSL_get_current_cipher(ssl));
  return name != nullptr ? std::string_view(name) : std::string_view();
}

HandshakeError classify_handshake_error_code(const SSL* ssl, unsigned long openssl_error) {
  if (openssl_error == 0) {
    return HandshakeError::closed;
  }
  if (ERR_GET_LIB(openssl_error) != ERR_LIB_SSL) {
    return HandshakeError::other;
  }
  return classify_reason(ssl, ERR_GET_REASON(openssl_error)).value_or(HandshakeError::other);
}

void end_without_close_notify(SSL* ssl) {
  SSL_set_quiet_shutdown(ssl, 1);
  SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
}

std::string_view to_string(HandshakeError e) {
  switch (e) {
    case HandshakeError::no_shared_cipher:
      return "no_shared_cipher";
    case HandshakeError::unsupported_protocol:
      return "unsupported_protocol";
    case HandshakeError::no_application_protocol:
      return "no_application_protocol";
    case HandshakeError::no_client_certificate:
      return "no_client_certificate";
    case HandshakeError::unknown_ca:
      return "unknown_ca";
    case HandshakeError::bad_certificate:
      return "bad_certificate";
    case HandshakeError::certificate_rejected:
      return "certificate_rejected";
    case HandshakeError::not_tls:
      return "not_tls";
    case HandshakeError::closed:
      return "closed";
    case HandshakeError::other:
      break;
  }
  return "other";
}

HandshakeError classify_handshake_error(const SSL* ssl, int ret) {
  int kind = SSL_get_error(ssl, ret);
  std::optional<HandshakeError> found;
  // Walk the whole queue (oldest first): the SSL-library reason that ended
  // the handshake may follow X509 or provider errors that explain it.
  while (unsigned long e = ERR_get_error()) {
    if (!found && ERR_GET_LIB(e) == ERR_LIB_SSL) {
      found = classify_reason(ssl, ERR_GET_REASON(e));
    }
  }
  if (found) {
    return *found;
  }
  // A TCP reset or EOF before any alert: OpenSSL reports a syscall error
  // (errno, or nothing at all) without an SSL reason.
  if (kind == SSL_ERROR_SYSCALL || kind == SSL_ERROR_ZERO_RETURN) {
    return HandshakeError::closed;
  }
  return HandshakeError::other;
}

}  // namespace ward::tls
