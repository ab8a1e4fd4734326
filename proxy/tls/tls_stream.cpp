#include "proxy/tls/tls_stream.h"

#include <errno.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>
#include <utility>

#include "proxy/util/recv_op.h"
#include "proxy/util/spare.h"

// Style note: GCC 12 miscompiles some coroutine shapes (a co_await inside a
// condition or a ternary, `co_return co_await`). Every co_await here is a
// plain statement or initializes a variable.

namespace ward::tls {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);

// ---------------------------------------------------------------------------
// The socket BIO: OpenSSL's BIO_s_socket (what SSL_set_fd installs) does
// write(2), and a write to a connection the peer has reset raises SIGPIPE,
// which kills any process that has not ignored it (a test binary, a tool
// linking this library). This one is the same few lines with send(2) and
// MSG_NOSIGNAL: EPIPE comes back as an error instead. No buffering: one
// syscall per call, as with BIO_s_socket.

BioEnd& bio_end(BIO* b) {
  return *static_cast<BioEnd*>(BIO_get_data(b));
}

int bio_fd(BIO* b) {
  return bio_end(b).fd;
}

bool would_block(int e) {
  return e == EAGAIN || e == EWOULDBLOCK || e == EINTR;
}

int bio_write(BIO* b, const char* data, int len) {
  BIO_clear_retry_flags(b);
  ssize_t n = ::send(bio_fd(b), data, static_cast<size_t>(len), MSG_NOSIGNAL);
  if (n < 0 && would_block(errno)) {
    BIO_set_retry_write(b);
  }
  return static_cast<int>(n);
}

int bio_read(BIO* b, char* out, int len) {
  BIO_clear_retry_flags(b);
  BioEnd& end = bio_end(b);
  if (end.drained) {
    // A read earlier in this same OpenSSL call emptied the socket (the
    // stream clears the flag before each call), as when the handshake reads
    // the ClientHello, writes its flight and reads on for the client's
    // Finished. A recv(2) now would fail with EAGAIN: say so without it.
    // Bytes that came since raised an edge, which ends the wait that
    // follows (TlsStream::wait, told the socket is drained).
    BIO_set_retry_read(b);
    errno = EAGAIN;
    return -1;
  }
  // With the count of what is left (TCP_INQ): the stream tells the reactor
  // when this read emptied the socket (util/recv_op.h).
  const util::InqRead r = util::recv_inq(end.fd, out, static_cast<size_t>(len));
  const ssize_t n = r.n;
  end.drained = r.empty;
  if (n == 0) {
    // BIO_eof() true: OpenSSL then reports a FIN without close_notify as
    // SSL_R_UNEXPECTED_EOF_WHILE_READING, which is how truncated() knows.
    BIO_set_flags(b, BIO_FLAGS_IN_EOF);
  } else if (n < 0 && would_block(errno)) {
    BIO_set_retry_read(b);
    end.drained = errno != EINTR;  // EAGAIN: nothing queued, not even a FIN
  }
  return static_cast<int>(n);
}

long bio_ctrl(BIO* b, int cmd, long /*num*/, void* ptr) {
  switch (cmd) {
    case BIO_C_GET_FD: {
      int fd = bio_fd(b);
      if (ptr != nullptr) {
        *static_cast<int*>(ptr) = fd;
      }
      return fd;
    }
    case BIO_CTRL_EOF:
      return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0 ? 1 : 0;
    case BIO_CTRL_FLUSH:
      return 1;  // nothing is buffered here
    default:
      return 0;
  }
}

bool wants_io(int ssl_error) {
  return ssl_error == SSL_ERROR_WANT_READ || ssl_error == SSL_ERROR_WANT_WRITE;
}

// Takes the newest error off this thread's queue and empties it (the next
// connection on this thread must start clean: SSL_get_error reads it).
unsigned long take_last_error() {
  unsigned long e = ERR_peek_last_error();
  ERR_clear_error();
  return e;
}

