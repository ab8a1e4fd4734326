#pragma once

// A plain-socket read that tells Asio when it emptied the socket.
//
// Asio (Boost 1.81) tries each socket read at once, before it waits for the
// socket: a "speculative" recv(2), which it skips only after a read that
// saw the end of the stream. A proxy reads mostly before the bytes come:
// the response right after the request went upstream, the client's next
// request right after its response went out. Each such try fails with
// EAGAIN first. Measured with bench h1-2workers: 1.7 failed recv(2) per
// request (HAProxy: none), and under callgrind's and perf's eyes about a
// tenth of ward's CPU per request in h1-small. Waiting instead of reading
// (async_wait) costs an epoll_ctl(2) per wait in Asio: no better.
//
// async_recv() reads as async_read_some does, through the socket's own
// reactor entry (its cancel() and close() end it the same way), but its
// operation reports a read that came back short of the buffer as having
// emptied the socket ("done_and_exhausted" in Asio's reactor). The reactor
// then tries no later read of that socket before epoll reports it readable
// again. That is safe because the socket is registered edge-triggered: a
// byte that comes after the short read raises a new edge. The report is
// made inside the read, under the reactor's own bookkeeping, so no event can
// slip between the two.
//
// The operation is built on Asio's reactor interface (asio::detail), which
// is not a public API: this is written for Boost 1.81's epoll reactor, the
// one Debian 12 ships, and any other Boost or reactor falls back to
// async_read_some (the version check below). Sockets only; TLS reads
// through it too (tls_stream.cpp), as its records come off the socket.

#include <sys/socket.h>

#include <boost/asio/associated_allocator.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/recycling_allocator.hpp>
#include <boost/version.hpp>
#include <cerrno>
#include <cstddef>
#include <memory>
#include <utility>

#if BOOST_VERSION == 108100 && defined(BOOST_ASIO_HAS_EPOLL) && \
    !defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT) && !defined(BOOST_ASIO_DISABLE_EPOLL)
#define WARD_RECV_OP 1
#include <boost/asio/detail/reactor.hpp>
#include <boost/asio/detail/reactor_op.hpp>
#include <boost/asio/detail/socket_ops.hpp>
#else
#define WARD_RECV_OP 0
#endif

namespace ward::util {

#if WARD_RECV_OP

namespace recv_detail {

// basic_socket keeps its implementation in a protected member; a member
// pointer taken in a derived class reaches it without a cast.
struct SocketAccess : boost::asio::ip::tcp::socket {
  static auto& implementation(boost::asio::ip::tcp::socket& s) {
    return (s.*(&SocketAccess::impl_)).get_implementation();
  }
};

template <typename Handler>
class RecvOp : public boost::asio::detail::reactor_op {
 public:
  using Alloc = typename std::allocator_traits<boost::asio::associated_allocator_t<
      Handler, boost::asio::recycling_allocator<void>>>::template rebind_alloc<RecvOp>;

  RecvOp(int fd, boost::asio::mutable_buffer b, Handler&& h)
      : reactor_op(boost::system::error_code(), &perform, &complete),
        fd_(fd),
        buffer_(b),
        handler_(std::move(h)) {}

  static Alloc allocator(const Handler& h) {
    return Alloc(
        boost::asio::get_associated_allocator(h, boost::asio::recycling_allocator<void>()));
  }

 private:
  static status perform(reactor_op* base) {
    auto* op = static_cast<RecvOp*>(base);
    for (;;) {
      ssize_t n = ::recv(op->fd_, op->buffer_.data(), op->buffer_.size(), MSG_DONTWAIT);
      if (n > 0) {
        op->bytes_transferred_ = static_cast<size_t>(n);
        // Short of the buffer: the socket is empty now.
        return op->bytes_transferred_ < op->buffer_.size() ? done_and_exhausted : done;
      }
      if (n == 0) {
        op->ec_ = boost::asio::error::eof;
        return done_and_exhausted;
      }
      if (errno == EINTR) {
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return not_done;
      }
      op->ec_ = boost::system::error_code(errno, boost::asio::error::get_system_category());
      return done;
    }
  }

  // owner null: the io_context is being destroyed; the handler goes unrun.
  static void complete(void* owner, boost::asio::detail::operation* base,
                       const boost::system::error_code&, size_t) {
    auto* op = static_cast<RecvOp*>(base);
    Handler handler(std::move(op->handler_));
    const boost::system::error_code ec = op->ec_;
    const size_t n = op->bytes_transferred_;
    Alloc alloc = allocator(handler);
    std::allocator_traits<Alloc>::destroy(alloc, op);
    std::allocator_traits<Alloc>::deallocate(alloc, op, 1);
    if (owner != nullptr) {
      std::move(handler)(ec, n);
    }
  }

  int fd_;
  boost::asio::mutable_buffer buffer_;
  Handler handler_;
};

template <typename Handler>
void start_recv(boost::asio::ip::tcp::socket& s, boost::asio::mutable_buffer b, Handler&& handler) {
  namespace detail = boost::asio::detail;
  auto& impl = SocketAccess::implementation(s);
  auto& context = boost::asio::query(s.get_executor(), boost::asio::execution::context);
  boost::system::error_code ec;
  if (b.size() == 0 || impl.socket_ == detail::invalid_socket ||
      (!(impl.state_ & detail::socket_ops::non_blocking) &&
       !detail::socket_ops::set_internal_non_blocking(impl.socket_, impl.state_, true, ec))) {
    // What async_read_some does with these: an empty read completes at
    // once, a closed socket or a failed fcntl with the error.
    if (!ec && impl.socket_ == detail::invalid_socket) {
      ec = boost::asio::error::bad_descriptor;
    }
    boost::asio::post(s.get_executor(),
                      [h = std::move(handler), ec]() mutable { std::move(h)(ec, 0); });
    return;
  }
  using Op = RecvOp<std::decay_t<Handler>>;
  auto alloc = Op::allocator(handler);
  Op* op = std::allocator_traits<typename Op::Alloc>::allocate(alloc, 1);
  std::allocator_traits<typename Op::Alloc>::construct(alloc, op, impl.socket_, b,
                                                       std::move(handler));
  boost::asio::use_service<detail::reactor>(context).start_op(
      detail::reactor::read_op, impl.socket_, impl.reactor_data_, op, false, true);
}

}  // namespace recv_detail

// At least one byte of `s` into `b` (asio::error::eof at the end): what
// s.async_read_some(b, token) does, minus the failed recv(2) of the next
// read after this one emptied the socket.
template <typename Token>
auto async_recv(boost::asio::ip::tcp::socket& s, boost::asio::mutable_buffer b, Token&& token) {
  return boost::asio::async_initiate<Token, void(boost::system::error_code, size_t)>(
      [](auto handler, boost::asio::ip::tcp::socket* s, boost::asio::mutable_buffer b) {
        recv_detail::start_recv(*s, b, std::move(handler));
      },
      token, &s, b);
}

#else

template <typename Token>
auto async_recv(boost::asio::ip::tcp::socket& s, boost::asio::mutable_buffer b, Token&& token) {
  return s.async_read_some(b, std::forward<Token>(token));
}

#endif

}  // namespace ward::util
