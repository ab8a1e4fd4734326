#include "proxy/upstream/upstream_connection.h"

#include <openssl/x509.h>
#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>

#include "proxy/util/recv_op.h"

// Style note: GCC 12 miscompiles some coroutine shapes (a co_await inside a
// condition or a ternary, `co_return co_await`). Every co_await here is a
// plain statement or initializes a variable.

namespace ward::upstream {

namespace asio = boost::asio;
using boost::system::error_code;

void UpstreamConnection::start_tls(std::shared_ptr<const tls::ClientContext> context,
                                   tls::SslPtr ssl) {
  tls_context = std::move(context);
  tls_stream = std::make_unique<tls::TlsStream>(socket, std::move(ssl));
  tls_stream->set_deadline(&deadline);
}

asio::awaitable<error_code> UpstreamConnection::handshake() {
  if (!tls_stream) {
    co_return error_code{};
  }
  error_code ec = co_await tls_stream->handshake();
  co_return ec;
}

// Plain functions handing back tls::read_some / tls::write's awaitable: no
// coroutine frame of their own on the hot path.
asio::awaitable<UpstreamConnection::IoResult> UpstreamConnection::read_some(
    asio::mutable_buffer b) {
  return tls::read_some(socket, tls_stream.get(), b);
}

asio::awaitable<UpstreamConnection::IoResult> UpstreamConnection::write(
    std::span<const asio::const_buffer> pieces) {
  return tls::write(socket, tls_stream.get(), pieces);
}

asio::awaitable<UpstreamConnection::IoResult> UpstreamConnection::write(asio::const_buffer b) {
  return tls::write(socket, tls_stream.get(), b);
}

asio::awaitable<void> UpstreamConnection::shutdown_send() {
  if (tls_stream) {
    co_await tls_stream->shutdown();  // close_notify: the TLS way to half-close
  }
  error_code ignored;
  socket.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
}

std::string UpstreamConnection::tls_failure(const error_code& ec) const {
  if (!tls_stream || ec != tls::StreamError::handshake_failed) {
    return ec.message();
  }
  SSL* ssl = tls_stream->native_handle();
  long verify = SSL_get_verify_result(ssl);
  if (verify != X509_V_OK) {
    std::string why = "certificate verify failed: ";
    why += X509_verify_cert_error_string(verify);
    const char* name = X509_VERIFY_PARAM_get0_host(SSL_get0_param(ssl), 0);
    if (name != nullptr) {
      why += std::string(" (verifying \"") + name + "\")";
    }
    return why;
  }
  std::string_view reason = tls_stream->openssl_reason();
  return reason.empty() ? ec.message() : std::string(reason);
}

asio::awaitable<std::string> connect_to(UpstreamConnection& conn, const Host& host,
                                        const std::shared_ptr<const tls::ClientContext>& client_tls,
                                        SSL_SESSION* session) {
  auto [ec] =
      co_await conn.socket.async_connect(host.endpoint, asio::as_tuple(asio::use_awaitable));
  if (ec) {
    co_return "connect failed: " +
        (conn.deadline.expired() ? std::string("timed out") : ec.message());
  }
  error_code ignored;
  conn.socket.set_option(asio::ip::tcp::no_delay(true), ignored);
  util::enable_inq(conn.socket.native_handle());  // for util::async_recv and the TLS BIO
  if (!client_tls) {
    co_return std::string();
  }
  // The handshake (and verification) is part of connecting: the same
  // deadline bounds both, and a failure is a connect failure.
  tls::SslPtr ssl = client_tls->new_ssl(host.host);
  if (!ssl) {
    co_return "TLS: cannot set up a connection for \"" + client_tls->verified_name(host.host) +
        "\"";
  }
  if (session != nullptr) {
    SSL_set_session(ssl.get(), session);  // resumption: no chain to send or verify
  }
  conn.start_tls(client_tls, std::move(ssl));
  error_code hec = co_await conn.handshake();
  if (hec) {
    co_return "TLS handshake failed: " +
        (conn.deadline.expired() ? std::string("timed out") : conn.tls_failure(hec));
  }
  co_return std::string();
}

bool UpstreamConnection::still_idle() {
  char byte;
  ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  bool quiet = n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  if (!tls_stream) {
    return quiet;  // any byte, a FIN or an error: not reusable
  }
  if (n == 0 || (n < 0 && !quiet)) {
    return false;  // FIN without close_notify, or a socket error
  }
  if (quiet && !tls_stream->has_buffered_data()) {
    return true;
  }
  // Readable is not a verdict on TLS: a TLS 1.3 server sends its session
  // tickets after the handshake, possibly after the response, and they are
  // records, not HTTP bytes. Let OpenSSL read what is there without
  // waiting; only application data, close_notify or an error disqualify.
  // (Accepting "readable" blindly would leave a closed connection to the
  // retry logic, which cannot replay requests with a body.)
  return tls_stream->poll_idle();
}

}  // namespace ward::upstream