class StreamCategory : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "tls"; }
  std::string message(int ev) const override {
    switch (static_cast<StreamError>(ev)) {
      case StreamError::handshake_failed:
        return "TLS handshake failed";
      case StreamError::protocol_error:
        return "TLS protocol error";
      case StreamError::internal_error:
        return "TLS internal error";
    }
    return "unknown TLS error";
  }
};

}  // namespace

// Built once, immutable afterwards and only read by BIO_new, so sharing it
// between worker threads is safe; like OpenSSL's own methods it lives as
// long as the process.
const BIO_METHOD* socket_bio_method() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                 "ward socket");
    if (m != nullptr) {
      BIO_meth_set_write(m, bio_write);
      BIO_meth_set_read(m, bio_read);
      BIO_meth_set_ctrl(m, bio_ctrl);
    }
    return m;
  }();
  return method;
}

const boost::system::error_category& stream_category() {
  static const StreamCategory category;
  return category;
}

error_code make_error_code(StreamError e) {
  return {static_cast<int>(e), stream_category()};
}

TlsStream::TlsStream(asio::ip::tcp::socket& socket, SslPtr ssl)
    : socket_(socket), ssl_(std::move(ssl)) {
  bio_.fd = socket.native_handle();
  if (!ssl_) {
    failed_ = StreamError::internal_error;
    return;
  }
  // RELEASE_BUFFERS: idle connections hold no record buffers.
  // ACCEPT_MOVING_WRITE_BUFFER: a retried SSL_write must pass the same bytes,
  // not necessarily the same address (belt and braces: we retry in place).
  // Not ENABLE_PARTIAL_WRITE: SSL_write_ex returning part of a buffer would
  // only move the loop that finishes it from OpenSSL into write_all().
  // RELEASE_BUFFERS only from the end of the handshake (on_established): set
  // during it, OpenSSL frees and takes again its two 16 KiB record buffers
  // after every flight and record, about ten large malloc/free pairs per full
  // handshake. handshake() frees them itself while it waits on the peer.
  SSL_set_mode(ssl_.get(), SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_clear_mode(ssl_.get(), SSL_MODE_RELEASE_BUFFERS);
  // Read ahead: one recv(2) fetches as many records as fit OpenSSL's read
  // buffer instead of two syscalls per record (header, then body), as nginx
  // does. It is why has_buffered_data() asks SSL_has_pending, not
  // SSL_pending.
  SSL_set_read_ahead(ssl_.get(), 1);
  error_code ec;
  socket_.non_blocking(true, ec);
  if (ec) {
    failed_ = ec;
    return;
  }
  const BIO_METHOD* method = socket_bio_method();
  BIO* bio = method != nullptr ? BIO_new(method) : nullptr;
  if (bio == nullptr) {
    ERR_clear_error();
    failed_ = make_error_code(boost::system::errc::not_enough_memory);
    return;
  }
  BIO_set_data(bio, &bio_);  // declared before ssl_, so it outlives the BIO
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl_.get(), bio, bio);  // the SSL owns the BIO; the BIO never closes the fd
}

TlsStream::~TlsStream() {
  if (!staging_busy_) {
    util::give_block(staging_, record_size_);
  }
  if (ssl_ && !shutdown_done_) {
    end_without_close_notify(ssl_.get());
  }
}

error_code TlsStream::check_usable() {
  if (failed_) {
    return failed_;
  }
  // Closed, or closed and reopened: that descriptor number may now be
  // another connection's, so OpenSSL must not touch it.
  if (socket_.native_handle() != bio_.fd) {
    return asio::error::bad_descriptor;
  }
  return {};
}

asio::awaitable<error_code> TlsStream::handshake() {
  for (;;) {
    error_code ec = check_usable();
    if (ec) {
      co_return ec;
    }
    begin_call();
    int ret = SSL_do_handshake(ssl_.get());
    if (ret == 1) {
      note_drained();
      on_established();
      co_return error_code{};
    }
    int err = SSL_get_error(ssl_.get(), ret);
    if (wants_io(err)) {
      // A handshake waiting on its peer holds no record buffers: a crowd of
      // clients stalled mid-handshake costs what idle connections do.
      // SSL_free_buffers keeps them when they hold unsent or unread bytes;
      // with bytes read ahead it is not even asked.
      if (SSL_has_pending(ssl_.get()) == 0) {
        SSL_free_buffers(ssl_.get());
      }
      error_code wait_ec = co_await wait(err);
      if (wait_ec) {
        failed_ = wait_ec;  // a handshake cut short cannot be resumed
        co_return wait_ec;
      }
      continue;
    }
    // Classify now: the error queue is this thread's, and it is emptied here.
    openssl_error_ = ERR_peek_last_error();
    handshake_error_ = classify_handshake_error(ssl_.get(), ret);
    failed_ = StreamError::handshake_failed;
    co_return failed_;
  }
}

