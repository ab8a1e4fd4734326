#include "proxy/server/h1_session.h"

#include <sys/socket.h>

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>

#include "proxy/http/forwarding.h"
#include "proxy/http/proxy_protocol.h"
#include "proxy/router/router.h"
#include "proxy/server/h2_connection.h"
#include "proxy/server/local_reply.h"
#include "proxy/util/exact_allocator.h"
#include "proxy/util/recv_op.h"
#include "proxy/util/send_now.h"
#include "proxy/util/spare.h"

// Style note: GCC 12 miscompiles some coroutine shapes (a co_await inside a
// condition or a ternary, `co_return co_await`). Every co_await here is a
// plain statement or the right-hand side of an assignment.

namespace ward::server {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
// Deferred form: no coroutine frame of the operation's own (see
// request_handler.cpp); for the response's write on plain connections.
constexpr auto kDeferred = asio::as_tuple(asio::deferred);
constexpr size_t kMinDownstreamBuffer = 32 * 1024;
// What a request head is first read into (util::IoBuffer grows it to the
// full buffer for a longer head or a body): nearly every head fits, and a
// burst of new connections holds 4 KiB apiece while it reads, not 32.
constexpr size_t kHeadBuffer = 4 * 1024;
// Lingering close (nginx's lingering_time): how long a client that is still
// sending a body nobody reads may go on before the connection is closed
// under it.
constexpr auto kLingerTime = std::chrono::seconds(5);
// How long a keep-alive connection waits for its next request inside its
// coroutines before it parks (see H1Session::park). Parking and waking cost
// ~10 us of CPU (a co_spawn, the parking lot's epoll calls, the deadline's
// timer made again): a client that sends its next request within this time
// never pays it (a page's requests, a chatty API client), one that idles
// longer pays it once per idle period. Until then the connection holds its
// request state, its coroutine frames and (plain) its 4 KiB head block,
// ~2.5-6.5 KiB: at 3,000 new connections a second, 100 ms of them is ~1 MB
// more at the peak than 20 ms would be (bench idle-10k-tls: 15.4 KiB per
// connection against 15.3), and 200 ms was 15.5.
constexpr auto kParkAfter = std::chrono::milliseconds(100);
using Lane = util::Deadline::Lane;

std::string_view protocol_name(int version_minor) {
  return version_minor == 0 ? "HTTP/1.0" : "HTTP/1.1";
}

}  // namespace

H1Session::H1Session(Worker& worker, const ListenerInfo& listener, tcp::socket socket,
                     const tcp::endpoint& peer)
    : RequestHandler(worker, listener),
      socket_(std::move(socket)),
      deadline_(socket_.get_executor()),
      in_(std::max<size_t>(kMinDownstreamBuffer,
                           worker.snapshot()->config->limits.max_header_size + 1024),
          kHeadBuffer) {
  deadline_.on_expire([this] {
    boost::system::error_code ignored;
    socket_.cancel(ignored);
  });
  peer_text_ = peer.address().to_string();
  if (auto ip = util::IpAddress::parse(peer_text_)) {
    peer_ = *ip;
  }
  // TCP_NODELAY is inherited from the listening socket (open_listen_socket).
  worker_.register_session(*this);
  worker_.shared().connections->fetch_add(1, std::memory_order_relaxed);
  counted_ = true;
  worker_.shared().metrics->connections_active.add(worker_.index(), {listener_.name}, 1);
}

H1Session::~H1Session() {
  deadline_.stop();
  if (counted_) {
    worker_.shared().connections->fetch_sub(1, std::memory_order_relaxed);
    worker_.shared().metrics->connections_active.add(worker_.index(), {listener_.name}, -1);
  }
  if (parked()) {
    // Only while the worker runs: its teardown drops the parked ones first
    // (ParkingLot::drop_all), then the lot goes before the io_context.
    worker_.parking().leave(*this);
  }
  worker_.unregister_session(*this);
}

void H1Session::start() {
  spawn(Start::fresh);
}

void H1Session::spawn(Start how) {
  asio::co_spawn(
      socket_.get_executor(),
      [self = shared_from_this(), how]() -> asio::awaitable<void> { co_await self->run(how); },
      asio::detached);
}

