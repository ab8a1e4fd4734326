#pragma once

// Socket reads and waits that tell Asio when the socket is empty.
//
// Asio (Boost 1.81) tries each socket read at once, before it waits for the
// socket: a "speculative" recv(2), which it skips only after a read that
// saw the end of the stream. A proxy reads mostly before the bytes come:
// the response right after the request went upstream, the client's next
// request right after its response went out. Each such try fails with
// EAGAIN first. Measured with bench h1-2workers: 1.7 failed recv(2) per
// request (HAProxy: none); with them gone, ward's CPU per request for
// plain keep-alive HTTP/1.1 fell from about 15.6 to 14.3 us. And every socket wait (async_wait)
// costs an epoll_ctl(2) in Asio, which re-arms the descriptor each time.
//
// async_recv() reads as async_read_some does, through the socket's own
// reactor entry (its cancel() and close() end it the same way), but when
// its read leaves the socket empty, its operation says so to the reactor
// ("done_and_exhausted"), which then tries no later read of that socket
// before epoll reports it readable again. That is safe because the socket
// is registered edge-triggered: a byte that comes later raises a new edge.
// The report is made inside the read, under the reactor's own bookkeeping,
// so no event can slip between the two.
//
// "Empty" is the kernel's word, not a guess from a short read: with TCP_INQ
// on (enable_inq; accepted sockets inherit it from the listener) each
// recvmsg(2) returns how many bytes are still queued, and counts a FIN as
// one. A short read is not enough: bytes and the FIN often come in one edge
// (a "Connection: close" response, a client that half-closes after its
// request), and a read that waited for another edge after taking the bytes
// would never see the end. Without TCP_INQ (an old kernel, or a socket that
// lacks it) nothing is reported and the reactor behaves as Asio's does.
// One thing the count misses is a reset: bytes and a reset that came in one
// edge read as nothing left, and the next read would wait for an edge that
// never comes. So after an edge that said "hung up" (EPOLLHUP: a reset, or
// both directions closed), which Asio keeps in the socket's reactor entry,
// a read is never reported as emptying the socket: the next one is tried at
// once and finds the reset (reads of a hung-up socket never block).
//
// TLS reads are OpenSSL's own (a socket BIO, which reads with recv_inq()),
// so for them there is a wait and a note. async_wait_readable() waits as
// async_wait(wait_read) does, without the epoll_ctl: it is queued like a
// read, and at its start it checks the socket (poll(2)) only while the
// reactor does not know it to be empty. note_drained() tells the reactor
// that a read of the caller's own left the socket empty just now, as
// async_recv's operation would have.
//
// These operations are built on Asio's reactor interface (asio::detail),
// which is not a public API: they are written for Boost 1.81's epoll
// reactor, the one Debian 12 ships, and any other Boost or reactor falls
// back to async_read_some and async_wait (the version check below).

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>

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
#include <cstring>
#include <memory>
#include <type_traits>
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

// Turns TCP_INQ on for `fd`: its reads then report the bytes still queued.
// False when the kernel refused (the reads report nothing then).
inline bool enable_inq(int fd) {
  int one = 1;
  return ::setsockopt(fd, IPPROTO_TCP, TCP_INQ, &one, sizeof one) == 0;
}

struct InqRead {
  ssize_t n = -1;      // what recv(2) returns; errno holds the error when < 0
  bool empty = false;  // n > 0 and nothing (not even a FIN) is left queued
};

// One non-blocking recv of up to `len` bytes into `out`, with the queue's
// count when TCP_INQ is on.
inline InqRead recv_inq(int fd, void* out, size_t len) {
  iovec iov{out, len};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  InqRead r;
  r.n = ::recvmsg(fd, &msg, MSG_DONTWAIT);
  if (r.n > 0) {
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == IPPROTO_TCP && c->cmsg_type == TCP_CM_INQ) {
        int queued = 0;
        std::memcpy(&queued, CMSG_DATA(c), sizeof queued);
        r.empty = queued == 0;
      }
    }
  }
  return r;
}

#if WARD_RECV_OP