void TlsStream::on_established() {
  SSL_set_mode(ssl_.get(), SSL_MODE_RELEASE_BUFFERS);
  // RFC 6066 4: a client may have negotiated smaller records; staging more
  // than one record's worth would only split it again.
  uint8_t mfl = SSL_SESSION_get_max_fragment_length(SSL_get_session(ssl_.get()));
  if (mfl >= TLSEXT_max_fragment_length_512 && mfl <= TLSEXT_max_fragment_length_4096) {
    size_t size = size_t{512} << (mfl - TLSEXT_max_fragment_length_512);
    if (size != record_size_ && !staging_busy_) {
      util::give_block(staging_, record_size_);
      record_size_ = size;
    }
  }
}

asio::awaitable<TlsStream::IoResult> TlsStream::read_some(asio::mutable_buffer b) {
  if (b.size() == 0) {
    co_return IoResult{error_code{}, 0};
  }
  for (;;) {
    error_code ec = check_usable();
    if (ec) {
      co_return IoResult{ec, 0};
    }
    begin_call();
    errno = 0;
    size_t n = 0;
    int ret = SSL_read_ex(ssl_.get(), b.data(), b.size(), &n);
    if (ret == 1) {
      note_drained();
      co_return IoResult{error_code{}, n};
    }
    int sys_errno = errno;
    int err = SSL_get_error(ssl_.get(), ret);
    if (!wants_io(err)) {
      co_return IoResult{io_failure(err, sys_errno), 0};
    }
    // WANT_WRITE too: a TLS 1.3 KeyUpdate answer or an alert to send.
    error_code wait_ec = co_await wait(err);
    if (wait_ec) {
      co_return IoResult{wait_failure(wait_ec, err), 0};
    }
  }
}

asio::awaitable<error_code> TlsStream::wait(int ssl_error) {
  // socket.cancel() only reaches a wait that is pending: when the deadline
  // fires after the socket became ready but before this stream resumed, it
  // finds nothing, and a record trickling in byte by byte (slowloris) could
  // then keep the next wait going with no deadline left to end it.
  if (deadline_ != nullptr && deadline_->expired()) {
    co_return asio::error::operation_aborted;
  }
  if (ssl_error == SSL_ERROR_WANT_WRITE) {
    auto [ec] = co_await socket_.async_wait(asio::socket_base::wait_write, kNoThrow);
    co_return ec;
  }
  // The BIO's last read, in the OpenSSL call that just asked for this
  // wait, left the socket empty: the wait needs no check of its own.
  const bool drained = std::exchange(bio_.drained, false);
  auto [ec] = co_await util::async_wait_readable(socket_, drained, kNoThrow);
  co_return ec;
}

void TlsStream::begin_call() {
  ERR_clear_error();
  bio_.drained = false;
}

void TlsStream::note_drained() {
  // The BIO's last read, within the OpenSSL call that just returned, left
  // the socket empty: the reactor may skip its next check (util/recv_op.h).
  if (std::exchange(bio_.drained, false)) {
    util::note_drained(socket_);
  }
}