void H1Session::release_idle_memory() {
  release_request_state();
  if (h1_) {
    util::give_back(h1_->head_out);
    util::give_back(h1_->gather);
    *h1_ = H1Request{};  // holds no memory now: the next user starts clean
    util::give_object(h1_);
  }
}

// An idle keep-alive connection holds its socket, its TLS state and this
// object without its request state (~0.5 KiB): its per-request memory went
// to the thread's pool and spares (release_idle_memory), and here its
// coroutine chain ends too (the frames of start's lambda, run and read_head,
// ~1.5 KiB). It waits in the worker's parking lot, which watches its socket
// and its idle deadline for all its parked connections at once, so that no
// Asio operation of its own stays pending (a socket wait and a timer wait
// would hold ~400 bytes for as long as it idles). nginx keeps an idle
// connection the same way: an epoll registration and a small struct.
//
// The connection owns itself while parked (parked_self_); the lot calls
// unparked() when its socket turns readable (the next request, or the
// peer's close), when its idle deadline passes, or on drain.
void H1Session::park() {
  deadline_.suspend();
  if (worker_.parking().park(*this, socket_.native_handle(), deadline_.expiry(Lane::main))) {
    parked_self_ = shared_from_this();
    return;
  }
  // The kernel refused the registration (epoll's watch limit): a socket
  // wait of its own instead, bounded by the deadline as before parking. Its
  // operation is allocated to its exact size (util/exact_allocator.h).
  deadline_.resume();
  socket_.async_wait(
      tcp::socket::wait_read,
      asio::bind_allocator(util::ExactAllocator<void>(),
                           [self = shared_from_this()](const boost::system::error_code& ec) {
                             self->resumed_ = !ec;
                             self->spawn(ec ? Start::close : Start::resumed);
                           }));
}

void H1Session::unparked(ParkingLot::Unpark why) {
  auto self = std::move(parked_self_);  // the last reference when dropped
  switch (why) {
    case ParkingLot::Unpark::readable:
      deadline_.resume();  // the idle deadline again bounds what follows
      resumed_ = true;
      spawn(Start::resumed);
      break;
    case ParkingLot::Unpark::closing:
      deadline_.resume();  // bounds the close (TLS close_notify)
      spawn(Start::close);
      break;
    case ParkingLot::Unpark::expired:
      spawn(Start::close);  // the deadline has passed: nothing left to arm
      break;
    case ParkingLot::Unpark::dropped:
      break;  // the worker's loop has stopped: `self` ends the connection
  }
}

void H1Session::on_drain() {
  closing_ = true;
  if (h2_) {
    h2_->drain();
    return;
  }
  if (idle_) {
    boost::system::error_code ignored;
    socket_.cancel(ignored);
  }
}