namespace recv_detail {

// basic_socket keeps its implementation in a protected member; a member
// pointer taken in a derived class reaches it without a cast.
struct SocketAccess : boost::asio::ip::tcp::socket {
  static auto& implementation(boost::asio::ip::tcp::socket& s) {
    return (s.*(&SocketAccess::impl_)).get_implementation();
  }
};

// What an operation does when the reactor performs it: at its start
// (speculatively, inside start_op) or when epoll reported the socket.
enum class Kind : unsigned char {
  recv,          // reads; emptied the socket when TCP_INQ says nothing is left
  wait,          // waits for readability; at the start, checks (poll) first
  wait_drained,  // waits; the caller saw the socket empty just now
  mark,          // tells the reactor the socket is empty; no handler
};

// kBytes: the handler takes (error_code, size_t), as a read's does; else
// (error_code), as a wait's does.
template <bool kBytes, typename Handler>
void invoke(Handler&& h, const boost::system::error_code& ec, size_t n) {
  if constexpr (kBytes) {
    std::forward<Handler>(h)(ec, n);
  } else {
    std::forward<Handler>(h)(ec);
  }
}

// What epoll reported last for a socket: Asio keeps the events in the
// socket's reactor entry, in a protected field of its base, which is a
// private base; a C-style cast is the one conversion the language allows to
// an inaccessible base. The entry is recycled for later sockets without
// clearing the field, so a new socket may show its predecessor's last
// report until its own first one: a "hung up" seen here is a hint to be
// checked, never to be acted on blindly.
struct ReportAccess : boost::asio::detail::scheduler_operation {
  using Entry = boost::asio::detail::reactor::per_descriptor_data;
  static bool hung_up(Entry e) {
    const auto* base = (const boost::asio::detail::scheduler_operation*)e;
    return (base->*(&ReportAccess::task_result_) & EPOLLHUP) != 0;
  }
};

template <typename Handler, bool kBytes>
class Op : public boost::asio::detail::reactor_op {
 public:
  using Alloc = typename std::allocator_traits<boost::asio::associated_allocator_t<
      Handler, boost::asio::recycling_allocator<void>>>::template rebind_alloc<Op>;

  Op(Kind kind, int fd, ReportAccess::Entry entry, boost::asio::mutable_buffer b, Handler&& h)
      : reactor_op(boost::system::error_code(), &perform, &complete),
        kind_(kind),
        fd_(fd),
        entry_(entry),
        buffer_(b),
        handler_(std::move(h)) {}

  static Alloc allocator(const Handler& h) {
    return Alloc(
        boost::asio::get_associated_allocator(h, boost::asio::recycling_allocator<void>()));
  }

  // start_op has returned: what perform() sees from now on is epoll's report.
  void started() { starting_ = false; }

 private:
  static status perform(reactor_op* base) {
    auto* op = static_cast<Op*>(base);
    switch (op->kind_) {
      case Kind::recv:
        return op->receive();
      case Kind::wait:
        return op->starting_ ? op->readable_now() : done;
      case Kind::wait_drained:
        // Nothing to check: whatever came since the caller saw the socket
        // empty raised an edge that epoll has not reported yet. Unless the
        // edge that hung up came with the bytes the caller took: then it
        // was reported already, and a check finds the reset.
        if (!op->starting_) {
          return done;
        }
        return op->hung_up() ? op->readable_now() : not_done;
      case Kind::mark:
        // At the start, with no read ahead of it: the reactor then tries no
        // read before the next edge. Queued behind one, it just completes.
        return op->starting_ && !op->hung_up() ? done_and_exhausted : done;
    }
    return done;
  }

  status receive() {
    for (;;) {
      const InqRead r = recv_inq(fd_, buffer_.data(), buffer_.size());
      const ssize_t n = r.n;
      if (n > 0) {
        bytes_transferred_ = static_cast<size_t>(n);
        return r.empty && !hung_up() ? done_and_exhausted : done;
      }
      if (n == 0) {
        ec_ = boost::asio::error::eof;
        return done_and_exhausted;
      }
      if (errno == EINTR) {
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return not_done;
      }
      ec_ = boost::system::error_code(errno, boost::asio::error::get_system_category());
      return done;
    }
  }

  // Readable now? Bytes, the end and an error all are: the caller's read
  // finds out which. poll(2), not recv(MSG_PEEK): a peek would take the
  // socket's pending error (a reset), and the read would then see a plain
  // end of stream instead.
  status readable_now() const {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, 0) == 0 ? not_done : done;
  }

  bool hung_up() const { return ReportAccess::hung_up(entry_); }

  // owner null: the io_context is being destroyed; the handler goes unrun.
  static void complete(void* owner, boost::asio::detail::operation* base,
                       const boost::system::error_code&, size_t) {
    auto* op = static_cast<Op*>(base);
    Handler handler(std::move(op->handler_));
    const boost::system::error_code ec = op->ec_;
    const size_t n = op->bytes_transferred_;
    Alloc alloc = allocator(handler);
    std::allocator_traits<Alloc>::destroy(alloc, op);
    std::allocator_traits<Alloc>::deallocate(alloc, op, 1);
    if (owner != nullptr) {
      invoke<kBytes>(std::move(handler), ec, n);
    }
  }

  Kind kind_;
  bool starting_ = true;
  int fd_;
  ReportAccess::Entry entry_;
  boost::asio::mutable_buffer buffer_;
  Handler handler_;
};

