#pragma once

// One connection to an upstream server, plain TCP or TLS (`tls: true`).
// Everything that moves bytes on it goes through read_some / write /
// shutdown_send / cancel, so the request path and the WebSocket tunnel do
// not care which of the two it is.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "proxy/tls/client_context.h"
#include "proxy/tls/tls_stream.h"
#include "proxy/upstream/host_set.h"
#include "proxy/util/deadline.h"
#include "proxy/util/io_buffer.h"

namespace ward::upstream {

// Owned by one worker. Data plane: nothing here throws on network input.
struct UpstreamConnection {
  using IoResult = std::tuple<boost::system::error_code, size_t>;

  UpstreamConnection(const boost::asio::any_io_executor& ex, size_t buffer_size)
      : socket(ex), deadline(ex), buffer(buffer_size) {
    deadline.on_expire([this] { cancel(); });
  }
  ~UpstreamConnection() { deadline.stop(); }
  UpstreamConnection(const UpstreamConnection&) = delete;
  UpstreamConnection& operator=(const UpstreamConnection&) = delete;

  // Puts TLS on the connected socket: `ssl` is a client SSL in connect state
  // made by `context`. Every wait of the stream is bounded by `deadline`.
  // Then handshake().
  void start_tls(std::shared_ptr<const tls::ClientContext> context, tls::SslPtr ssl);
  // The TLS handshake; plain connections succeed at once.
  boost::asio::awaitable<boost::system::error_code> handshake();

  // At least one byte into `b` (asio::error::eof when the server closed).
  boost::asio::awaitable<IoResult> read_some(boost::asio::mutable_buffer b);
  // Every byte of `pieces` / `b`, in order (the memory stays valid until done).
  boost::asio::awaitable<IoResult> write(std::span<const boost::asio::const_buffer> pieces);
  boost::asio::awaitable<IoResult> write(boost::asio::const_buffer b);
  // Ends the sending direction: close_notify first on TLS, then a TCP FIN.
  boost::asio::awaitable<void> shutdown_send();
  // Ends the pending waits with operation_aborted (a deadline, a reset stream).
  void cancel() {
    boost::system::error_code ignored;
    socket.cancel(ignored);
  }
  // For the pool: the server has not closed the connection nor sent bytes
  // nobody asked for. Never blocks.
  bool still_idle();

  bool is_tls() const { return tls_stream != nullptr; }
  // Why handshake() failed with `ec`, for the log: the certificate
  // verification error with the name verified, OpenSSL's reason, or ec's.
  std::string tls_failure(const boost::system::error_code& ec) const;

  boost::asio::ip::tcp::socket socket;
  util::Deadline deadline;
  util::IoBuffer buffer;
  // Declared after the socket: destroyed first (it never does I/O then).
  std::unique_ptr<tls::TlsStream> tls_stream;
  std::shared_ptr<const tls::ClientContext> tls_context;  // what made tls_stream's SSL
  // The server (the pool's key is host.get()). Owning it keeps that address
  // from going to another server's stats while this connection lives.
  std::shared_ptr<const HostStats> host;
  std::chrono::steady_clock::time_point idle_since{};
  uint32_t requests = 0;  // requests served on this connection
};

// Connects `conn` to `host` and, when `client_tls` is set, runs the TLS
// handshake (resuming `session` when not null). The caller arms
// conn.deadline first: it bounds both. Returns "" on success, otherwise why
// it failed, for a log line that names the server ("connect failed: timed
// out", "TLS handshake failed: certificate verify failed: ..."). Shared by
// the request path and the health checker, so a check fails exactly when a
// request's connection would.
boost::asio::awaitable<std::string> connect_to(
    UpstreamConnection& conn, const Host& host,
    const std::shared_ptr<const tls::ClientContext>& client_tls, SSL_SESSION* session);

}  // namespace ward::upstream