asio::awaitable<void> H1Session::run(Start how) {
  take_request_state();  // a parked connection gave its one back
  if (!h1_) {
    h1_ = util::take_object<H1Request>();
  }
  bool serve = how != Start::close;
  if (how == Start::fresh) {
    if (listener_.proxy_protocol) {
      serve = co_await read_proxy_header();
    }
    if (serve && listener_.tls) {
      serve = co_await handshake();
    }
    if (serve && tls_stream_ &&
        tls::negotiated_protocol(tls_stream_->native_handle()) == tls::AppProtocol::h2) {
      serve = false;
      co_await serve_h2({});
    }
  }
  for (; serve;) {
    http::ParseError error;
    HeadResult head = co_await read_head(error);
    if (head == HeadResult::closed) {
      break;
    }
    if (head == HeadResult::park) {
      park();
      co_return;  // the frames go; the wait's handler keeps the session
    }
    if (head == HeadResult::h2) {
      co_await serve_h2(in_.data());
      break;
    }
    Exchange ex;
    ex.snapshot = worker_.snapshot();
    ex.start = Clock::now();
    if (head == HeadResult::error) {
      int status = 400;
      switch (error.status) {
        case http::ParseStatus::uri_too_long:
          status = 414;
          break;
        case http::ParseStatus::header_too_large:
          status = 431;
          break;
        case http::ParseStatus::not_implemented:
          status = 501;
          break;
        case http::ParseStatus::version_unsupported:
          status = 505;
          break;
        default:
          status = deadline_.expired() ? 408 : 400;
          break;
      }
      worker_.shared().metrics->downstream_errors.inc(worker_.index(),
                                                      {listener_.name, error_kind(status)});
      worker_.shared().log->debug("{}: refused request from {}: {}", listener_.name, peer_text_,
                                  error.reason);
      ex.keep_alive = false;
      co_await reply(ex, status);
      finish(ex);
      break;
    }
    ++requests_;
    ex.keep_alive = rs_->req.keep_alive && !worker_.draining() && !closing_;
    h1_->body = http::BodyDecoder::for_kind(rs_->req.body, rs_->req.content_length);
    h1_->body_cancelled = false;
    // ward answers "Expect: 100-continue" itself once it is ready for the body.
    h1_->expect_continue = rs_->req.expect_continue;
    if (h1_->expect_continue) {
      rs_->req.headers.remove("expect");
    }
    co_await handle(ex);
    finish(ex);
    if (!ex.request_body_done && ex.status != 499) {
      linger_ = true;  // the client may still be sending the body
    }
    if (!ex.keep_alive || closing_) {
      break;
    }
  }
  // Half-close, then close: the client reads everything we wrote before EOF.
  if (tls_stream_) {
    co_await tls_stream_->shutdown();
  }
  // close(2) alone sends the FIN after what is still queued; the explicit
  // half-close matters only when we go on reading (linger).
  boost::system::error_code ignored;
  if (linger_) {
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    co_await linger();
  }
  socket_.close(ignored);
}

// RFC 9112 9.6: closing a connection with unread bytes in it sends a reset,
// and the client's TCP may then drop the response before the client read
// it (an upload answered early with 413 would end in "connection reset").
// So, after the half-close, read and drop what the client still sends until
// it closes too, as nginx's lingering close does: for at most kLingerTime,
// into the buffer that is there anyway. Raw bytes: after close_notify
// nothing the client sends is read as TLS any more.
asio::awaitable<void> H1Session::linger() {
  deadline_.reset(Lane::second);
  deadline_.expires_after(kLingerTime);
  in_.consume(in_.size());
  for (;;) {
    auto [ec, n] = co_await util::async_recv(
        socket_, asio::buffer(in_.write_ptr(), in_.write_space()), kNoThrow);
    if (ec) {
      break;  // the client's close, a reset, or kLingerTime
    }
  }
  deadline_.clear();
}

asio::awaitable<void> H1Session::serve_h2(std::string_view preread) {
  release_idle_memory();  // each stream has its own request state; these would idle
  h2_ = std::make_unique<H2Connection>(worker_, listener_, socket_, tls_stream_.get(), deadline_,
                                       peer_, peer_text_, tls_version_, tls_client_subject_);
  if (closing_) {
    h2_->drain();
  }
  co_await h2_->run(preread);
  in_.consume(in_.size());
}

asio::awaitable<RequestHandler::BodyPiece> H1Session::read_body(Exchange& ex) {
  const auto& lim = ex.snapshot->config->limits;
  BodyPiece piece;
  for (;;) {
    if (!in_.empty()) {
      auto step = h1_->body.feed(in_.data());
      if (step.error.status != http::ParseStatus::ok) {
        piece.fail_status = 400;
        co_return piece;
      }
      if (!step.data.empty()) {
        h1_->body_pending = step.consumed;  // consumed once the data went upstream
        piece.data = step.data;
        piece.end = h1_->body.done();
        co_return piece;
      }
      in_.consume(step.consumed);
      if (h1_->body.done()) {
        piece.end = true;
        co_return piece;
      }
      if (step.consumed > 0 && !in_.empty()) {
        continue;
      }
    } else if (h1_->body.done()) {
      piece.end = true;
      co_return piece;
    }
    if (h1_->body_cancelled) {
      piece.fail_status = 499;  // nobody takes the rest: the caller ignores this
      co_return piece;
    }
    // The main lane: the response may be going down at the same time on
    // the second one (full duplex), each bounded on its own.
    deadline_.expires_after(lim.body_timeout);
    in_.grow();  // a body streams through the whole buffer, not the head's 4 KiB
    auto [ec, n] = co_await down_read(asio::buffer(in_.write_ptr(), in_.write_space()));
    if (ec) {
      piece.fail_status = deadline_.expired() ? 408 : 499;
      co_return piece;
    }
    // This wait is over: its deadline must not fire while the body is
    // written upstream, cancelling a response write in flight.
    deadline_.reset(Lane::main);
    in_.commit(n);
  }
}