template <bool kBytes, typename Handler>
void start(Kind kind, boost::asio::ip::tcp::socket& s, boost::asio::mutable_buffer b,
           Handler&& handler) {
  namespace detail = boost::asio::detail;
  using H = std::decay_t<Handler>;
  auto& impl = SocketAccess::implementation(s);
  boost::system::error_code ec;
  if ((kind == Kind::recv && b.size() == 0) || impl.socket_ == detail::invalid_socket ||
      (!(impl.state_ & detail::socket_ops::non_blocking) &&
       !detail::socket_ops::set_internal_non_blocking(impl.socket_, impl.state_, true, ec))) {
    // What Asio does with these: an empty read completes at once, a closed
    // socket or a failed fcntl with the error.
    if (!ec && impl.socket_ == detail::invalid_socket) {
      ec = boost::asio::error::bad_descriptor;
    }
    boost::asio::post(s.get_executor(), [h = H(std::move(handler)), ec]() mutable {
      invoke<kBytes>(std::move(h), ec, 0);
    });
    return;
  }
  using O = Op<H, kBytes>;
  auto alloc = O::allocator(handler);
  O* op = std::allocator_traits<typename O::Alloc>::allocate(alloc, 1);
  std::allocator_traits<typename O::Alloc>::construct(alloc, op, kind, impl.socket_,
                                                      impl.reactor_data_, b, H(std::move(handler)));
  auto& context = boost::asio::query(s.get_executor(), boost::asio::execution::context);
  boost::asio::use_service<detail::reactor>(context).start_op(
      detail::reactor::read_op, impl.socket_, impl.reactor_data_, op, false, true);
  // Queued, or done and queued for completion: alive until the loop runs.
  op->started();
}

struct Ignore {
  void operator()(const boost::system::error_code&) const {}
};

}  // namespace recv_detail

// At least one byte of `s` into `b` (asio::error::eof at the end): what
// s.async_read_some(b, token) does, minus the failed recv(2) of the next
// read after this one emptied the socket (TCP_INQ on: enable_inq).
template <typename Token>
auto async_recv(boost::asio::ip::tcp::socket& s, boost::asio::mutable_buffer b, Token&& token) {
  return boost::asio::async_initiate<Token, void(boost::system::error_code, size_t)>(
      [](auto handler, boost::asio::ip::tcp::socket* s, boost::asio::mutable_buffer b) {
        recv_detail::start<true>(recv_detail::Kind::recv, *s, b, std::move(handler));
      },
      token, &s, b);
}

// Completes once `s` is readable (bytes, the end or an error), as
// s.async_wait(wait_read, token) does, but without the epoll_ctl(2) that
// Asio makes for every wait. `drained`: the caller has just seen the socket
// empty (a read that got EAGAIN), with no suspension since; then the start
// costs nothing. Otherwise it checks (poll(2)) at the start, unless the
// reactor already knows the socket is empty (after an async_recv that
// emptied it, or note_drained), when it costs nothing either.
template <typename Token>
auto async_wait_readable(boost::asio::ip::tcp::socket& s, bool drained, Token&& token) {
  return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
      [](auto handler, boost::asio::ip::tcp::socket* s, bool drained) {
        const auto kind = drained ? recv_detail::Kind::wait_drained : recv_detail::Kind::wait;
        recv_detail::start<false>(kind, *s, boost::asio::mutable_buffer(), std::move(handler));
      },
      token, &s, drained);
}

// Tells the reactor that `s` is empty: a read of the caller's own (OpenSSL's
// BIO, with recv_inq) has just found it so, with no suspension since. The next
// async_recv / async_wait_readable then starts without a syscall. Nothing
// may be reading `s` through the reactor meanwhile.
inline void note_drained(boost::asio::ip::tcp::socket& s) {
  recv_detail::start<false>(recv_detail::Kind::mark, s, boost::asio::mutable_buffer(),
                            recv_detail::Ignore{});
}

// Says that `s` holds the only descriptor of its socket (accepted, or
// handed over whole by another worker), so closing it also takes it out of
// epoll's set, as the kernel does when a file's last descriptor goes. Asio
// marks a socket it did not open itself (assign, accept) as possibly
// dup(2)ed and makes an epoll_ctl(2) to deregister it before closing; after
// this it leaves that to close(2), as for the sockets it opens. Wrong on a
// socket whose descriptor was dup()ed: epoll would keep the dup registered.
inline void note_sole_descriptor(boost::asio::ip::tcp::socket& s) {
  recv_detail::SocketAccess::implementation(s).state_ &=
      ~boost::asio::detail::socket_ops::possible_dup;
}

#else

template <typename Token>
auto async_recv(boost::asio::ip::tcp::socket& s, boost::asio::mutable_buffer b, Token&& token) {
  return s.async_read_some(b, std::forward<Token>(token));
}

template <typename Token>
auto async_wait_readable(boost::asio::ip::tcp::socket& s, bool /*drained*/, Token&& token) {
  return s.async_wait(boost::asio::socket_base::wait_read, std::forward<Token>(token));
}

inline void note_drained(boost::asio::ip::tcp::socket&) {}

inline void note_sole_descriptor(boost::asio::ip::tcp::socket&) {}

#endif

}  // namespace ward::util
