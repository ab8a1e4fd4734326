#pragma once

// The downstream TLS transport: one TLS connection over a connected,
// non-blocking TCP socket, the way nginx runs it. OpenSSL makes the socket
// syscalls itself (a socket BIO on the descriptor); Asio only reports
// readiness (socket.async_wait). Why not asio::ssl::stream: it keeps two
// 17 KiB buffers per connection for its whole life and copies every byte
// through them, and ward must hold 10,000 idle TLS connections in a few KiB
// each. Here:
//  - SSL_MODE_RELEASE_BUFFERS: OpenSSL frees its record buffers whenever they
//    are empty, so an idle connection holds none (from the end of the
//    handshake; during it they are freed only while it waits on the peer);
//  - reads decrypt straight into the caller's buffer (no copy of ours);
//  - writes gather small pieces into one record through a 16 KiB staging
//    buffer that exists only while there is something to gather
//    (release_buffers() drops it), and send large pieces from the caller's
//    memory.
//
// Data plane rules: nothing here throws on network input; every failure is
// an error_code. Waits are bounded by the caller's deadline: it cancels the
// socket (socket.cancel()), and the pending wait comes out of the call as
// asio::error::operation_aborted (see set_deadline for the race it closes).
//
// One operation of each kind at a time: handshake() alone, then at most one
// read_some() and one write() in flight together (a full-duplex relay may
// read and write concurrently). All calls on the socket's thread.

#include <openssl/ssl.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <vector>

#include "proxy/tls/connection_info.h"
#include "proxy/tls/openssl_ptr.h"
#include "proxy/util/deadline.h"

namespace ward::tls {

// The errors of the "tls" category. Transport errors keep their own codes:
// asio::error::eof (close_notify, or a FIN: see truncated()),
// connection_reset, broken_pipe, operation_aborted (the caller cancelled).
enum class StreamError {
  handshake_failed = 1,  // handshake() failed; handshake_error() says why
  protocol_error,        // a fatal TLS error after the handshake (bad record MAC, a fatal
                         // alert from the peer, a message out of order)
  internal_error,        // OpenSSL asked for something this stream never sets up
};

const boost::system::error_category& stream_category();
boost::system::error_code make_error_code(StreamError e);

// The socket end of a stream's BIO (its data pointer): the descriptor, and
// whether the BIO's last read left the socket empty (EAGAIN, or TCP_INQ's
// count of 0), which the stream then tells the reactor
// (util::note_drained, util::async_wait_readable). The stream clears
// `drained` before each OpenSSL call; while it is set, a read fails with
// EAGAIN without a recv(2).
struct BioEnd {
  int fd = -1;
  bool drained = false;
};

// The BIO method of every TlsStream's socket BIO (its data: a BioEnd).
// Public for the tests of its read rule.
const BIO_METHOD* socket_bio_method();

class TlsStream {
 public:
  using IoResult = std::tuple<boost::system::error_code, size_t>;

  // Takes ownership of `ssl` and works on `socket` (already connected; made
  // non-blocking here). The socket must outlive the stream and stay open
  // until the stream is done with it (shutdown() or destruction). `ssl` is a
  // server SSL from ServerContexts::new_ssl() (accept state), or a client SSL
  // in connect state (the handshake runs whichever way the SSL is set).
  TlsStream(boost::asio::ip::tcp::socket& socket, SslPtr ssl);
  // Never does I/O. Without a shutdown() first, marks the SSL as ended
  // without close_notify, so its session stays resumable.
  ~TlsStream();
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  // Runs the handshake to the end. On a TLS failure returns
  // StreamError::handshake_failed and handshake_error() tells why; any other
  // error (operation_aborted from the caller's deadline) is returned as it
  // is and leaves handshake_error() empty.
  boost::asio::awaitable<boost::system::error_code> handshake();
  // Why handshake() failed, classified on the thread and at the moment of
  // the failing SSL call (OpenSSL's error queue is per thread; the session
  // may look later). Empty unless handshake() returned handshake_failed.
  std::optional<HandshakeError> handshake_error() const { return handshake_error_; }

  // Reads at least one byte into `b` (decrypted in place, no copy of ours).
  // asio::error::eof when the peer closed: with close_notify, or by a bare
  // TCP FIN (then truncated() is true). An empty `b` returns 0 at once.
  boost::asio::awaitable<IoResult> read_some(boost::asio::mutable_buffer b);
  // The last eof came without close_notify: the peer (or a middlebox)
  // closed TCP mid-stream. HTTP/1 framing tells whether anything was lost.
  bool truncated() const { return truncated_; }

  // Writes every byte of `pieces`, in order. Small pieces are gathered into
  // full records (a head, a chunk-size line, the data and its CRLF go out as
  // one record and one syscall, not four); large pieces and the last one
  // are encrypted from the caller's memory. The count is what was sent
  // before an error (a lower bound), all of it on success. The pieces (the
  // array `pieces` views) and the bytes they point to must stay valid until
  // the write completes.
  boost::asio::awaitable<IoResult> write(std::span<const boost::asio::const_buffer> pieces);
  // Writes every byte of `b`, from the caller's memory (valid until done).
  boost::asio::awaitable<IoResult> write(boost::asio::const_buffer b);