void H1Session::cancel_body() {
  h1_->body_cancelled = true;
  boost::system::error_code ignored;
  socket_.cancel(ignored);  // the response side is done: only a body read can be waiting
}

void H1Session::body_consumed() {
  in_.consume(h1_->body_pending);
  h1_->body_pending = 0;
}

asio::awaitable<bool> H1Session::before_body(Exchange&) {
  // The head's deadline is done with: left armed, it could fire while the
  // body and the response move at once and cancel one of them.
  deadline_.reset(Lane::main);
  if (!h1_->expect_continue || !in_.empty()) {
    co_return true;  // no Expect, or the client sent its body without waiting
  }
  h1_->expect_continue = false;
  static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
  deadline_.expires_after(limits().body_timeout);
  auto [ec, n] = co_await down_write(asio::buffer(kContinue));
  if (!ec) {
    deadline_.reset(Lane::main);
  }
  co_return !ec;
}

bool H1Session::response_head(Exchange& ex) {
  const bool encoding = rs_->ctx.response_encoder != nullptr;
  // Until-close and encoded bodies become chunked for HTTP/1.1 clients so the
  // downstream connection survives; HTTP/1.0 clients get a close instead.
  h1_->chunked_down =
      rs_->resp.body == http::BodyKind::chunked ||
      ((rs_->resp.body == http::BodyKind::until_close || encoding) && rs_->req.version_minor == 1);
  if ((rs_->resp.body == http::BodyKind::until_close || encoding) && !h1_->chunked_down) {
    ex.keep_alive = false;
  }
  serialize_response_head(ex, h1_->chunked_down);
  h1_->head_pending = true;
  return true;
}

asio::awaitable<bool> H1Session::response_body(Exchange& ex, std::string_view data,
                                               filters::BodyEncoder::Mode mode) {
  h1_->gather.clear();
  if (h1_->head_pending) {
    h1_->gather.emplace_back(h1_->head_out.data(), h1_->head_out.size());
  }
  if (!data.empty() || mode == filters::BodyEncoder::Mode::finish) {
    if (!frame_body(data, mode, h1_->chunked_down, h1_->size_line)) {
      worker_.shared().log->warn("response encoder failed for {}", ex.upstream_server);
      co_return false;
    }
  }
  if (h1_->gather.empty()) {
    co_return true;
  }
  // While the request body is still being read (full duplex), the reads
  // own the main lane; these writes take the second.
  const Lane lane = ex.request_body_done ? Lane::main : Lane::second;
  deadline_.expires_after(limits().body_timeout, lane);
  std::tuple<boost::system::error_code, size_t> sent;
  if (tls_stream_) {
    sent = co_await down_write(h1_->gather);
  } else {
    // Usually the whole response fits the send buffer: sent here, no wait.
    const util::SentNow now = util::send_now(socket_.native_handle(), h1_->gather);
    if (now.done()) {
      sent = {now.ec, now.bytes};
    } else {
      util::drop_front(h1_->gather, now.bytes);
      sent = co_await asio::async_write(socket_, std::span<const asio::const_buffer>(h1_->gather),
                                        kDeferred);
      std::get<1>(sent) += now.bytes;
    }
  }
  auto [ec, n] = sent;
  h1_->head_pending = false;
  if (!ec && lane == Lane::second) {
    deadline_.reset(Lane::second);
  }
  co_return !ec;
}

asio::awaitable<bool> H1Session::send_local_reply(Exchange& ex, int status, std::string_view body) {
  if (closing_) {
    ex.keep_alive = false;
  }
  h1_->head_out.clear();
  util::take_spare(h1_->head_out);
  append_local_reply(h1_->head_out, status, rs_->resp.headers, body, !ex.keep_alive,
                     rs_->req.method == http::Method::head);
  deadline_.expires_after(limits().body_timeout);
  auto [ec, n] = co_await down_write(asio::buffer(h1_->head_out));
  co_return !ec;
}