asio::awaitable<error_code> TlsStream::write_all(const char* data, size_t size) {
  for (;;) {
    error_code ec = check_usable();
    if (ec) {
      co_return ec;
    }
    if ((SSL_get_shutdown(ssl_.get()) & SSL_SENT_SHUTDOWN) != 0) {
      co_return asio::error::shut_down;
    }
    begin_call();
    errno = 0;
    size_t n = 0;
    // Without partial writes, success means all of `size` is sent; after
    // WANT_*, the retry continues where the record layer stopped.
    int ret = SSL_write_ex(ssl_.get(), data, size, &n);
    if (ret == 1) {
      co_return error_code{};
    }
    int sys_errno = errno;
    int err = SSL_get_error(ssl_.get(), ret);
    if (!wants_io(err)) {
      co_return io_failure(err, sys_errno);
    }
    error_code wait_ec = co_await wait(err);
    if (wait_ec) {
      // A partial record may be queued in OpenSSL: the stream is done.
      failed_ = wait_ec;
      co_return wait_ec;
    }
  }
}

asio::awaitable<error_code> TlsStream::flush_staging(size_t size) {
  staging_busy_ = true;
  error_code ec = co_await write_all(staging_.get(), size);
  staging_busy_ = false;
  co_return ec;
}

asio::awaitable<TlsStream::IoResult> TlsStream::write(asio::const_buffer b) {
  if (b.size() == 0) {
    co_return IoResult{error_code{}, 0};
  }
  error_code ec = co_await write_all(static_cast<const char*>(b.data()), b.size());
  co_return IoResult{ec, ec ? 0 : b.size()};
}

asio::awaitable<TlsStream::IoResult> TlsStream::write(std::span<const asio::const_buffer> pieces) {
  // The last non-empty piece goes out from the caller's memory: nothing
  // follows it to gather with.
  size_t last = pieces.size();
  for (size_t i = pieces.size(); i-- > 0;) {
    if (pieces[i].size() != 0) {
      last = i;
      break;
    }
  }
  size_t written = 0;  // bytes SSL_write_ex has sent
  size_t staged = 0;   // bytes copied into staging_ and not sent yet
  for (size_t i = 0; i < pieces.size() && i <= last; ++i) {
    const char* p = static_cast<const char*>(pieces[i].data());
    size_t left = pieces[i].size();
    while (left > 0) {
      if (staged == 0 && (i == last || left >= record_size_)) {
        // Whole records straight from the caller's memory; a large piece's
        // tail (less than a record) is gathered with what follows it.
        size_t direct = i == last ? left : left - left % record_size_;
        error_code ec = co_await write_all(p, direct);
        if (ec) {
          co_return IoResult{ec, written};
        }
        p += direct;
        left -= direct;
        written += direct;
        continue;
      }
      if (!staging_) {
        staging_ = util::take_block(record_size_);
        if (!staging_) {
          co_return IoResult{make_error_code(boost::system::errc::not_enough_memory), written};
        }
      }
      size_t n = std::min(left, record_size_ - staged);
      std::memcpy(staging_.get() + staged, p, n);
      staged += n;
      p += n;
      left -= n;
      if (staged == record_size_ || (i == last && left == 0)) {
        error_code ec = co_await flush_staging(staged);
        if (ec) {
          co_return IoResult{ec, written};
        }
        written += staged;
        staged = 0;
      }
    }
  }
  co_return IoResult{error_code{}, written};
}

asio::awaitable<void> TlsStream::shutdown() {
  if (shutdown_done_ || !ssl_) {
    co_return;
  }
  shutdown_done_ = true;
  if (!staging_busy_) {
    util::give_block(staging_, record_size_);
  }
  // No close_notify after a fatal error (OpenSSL forbids it), before the
  // handshake finished, or on a descriptor that is no longer ours.
  if (check_usable() || !SSL_is_init_finished(ssl_.get())) {
    end_without_close_notify(ssl_.get());
    co_return;
  }
  begin_call();
  // One attempt: 0 (sent; the peer's not read) and 1 (both) are done. Below
  // 0 the socket buffer is full or the connection broke: give up on it.
  if (SSL_shutdown(ssl_.get()) < 0) {
    ERR_clear_error();
    end_without_close_notify(ssl_.get());
  }
  co_return;
}

bool TlsStream::has_buffered_data() const {
  return ssl_ && SSL_has_pending(ssl_.get()) == 1;
}