  // Sends close_notify with one non-blocking attempt and does not wait for
  // the peer's (RFC 8446 6.1 allows closing without it; waiting would hold
  // the connection for a client that may never answer). When the connection
  // failed, or close_notify does not fit the socket buffer at once, marks
  // the SSL ended without it instead (end_without_close_notify). Frees the
  // staging buffer. The caller then closes the socket.
  boost::asio::awaitable<void> shutdown();

  // True when OpenSSL holds received bytes not yet returned by read_some:
  // decrypted data, or whole or partial records read ahead of it. A caller
  // deciding whether the peer has sent more (pipelining, going idle) must
  // ask this, not the socket, which may already be drained.
  bool has_buffered_data() const;

  // For a connection resting between requests (an upstream pool): one
  // non-blocking read that lets OpenSSL process the records the peer sent
  // meanwhile, such as TLS 1.3 NewSessionTicket messages (they follow the
  // handshake and may arrive after the first response). True when that was
  // all: no application data, no close_notify, no error. Never waits; a
  // false stream is done (the caller closes it).
  bool poll_idle();

  // Frees the staging buffer (when no write is using it) and any OpenSSL
  // buffer that is empty; for a connection going idle. The stream stays
  // usable: the next write that gathers allocates again.
  void release_buffers();
  // Bytes of staging buffer held now (0 or the record size): for tests and
  // memory accounting.
  size_t staging_capacity() const { return staging_ ? record_size_ : 0; }

  // OpenSSL's reason for the last TLS failure ("decryption failed or bad
  // record mac"), for debug logs; "" when there was none.
  std::string_view openssl_reason() const;

  SSL* native_handle() { return ssl_.get(); }

  // The deadline whose expiry cancels this socket (null: none). Every wait
  // first checks it, so an expiry that raced with the socket becoming ready
  // still ends the call with operation_aborted. Must outlive the stream.
  void set_deadline(const util::Deadline* deadline) { deadline_ = deadline; }

 private:
  // Whether the stream may still touch the SSL and the descriptor.
  boost::system::error_code check_usable();
  // Waits for the readiness `ssl_error` (WANT_READ / WANT_WRITE) asks for.
  boost::asio::awaitable<boost::system::error_code> wait(int ssl_error);
  // Before each OpenSSL call on the stream: an empty error queue (this
  // thread's; SSL_get_error reads it) and a BIO that has read nothing yet
  // in this call (BioEnd::drained).
  void begin_call();
  // After an OpenSSL call that succeeded: when the BIO's last read emptied
  // the socket, the reactor is told (util::note_drained).
  void note_drained();
  boost::asio::awaitable<boost::system::error_code> write_all(const char* data, size_t size);
  boost::asio::awaitable<boost::system::error_code> flush_staging(size_t size);
  // The error of a failed SSL_read_ex / SSL_write_ex; records fatal ones.
  boost::system::error_code io_failure(int ssl_error, int sys_errno);
  // A wait that ended in error (cancelled): fatal when OpenSSL holds part of
  // a record to send, since nothing but that exact retry may be written now.
  boost::system::error_code wait_failure(boost::system::error_code ec, int ssl_error);
  void on_established();

  boost::asio::ip::tcp::socket& socket_;
  // Before ssl_: the SSL owns the BIO, whose data points here.
  BioEnd bio_;  // what the BIO reads and writes
  SslPtr ssl_;
  const util::Deadline* deadline_ = nullptr;
  std::unique_ptr<char[]> staging_;   // record_size_ bytes while allocated
  boost::system::error_code failed_;  // the first fatal error; every later call returns it
  unsigned long openssl_error_ = 0;   // packed ERR code of the last TLS failure
  size_t record_size_ = SSL3_RT_MAX_PLAIN_LENGTH;  // plaintext bytes per record
  std::optional<HandshakeError> handshake_error_;
  bool truncated_ = false;
  bool staging_busy_ = false;  // a write is sending from staging_: it must not be freed
  bool shutdown_done_ = false;
};

// A connection's byte I/O whichever it is: through `tls` when it is set,
// else straight on `socket`. For the downstream session, the HTTP/2 codec
// and upstream connections alike, so none of them repeats the dispatch.
// Plain functions, not coroutines: they hand back the awaitable of the
// operation itself, so a plain TCP read or write costs no coroutine frame
// and no resume of its own (a request makes four of them). Everything they
// take is copied into the returned awaitable except what `pieces` views:
// that array, like every buffer's bytes, must outlive the co_await.
boost::asio::awaitable<TlsStream::IoResult> read_some(boost::asio::ip::tcp::socket& socket,
                                                      TlsStream* tls,
                                                      boost::asio::mutable_buffer b);
// A span, not a vector: Asio copies the buffer sequence into the operation
// (twice), and a vector's copy is an allocation per write.
boost::asio::awaitable<TlsStream::IoResult> write(
    boost::asio::ip::tcp::socket& socket, TlsStream* tls,
    std::span<const boost::asio::const_buffer> pieces);
boost::asio::awaitable<TlsStream::IoResult> write(boost::asio::ip::tcp::socket& socket,
                                                  TlsStream* tls, boost::asio::const_buffer b);

}  // namespace ward::tls

template <>
struct boost::system::is_error_code_enum<ward::tls::StreamError> : std::true_type {};