std::string_view H1Session::protocol() const {
  return protocol_name(rs_->req.version_minor);
}

asio::awaitable<H1Session::HeadResult> H1Session::read_head(http::ParseError& error) {
  const auto& lim = limits();
  http::HeadLimits head_limits{lim.max_header_size, lim.max_uri_size};
  size_t scanned = 0;
  size_t head_size = 0;
  rs_->req.clear();
  idle_ = in_.empty();
  if (resumed_) {
    resumed_ = false;  // woken from park(): the deadline set before it still runs
  } else {
    // The first request gets header_timeout from accept; later ones may idle
    // for idle_timeout before their first byte, then header_timeout applies.
    deadline_.expires_after(idle_ && requests_ > 0 ? lim.idle_timeout : lim.header_timeout);
  }
  for (;;) {
    if (requests_ == 0 && !tls_stream_ && !in_.empty() && in_.data().front() == 'P') {
      // HTTP/2 with prior knowledge (h2c) on a plain listener: the client
      // opens with the connection preface instead of a request.
      static constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
      auto start = in_.data().substr(0, kPreface.size());
      if (start == kPreface) {
        idle_ = false;
        co_return HeadResult::h2;
      }
    }
    if (!in_.empty()) {
      error = http::find_head_end(in_.data(), head_limits, true, scanned, head_size);
      if (error.status == http::ParseStatus::ok) {
        break;
      }
      if (error.status != http::ParseStatus::incomplete) {
        idle_ = false;
        co_return HeadResult::error;
      }
    }
    if (closing_ && idle_) {
      co_return HeadResult::closed;
    }
    if (in_.empty() && !(tls_stream_ && tls_stream_->has_buffered_data())) {
      // Nothing buffered: wait for the next request. A connection that
      // idles for kParkAfter is parked: its request memory goes to the
      // thread's pools and spares, and its coroutines end (park()),
      // leaving its socket, its TLS state and this object. The second lane
      // is free while no request is in progress: it says when to park.
      deadline_.expires_after(kParkAfter, Lane::second);
      in_.release();  // back to the head block when a body grew it
      boost::system::error_code wec;
      size_t got = 0;
      if (tls_stream_) {
        // TLS: wait without the read buffer and OpenSSL's, which go to the
        // thread's spares meanwhile (reading means SSL_read, which needs
        // its record buffer).
        tls_stream_->release_buffers();
        auto [ec] = co_await util::async_wait_readable(socket_, false, kDeferred);
        wec = ec;
      } else {
        // Plain: wait by reading into the 4 KiB head block. The last read
        // emptied the socket (util::async_recv tells Asio so), so this one
        // is queued without a recv that would fail first; a wait would
        // cost an epoll_ctl (Asio re-arms the descriptor for each wait).
        auto [ec, n] = co_await util::async_recv(
            socket_, asio::buffer(in_.write_ptr(), in_.write_space()), kDeferred);
        wec = ec;
        got = n;
      }
      const bool park_due = deadline_.expired(Lane::second);
      deadline_.reset(Lane::second);
      if (wec) {
        if (park_due && !deadline_.expired(Lane::main) && !closing_) {
          in_.release();  // empty: a read cancelled by the park lane read nothing
          release_idle_memory();
          co_return HeadResult::park;  // still idle_: a drain cancels the parked wait
        }
        idle_ = false;
        co_return HeadResult::closed;
      }
      if (!tls_stream_) {
        in_.commit(got);
        idle_ = false;
        deadline_.expires_after(lim.header_timeout);
        continue;  // parse what came
      }
    }
    char* ptr = in_.write_ptr();
    size_t space = in_.write_space();
    if (space == 0 && in_.grow()) {
      ptr = in_.write_ptr();  // a head larger than the first 4 KiB
      space = in_.write_space();
    }
    if (space == 0) {
      error = {http::ParseStatus::header_too_large, "head does not fit the buffer"};
      co_return HeadResult::error;
    }
    std::tuple<boost::system::error_code, size_t> got;
    if (tls_stream_) {
      got = co_await down_read(asio::buffer(ptr, space));
    } else {
      // Plain: the deferred form runs on this frame (no frame of its own).
      got = co_await util::async_recv(socket_, asio::buffer(ptr, space), kDeferred);
    }
    auto [ec, n] = got;
    if (ec) {
      bool partial = !in_.empty();
      idle_ = false;
      if (partial && deadline_.expired()) {
        error = {http::ParseStatus::bad_request, "request head timed out"};
        co_return HeadResult::error;  // 408
      }
      co_return HeadResult::closed;
    }
    in_.commit(n);
    if (idle_) {
      idle_ = false;
      deadline_.expires_after(lim.header_timeout);
    }
  }
  error = http::parse_request_head(in_.data().substr(0, head_size), head_limits, rs_->req);
  in_.consume(head_size);
  co_return error.status == http::ParseStatus::ok ? HeadResult::ok : HeadResult::error;
}