bool TlsStream::poll_idle() {
  if (check_usable() || SSL_pending(ssl_.get()) > 0) {
    return false;  // unusable, or decrypted application data waiting
  }
  begin_call();
  errno = 0;
  char byte = 0;
  size_t n = 0;
  int ret = SSL_read_ex(ssl_.get(), &byte, 1, &n);
  if (ret == 1) {
    // Application data nobody asked for: the framing can no longer be trusted.
    failed_ = StreamError::protocol_error;
    return false;
  }
  int sys_errno = errno;
  int err = SSL_get_error(ssl_.get(), ret);
  if (err == SSL_ERROR_WANT_READ) {
    return true;  // only handshake-layer records (tickets), or nothing at all
  }
  if (err == SSL_ERROR_WANT_WRITE) {
    // An answer (KeyUpdate) does not fit the socket now: nothing may be
    // written but its retry, which no one will make.
    ERR_clear_error();
    failed_ = asio::error::would_block;
    return false;
  }
  io_failure(err, sys_errno);  // close_notify, FIN, or a fatal alert
  return false;
}

void TlsStream::release_buffers() {
  if (!staging_busy_) {
    util::give_block(staging_, record_size_);  // to the next connection that writes
  }
  if (ssl_) {
    // Fails, harmlessly, while OpenSSL holds unread or unsent bytes.
    int freed = SSL_free_buffers(ssl_.get());
    (void)freed;
  }
}

std::string_view TlsStream::openssl_reason() const {
  const char* r = openssl_error_ != 0 ? ERR_reason_error_string(openssl_error_) : nullptr;
  return r != nullptr ? std::string_view(r) : std::string_view();
}

error_code TlsStream::io_failure(int ssl_error, int sys_errno) {
  switch (ssl_error) {
    case SSL_ERROR_ZERO_RETURN:
      // close_notify: a clean end; later reads return eof again.
      ERR_clear_error();
      return asio::error::eof;
    case SSL_ERROR_SYSCALL: {
      unsigned long e = take_last_error();
      if (sys_errno == 0 && e != 0 && ERR_GET_LIB(e) == ERR_LIB_SYS) {
        sys_errno = ERR_GET_REASON(e);
      }
      if (sys_errno == 0) {
        // OpenSSL 1.1-style EOF report: no errno, no reason.
        truncated_ = true;
        failed_ = asio::error::eof;
      } else {
        failed_ = error_code(sys_errno, boost::system::system_category());
      }
      return failed_;
    }
    case SSL_ERROR_SSL: {
      openssl_error_ = take_last_error();
      if (ERR_GET_LIB(openssl_error_) == ERR_LIB_SSL &&
          ERR_GET_REASON(openssl_error_) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        truncated_ = true;
        failed_ = asio::error::eof;
      } else {
        failed_ = StreamError::protocol_error;
      }
      return failed_;
    }
    default:
      // WANT_X509_LOOKUP, WANT_ASYNC...: callbacks this stream never installs.
      openssl_error_ = take_last_error();
      failed_ = StreamError::internal_error;
      return failed_;
  }
}

error_code TlsStream::wait_failure(error_code ec, int ssl_error) {
  if (ssl_error == SSL_ERROR_WANT_WRITE) {
    failed_ = ec;  // part of a KeyUpdate or alert is queued: only its retry may follow
  }
  return ec;
}

asio::awaitable<TlsStream::IoResult> read_some(tcp::socket& socket, TlsStream* tls,
                                               asio::mutable_buffer b) {
  if (tls != nullptr) {
    return tls->read_some(b);
  }
  return util::async_recv(socket, b, kNoThrow);
}

asio::awaitable<TlsStream::IoResult> write(tcp::socket& socket, TlsStream* tls,
                                           std::span<const asio::const_buffer> pieces) {
  if (tls != nullptr) {
    return tls->write(pieces);
  }
  return asio::async_write(socket, pieces, kNoThrow);
}

asio::awaitable<TlsStream::IoResult> write(tcp::socket& socket, TlsStream* tls,
                                           asio::const_buffer b) {
  if (tls != nullptr) {
    return tls->write(b);
  }
  return asio::async_write(socket, b, kNoThrow);
}

}  // namespace ward::tls