bool H1Session::frame_body(std::string_view data, filters::BodyEncoder::Mode mode, bool chunked,
                           char* size_line) {
  if (rs_->ctx.response_encoder) {
    rs_->encoded.clear();
    if (!rs_->ctx.response_encoder->encode(data, mode, rs_->encoded)) {
      return false;
    }
    data = rs_->encoded;
  }
  if (!data.empty()) {
    if (chunked) {
      size_t len = format_chunk_size(size_line, data.size());
      h1_->gather.emplace_back(size_line, len);
    }
    h1_->gather.emplace_back(data.data(), data.size());
    if (chunked) {
      h1_->gather.emplace_back("\r\n", 2);
    }
  }
  if (mode == filters::BodyEncoder::Mode::finish && chunked) {
    h1_->gather.emplace_back("0\r\n\r\n", 5);
  }
  return true;
}

asio::awaitable<void> H1Session::upgraded(Exchange& ex, upstream::UpstreamConnection& conn) {
  http::prepare_downstream_response(rs_->resp);
  ex.status = 101;
  run_response_filters(ex, 101, false);
  rs_->ctx.response_encoder.reset();  // a tunnel carries frames, not a body to encode
  // Neither connection speaks HTTP again.
  rs_->resp.keep_alive = false;
  ex.keep_alive = false;
  serialize_response_head(ex, false);
  auto& metrics = *worker_.shared().metrics;
  const auto& route_name = ex.snapshot->config->routes[static_cast<size_t>(ex.route)].name;
  metrics.websocket_upgrades.inc(worker_.index(), {route_name});
  metrics.websocket_active.add(worker_.index(), {route_name}, 1);
  const auto idle = limits().idle_timeout;
  deadline_.expires_after(idle);
  conn.deadline.expires_after(idle);
  // The 101 head and whatever frames came with it, in one write.
  h1_->gather.clear();
  h1_->gather.emplace_back(h1_->head_out.data(), h1_->head_out.size());
  if (!conn.buffer.empty()) {
    h1_->gather.emplace_back(conn.buffer.data().data(), conn.buffer.size());
  }
  auto [ec, n] = co_await down_write(h1_->gather);
  ex.response_started = true;
  if (!ec) {
    ex.bytes_out += conn.buffer.size();
    conn.buffer.consume(conn.buffer.size());
    co_await (pipe_up(conn, ex.bytes_in) && pipe_down(conn, ex.bytes_out));
  }
  metrics.websocket_active.add(worker_.index(), {route_name}, -1);
}

// The two directions of a tunnel. Each relays until its source ends, then
// half-closes the other side so the peer sees the end too (a WebSocket
// close handshake in flight still completes the other way). Activity either
// way pushes both deadlines out by idle_timeout: a tunnel dies when nothing
// moves, not when one side is quiet. An error or timeout closes both.
asio::awaitable<void> H1Session::pipe_up(upstream::UpstreamConnection& conn, uint64_t& bytes) {
  const auto idle = limits().idle_timeout;
  in_.grow();  // a tunnel streams through the whole buffer
  for (;;) {
    if (!in_.empty()) {
      auto [wec, wn] = co_await conn.write(asio::buffer(in_.data()));
      if (wec) {
        break;
      }
      bytes += in_.size();
      in_.consume(in_.size());
    }
    auto [ec, n] = co_await down_read(asio::buffer(in_.write_ptr(), in_.write_space()));
    if (ec == asio::error::eof) {
      co_await conn.shutdown_send();
      co_return;
    }
    if (ec) {
      break;
    }
    in_.commit(n);
    deadline_.expires_after(idle);
    conn.deadline.expires_after(idle);
  }
  close_tunnel(conn);
}

asio::awaitable<void> H1Session::pipe_down(upstream::UpstreamConnection& conn, uint64_t& bytes) {
  const auto idle = limits().idle_timeout;
  boost::system::error_code ignored;
  auto& buffer = conn.buffer;
  for (;;) {
    if (!buffer.empty()) {
      auto [wec, wn] = co_await down_write(asio::buffer(buffer.data()));
      if (wec) {
        break;
      }
      bytes += buffer.size();
      buffer.consume(buffer.size());
    }
    auto [ec, n] = co_await conn.read_some(asio::buffer(buffer.write_ptr(), buffer.write_space()));
    if (ec == asio::error::eof) {
      if (tls_stream_) {
        co_await tls_stream_->shutdown();  // close_notify: the TLS way to half-close
      }
      socket_.shutdown(tcp::socket::shutdown_send, ignored);
      co_return;
    }
    if (ec) {
      break;
    }
    buffer.commit(n);
    deadline_.expires_after(idle);
    conn.deadline.expires_after(idle);
  }
  close_tunnel(conn);
}

void H1Session::close_tunnel(upstream::UpstreamConnection& conn) {
  // Cancel rather than close the downstream socket: a TLS stream still owns
  // it until the session ends.
  boost::system::error_code ignored;
  socket_.cancel(ignored);
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
  conn.socket.close(ignored);
}

asio::awaitable<bool> H1Session::read_proxy_header() {
  // The header is read off the socket itself so that not one byte after it
  // (a TLS ClientHello, a request) is taken from the TLS stream or the
  // request parser: each wait peeks at what has arrived, and bytes leave the
  // socket only once they are known to be header bytes. An incomplete result
  // means every byte so far belongs to the header (a valid prefix: the v1
  // line has no CRLF yet, or the v2 header is shorter than it announces), so
  // those are taken at once; taking them also keeps a stalled prefix from
  // leaving the socket readable, which would wake the wait over and over.
  // The buffer holds the largest header accepted (v1: 107 bytes).
  std::array<char, http::kProxyV2DefaultMaxSize> buf;
  size_t have = 0;
  http::ProxyParseResult result;
  std::string_view failure;  // the metric's reason; empty: closed before any byte
  const int fd = socket_.native_handle();
  deadline_.expires_after(limits().header_timeout);
  for (;;) {
    auto [wec] = co_await socket_.async_wait(tcp::socket::wait_read, kNoThrow);
    if (wec) {
      if (deadline_.expired()) {
        failure = "timeout";
      } else if (have > 0) {
        failure = "closed";
      }
      break;
    }
    ssize_t n = ::recv(fd, buf.data() + have, buf.size() - have, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      continue;
    }
    if (n <= 0) {  // EOF or a reset
      failure = have > 0 ? "closed" : "";
      break;
    }
    size_t seen = have + static_cast<size_t>(n);
    result = http::parse_proxy_protocol(std::string_view(buf.data(), seen));
    if (result.status == http::ProxyProtocolStatus::error) {
      failure = http::proxy_error_kind(result);
      break;
    }
    bool done = result.status == http::ProxyProtocolStatus::ok;
    // Neither can happen within the parser's bounds; checked all the same.
    if (done && (result.header.size < have || result.header.size > seen)) {
      failure = "malformed";
      break;
    }
    if (!done && seen == buf.size()) {
      failure = "too_large";
      break;
    }
    size_t take = (done ? result.header.size : seen) - have;
    ssize_t got = ::recv(fd, buf.data() + have, take, MSG_DONTWAIT);
    if (got != static_cast<ssize_t>(take)) {  // peeked bytes are there, unless a reset came
      failure = "closed";
      break;
    }
    have += take;
    if (done) {
      break;
    }
  }
  auto& log = *worker_.shared().log;
  if (!failure.empty()) {
    worker_.shared().metrics->proxy_protocol_errors.inc(worker_.index(), {listener_.name, failure});
    log.debug(
        "{}: PROXY header from {} refused ({}): {}", listener_.name, peer_text_, failure,
        result.status == http::ProxyProtocolStatus::error ? result.reason : "no complete header");
  }
  if (result.status != http::ProxyProtocolStatus::ok || !failure.empty()) {
    co_return false;
  }
  const auto& header = result.header;
  switch (http::decide_proxy_source(header, peer_, worker_.snapshot()->trusted_proxies)) {
    case http::ProxySource::use:
      peer_ = header.source;
      peer_text_ = header.source.to_string();
      break;
    case http::ProxySource::local:
      break;
    case http::ProxySource::untrusted:
      log.debug("{}: PROXY header from {} ignored: not in trusted_proxies (source {})",
                listener_.name, peer_text_, header.source.to_string());
      break;
  }
  co_return true;
}

asio::awaitable<bool> H1Session::handshake() {
  auto contexts = listener_.tls->current();
  auto ssl = contexts->new_ssl();
  if (!ssl) {
    co_return false;
  }
  tls_stream_ = std::make_unique<tls::TlsStream>(socket_, std::move(ssl));
  tls_stream_->set_deadline(&deadline_);  // a wait starting after the deadline fired ends at once
  deadline_.expires_after(limits().header_timeout);
  auto ec = co_await tls_stream_->handshake();
  auto& metrics = *worker_.shared().metrics;
  if (ec) {
    auto reason = tls_stream_->handshake_error().value_or(tls::HandshakeError::closed);
    if (deadline_.expired()) {
      reason = tls::HandshakeError::closed;
    }
    metrics.tls_handshake_errors.inc(worker_.index(), {listener_.name, tls::to_string(reason)});
    worker_.shared().log->debug("{}: TLS handshake with {} failed: {} ({})", listener_.name,
                                peer_text_, tls::to_string(reason), tls_stream_->openssl_reason());
    co_return false;
  }
  SSL* native = tls_stream_->native_handle();
  tls_version_ = tls::protocol_version(native);
  if (auto subject = tls::peer_subject(native)) {
    tls_client_subject_ = std::move(*subject);
  }
  metrics.tls_handshakes.inc(worker_.index(), {listener_.name, tls_version_});
  tls_ = true;
  co_return true;
}

// Plain functions handing back tls::read_some / tls::write's awaitable: no
// coroutine frame of their own on the hot path.
asio::awaitable<std::tuple<boost::system::error_code, size_t>> H1Session::down_read(
    asio::mutable_buffer b) {
  return tls::read_some(socket_, tls_stream_.get(), b);
}

asio::awaitable<std::tuple<boost::system::error_code, size_t>> H1Session::down_write(
    std::span<const asio::const_buffer> pieces) {
  return tls::write(socket_, tls_stream_.get(), pieces);
}

asio::awaitable<std::tuple<boost::system::error_code, size_t>> H1Session::down_write(
    asio::const_buffer b) {
  return tls::write(socket_, tls_stream_.get(), b);
}

void H1Session::serialize_response_head(Exchange& ex, bool chunked_down) {
  h1_->head_out.clear();
  util::take_spare(h1_->head_out);
  h1_->head_out += protocol_name(rs_->req.version_minor);
  h1_->head_out += ' ';
  h1_->head_out += status_label(rs_->resp.status);
  h1_->head_out += ' ';
  h1_->head_out += rs_->resp.reason.empty() ? reason_phrase(rs_->resp.status)
                                            : std::string_view(rs_->resp.reason);
  h1_->head_out += "\r\n";
  rs_->resp.headers.serialize_to(h1_->head_out);
  if (chunked_down) {
    h1_->head_out += "Transfer-Encoding: chunked\r\n";
  }
  if (rs_->resp.status == 101) {
    // "Connection: upgrade" is already there (prepare_downstream_response).
  } else if (!ex.keep_alive || closing_ || worker_.draining()) {
    ex.keep_alive = false;
    h1_->head_out += "Connection: close\r\n";
  } else if (rs_->req.version_minor == 0) {
    h1_->head_out += "Connection: keep-alive\r\n";
  }
  h1_->head_out += "\r\n";
}

}  // namespace ward::server
