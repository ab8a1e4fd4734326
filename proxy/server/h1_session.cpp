#include "proxy/server/h1_session.h"

#include <sys/socket.h>

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>

#include "proxy/http/forwarding.h"
#include "proxy/http/proxy_protocol.h"
#include "proxy/router/router.h"
#include "proxy/server/local_reply.h"

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
constexpr size_t kUpstreamBufferSize = 64 * 1024;
constexpr size_t kUpstreamMaxHead = 60 * 1024;
constexpr size_t kMinDownstreamBuffer = 32 * 1024;

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// "1a2b\r\n" for a chunk of n bytes.
size_t format_chunk_size(char* out, size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  char tmp[16];
  size_t len = 0;
  do {
    tmp[len++] = kHex[n & 0xf];
    n >>= 4;
  } while (n != 0);
  for (size_t i = 0; i < len; ++i) {
    out[i] = tmp[len - 1 - i];
  }
  out[len] = '\r';
  out[len + 1] = '\n';
  return len + 2;
}

std::string_view protocol_name(int version_minor) {
  return version_minor == 0 ? "HTTP/1.0" : "HTTP/1.1";
}

}  // namespace

H1Session::H1Session(Worker& worker, const ListenerInfo& listener, tcp::socket socket)
    : worker_(worker),
      listener_(listener),
      socket_(std::move(socket)),
      deadline_(socket_.get_executor()),
      in_(std::max<size_t>(kMinDownstreamBuffer,
                           worker.snapshot()->config->limits.max_header_size + 1024)) {
  deadline_.on_expire([this] {
    boost::system::error_code ignored;
    socket_.cancel(ignored);
  });
  boost::system::error_code ec;
  auto ep = socket_.remote_endpoint(ec);
  if (!ec) {
    peer_text_ = ep.address().to_string();
    if (auto ip = util::IpAddress::parse(peer_text_)) {
      peer_ = *ip;
    }
  }
  socket_.set_option(tcp::no_delay(true), ec);
  worker_.register_session(this);
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
  worker_.unregister_session(this);
}

void H1Session::start() {
  asio::co_spawn(
      socket_.get_executor(),
      [self = shared_from_this()]() -> asio::awaitable<void> { co_await self->run(); },
      asio::detached);
}

void H1Session::on_drain() {
  closing_ = true;
  if (idle_) {
    boost::system::error_code ignored;
    socket_.cancel(ignored);
  }
}

const config::Limits& H1Session::limits() const {
  return worker_.snapshot()->config->limits;
}

asio::awaitable<void> H1Session::run() {
  bool serve = true;
  if (listener_.proxy_protocol) {
    serve = co_await read_proxy_header();
  }
  if (serve && listener_.tls) {
    serve = co_await handshake();
  }
  for (; serve;) {
    http::ParseError error;
    HeadResult head = co_await read_head(error);
    if (head == HeadResult::closed) {
      break;
    }
    Exchange ex;
    ex.snapshot = worker_.snapshot();
    ex.start = Clock::now();
    ex.wall_start = std::chrono::system_clock::now();
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
    co_await handle(ex);
    finish(ex);
    if (!ex.keep_alive || closing_) {
      break;
    }
  }
  // Half-close, then close: the client reads everything we wrote before EOF.
  if (tls_) {
    co_await tls_->shutdown();
  }
  boost::system::error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_send, ignored);
  socket_.close(ignored);
}

asio::awaitable<H1Session::HeadResult> H1Session::read_head(http::ParseError& error) {
  const auto& lim = limits();
  http::HeadLimits head_limits{lim.max_header_size, lim.max_uri_size};
  size_t scanned = 0;
  size_t head_size = 0;
  req_.clear();
  idle_ = in_.empty();
  // The first request gets header_timeout from accept; later ones may idle
  // for idle_timeout before their first byte, then header_timeout applies.
  deadline_.expires_after(idle_ && requests_ > 0 ? lim.idle_timeout : lim.header_timeout);
  for (;;) {
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
    if (in_.empty() && !(tls_ && tls_->has_buffered_data())) {
      // Nothing buffered: give the buffers back and wait for readability
      // without them, so an idle keep-alive connection holds no memory.
      in_.release();
      if (tls_) {
        tls_->release_buffers();
      }
      auto [wec] = co_await socket_.async_wait(tcp::socket::wait_read, kNoThrow);
      if (wec) {
        idle_ = false;
        co_return HeadResult::closed;
      }
    }
    char* ptr = in_.write_ptr();
    size_t space = in_.write_space();
    if (space == 0) {
      error = {http::ParseStatus::header_too_large, "head does not fit the buffer"};
      co_return HeadResult::error;
    }
    auto [ec, n] = co_await down_read(asio::buffer(ptr, space));
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
  error = http::parse_request_head(in_.data().substr(0, head_size), head_limits, req_);
  in_.consume(head_size);
  co_return error.status == http::ParseStatus::ok ? HeadResult::ok : HeadResult::error;
}

asio::awaitable<void> H1Session::handle(Exchange& ex) {
  const auto& cfg = *ex.snapshot->config;
  ex.keep_alive = req_.keep_alive && !worker_.draining() && !closing_;
  ex.request_body_done = req_.body == http::BodyKind::none ||
                         (req_.body == http::BodyKind::content_length && req_.content_length == 0);

  client_ = http::decide_client_ip(req_.headers, peer_, ex.snapshot->trusted_proxies);
  client_text_ = client_ == peer_ ? peer_text_ : client_.to_string();

  host_ = req_.headers.get("host").value_or("");
  begin_filters(ex);
  const auto& snap = *ex.snapshot;
  if (!snap.global_filters.empty()) {
    ex.global_ran = snap.global_filters.run_request(ctx_, states_.data());
    if (ctx_.replied()) {
      co_await reply(ex, ctx_.reply_status, ctx_.reply_error);
      co_return;
    }
  }
  std::string_view host = host_;
  if (listener_.redirect_https) {
    // 308 keeps the method and body (RFC 9110 15.4.9); 443 is the default port.
    auto name = host.substr(0, host.rfind(':') == std::string_view::npos || host.back() == ']'
                                   ? host.size()
                                   : host.rfind(':'));
    std::string location = "https://";
    location += name;
    if (*listener_.redirect_https != 443) {
      location += ":" + std::to_string(*listener_.redirect_https);
    }
    location += req_.target;
    co_await reply(ex, 308, {}, location);
    co_return;
  }
  if (req_.body == http::BodyKind::content_length && cfg.limits.max_body_size > 0 &&
      req_.content_length > cfg.limits.max_body_size) {
    co_await reply(ex, 413);
    co_return;
  }
  ex.route = snap.router.match(host, req_.path(), req_.method_text);
  if (ex.route < 0) {
    co_await reply(ex, 404);
    co_return;
  }
  const auto& chain = snap.route_filters[static_cast<size_t>(ex.route)];
  if (!chain.empty()) {
    ex.route_ran = chain.run_request(ctx_, states_.data() + snap.global_filters.size());
    if (ctx_.replied()) {
      co_await reply(ex, ctx_.reply_status, ctx_.reply_error);
      co_return;
    }
  }
  co_await proxy(ex);
}

void H1Session::begin_filters(Exchange& ex) {
  const auto& snap = *ex.snapshot;
  if (states_.size() < snap.max_filter_states) {
    states_.resize(snap.max_filter_states);
  }
  ctx_.reset();
  ctx_.method = req_.method_text;
  ctx_.path = req_.path();
  ctx_.query = req_.query();
  ctx_.host = host_;
  ctx_.request_headers = &req_.headers;
  ctx_.client_ip = client_;
  ctx_.client_ip_text = client_text_;
  ctx_.tls = tls_ != nullptr;
  ctx_.now_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(ex.start.time_since_epoch()).count();
  ctx_.worker = worker_.index();
}

void H1Session::run_response_filters(Exchange& ex, int status, bool local) {
  ctx_.status = status;
  ctx_.local_reply = local;
  ctx_.response_headers = &resp_.headers;
  ctx_.response_has_body =
      status >= 200 && status != 204 && status != 304 && req_.method != http::Method::head;
  const auto& snap = *ex.snapshot;
  if (ex.route >= 0 && ex.route_ran > 0) {
    snap.route_filters[static_cast<size_t>(ex.route)].run_response(
        ctx_, states_.data() + snap.global_filters.size(), ex.route_ran);
  }
  if (ex.global_ran > 0) {
    snap.global_filters.run_response(ctx_, states_.data(), ex.global_ran);
  }
}

bool H1Session::frame_body(std::string_view data, filters::BodyEncoder::Mode mode, bool chunked,
                           char* size_line) {
  if (ctx_.response_encoder) {
    encoded_.clear();
    if (!ctx_.response_encoder->encode(data, mode, encoded_)) {
      return false;
    }
    data = encoded_;
  }
  if (!data.empty()) {
    if (chunked) {
      size_t len = format_chunk_size(size_line, data.size());
      gather_.emplace_back(size_line, len);
    }
    gather_.emplace_back(data.data(), data.size());
    if (chunked) {
      gather_.emplace_back("\r\n", 2);
    }
  }
  if (mode == filters::BodyEncoder::Mode::finish && chunked) {
    gather_.emplace_back("0\r\n\r\n", 5);
  }
  return true;
}

asio::awaitable<void> H1Session::proxy(Exchange& ex) {
  const auto& snap = *ex.snapshot;
  const auto& route = snap.config->routes[static_cast<size_t>(ex.route)];
  const auto& ucfg = *snap.route_upstream_configs[static_cast<size_t>(ex.route)];
  auto& wu = worker_.upstream(snap.route_upstreams[static_cast<size_t>(ex.route)], ucfg);
  auto hosts = wu.hosts;  // kept for the whole request, whatever DNS does meanwhile
  ex.upstream_name = ucfg.name;

  http::ForwardContext fctx;
  fctx.peer = peer_;
  fctx.client = client_;  // decided once, in handle()
  fctx.peer_trusted = snap.trusted_proxies.contains(peer_);
  fctx.tls = tls_ != nullptr;
  http::prepare_upstream_request(req_, fctx);
  // The client's target stays in req_ (filters and the access log see it);
  // only a stripped target needs a string of its own.
  if (route.strip_prefix) {
    target_up_ = router::strip_prefix(req_.target, route.match.path_prefix);
  }
  // ward answers "Expect: 100-continue" itself once it is ready for the body.
  bool expect_continue = req_.expect_continue;
  req_.headers.remove("expect");
  serialize_request_head(route.strip_prefix ? std::string_view(target_up_)
                                            : std::string_view(req_.target));

  auto& metrics = *worker_.shared().metrics;
  auto& tried = tried_;  // reused: no allocation per request
  tried.clear();
  int fail_status = 502;
  uint32_t attempts = 1 + ucfg.retries;
  for (uint32_t attempt = 0; attempt < attempts; ++attempt) {
    upstream::PickContext pctx;
    pctx.now_ms = upstream::steady_now_ms();
    if (ucfg.balance == config::Balance::ip_hash) {
      pctx.hash = upstream::hash_key(client_text_);
    }
    pctx.tried = tried;
    int index = wu.balancer->pick(*hosts, pctx);
    if (index < 0) {
      // Nothing available at all is 503; everything tried and failed is 502.
      fail_status = tried.empty() ? 503 : fail_status;
      break;
    }
    const auto& host = hosts->hosts[static_cast<size_t>(index)];
    tried.push_back(static_cast<size_t>(index));
    ex.upstream_server = host.name;

    auto conn = worker_.pool().take(host.stats.get());
    if (!conn) {
      conn = co_await connect(host, ucfg.connect_timeout);
      if (!conn) {
        metrics.upstream_connect_failures.inc(worker_.index(), {ucfg.name, host.name});
        host.stats->failures.fetch_add(1, std::memory_order_relaxed);
        fail_status = 502;
        continue;
      }
      metrics.upstream_created.inc(worker_.index(), {ucfg.name});
    } else {
      metrics.upstream_reused.inc(worker_.index(), {ucfg.name});
    }
    if (expect_continue && !ex.request_body_done && in_.empty()) {
      expect_continue = false;
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      auto [ec, n] = co_await down_write(asio::buffer(kContinue));
      if (ec) {
        ex.keep_alive = false;
        ex.status = 499;
        co_return;
      }
    }

    host.stats->active.fetch_add(1, std::memory_order_relaxed);
    auto upstream_start = Clock::now();
    Outcome outcome = co_await forward_once(ex, *conn, fail_status);
    host.stats->active.fetch_sub(1, std::memory_order_relaxed);
    host.stats->requests.fetch_add(1, std::memory_order_relaxed);
    ex.upstream_ms = ms_since(upstream_start);
    if (outcome == Outcome::ok) {
      metrics.upstream_requests.inc(worker_.index(),
                                    {ucfg.name, host.name, status_label(ex.status)});
      bool reusable = resp_.keep_alive && ex.request_body_done && conn->buffer.empty();
      if (reusable) {
        ++conn->requests;
        worker_.pool().put(std::move(conn), ucfg.keepalive);
      }
      co_return;
    }
    host.stats->failures.fetch_add(1, std::memory_order_relaxed);
    metrics.upstream_requests.inc(worker_.index(), {ucfg.name, host.name, "error"});
    if (outcome == Outcome::fail) {
      break;
    }
  }
  if (ex.response_started) {
    ex.keep_alive = false;  // the response was cut short: the client must see the close
    co_return;
  }
  if (ex.status == 499) {
    co_return;  // the client went away; nothing to answer
  }
  co_await reply(ex, fail_status);
}

asio::awaitable<std::unique_ptr<upstream::UpstreamConnection>> H1Session::connect(
    const upstream::Host& host, std::chrono::milliseconds timeout) {
  auto conn =
      std::make_unique<upstream::UpstreamConnection>(socket_.get_executor(), kUpstreamBufferSize);
  conn->host = host.stats.get();
  conn->deadline.expires_after(timeout);
  auto [ec] = co_await conn->socket.async_connect(host.endpoint, kNoThrow);
  if (ec) {
    worker_.shared().log->warn("upstream {}: connect failed: {}", host.name,
                               conn->deadline.expired() ? "timed out" : ec.message());
    co_return nullptr;
  }
  boost::system::error_code ignored;
  conn->socket.set_option(tcp::no_delay(true), ignored);
  co_return conn;
}

asio::awaitable<H1Session::Outcome> H1Session::forward_once(Exchange& ex,
                                                            upstream::UpstreamConnection& conn,
                                                            int& fail_status) {
  const auto& lim = ex.snapshot->config->limits;
  // A request may be sent again on another connection only while no body
  // byte has been taken from the client (we do not buffer bodies to replay).
  auto body = http::BodyDecoder::for_kind(req_.body, req_.content_length);
  bool body_untouched = body.body_bytes() == 0 && ex.bytes_in == 0;

  conn.deadline.expires_after(lim.body_timeout);
  auto [ec, n] = co_await asio::async_write(conn.socket, asio::buffer(head_out_), kNoThrow);
  if (ec) {
    fail_status = 502;
    co_return body_untouched ? Outcome::retry : Outcome::fail;
  }
  if (!body.done()) {
    Outcome sent = co_await send_request_body(ex, conn, body, fail_status);
    if (sent != Outcome::ok) {
      co_return sent;
    }
  }
  // Retry after sending only an idempotent request without a body (we keep
  // no copy of bodies to replay) whose server closed before any response
  // byte: on a reused connection that is the keep-alive race, on a new one a
  // crashing or restarting server.
  bool retryable = req_.idempotent() && body_untouched &&
                   (req_.body == http::BodyKind::none ||
                    (req_.body == http::BodyKind::content_length && req_.content_length == 0));
  Outcome head = co_await read_response_head(ex, conn, retryable, fail_status);
  if (head != Outcome::ok) {
    co_return head;
  }
  if (resp_.status == 101) {
    co_await tunnel(ex, conn);
    co_return Outcome::ok;
  }
  bool relayed = co_await relay_response(ex, conn);
  co_return relayed ? Outcome::ok : Outcome::fail;
}

asio::awaitable<H1Session::Outcome> H1Session::send_request_body(Exchange& ex,
                                                                 upstream::UpstreamConnection& conn,
                                                                 http::BodyDecoder& body,
                                                                 int& fail_status) {
  const auto& lim = ex.snapshot->config->limits;
  const bool chunked = req_.body == http::BodyKind::chunked;
  ex.request_body_done = false;
  char size_line[24];
  while (!body.done()) {
    if (in_.empty()) {
      deadline_.expires_after(lim.body_timeout);
      auto [ec, n] = co_await down_read(asio::buffer(in_.write_ptr(), in_.write_space()));
      if (ec) {
        // The client stalled (408) or went away mid-body: nothing sane can
        // be relayed, and the upstream connection is mid-message.
        ex.keep_alive = false;
        fail_status = deadline_.expired() ? 408 : 400;
        if (!deadline_.expired()) {
          ex.status = 499;
        }
        co_return Outcome::fail;
      }
      in_.commit(n);
    }
    auto step = body.feed(in_.data());
    if (step.error.status != http::ParseStatus::ok) {
      ex.keep_alive = false;
      fail_status = 400;
      co_return Outcome::fail;
    }
    if (!step.data.empty()) {
      ex.bytes_in += step.data.size();
      if (lim.max_body_size > 0 && ex.bytes_in > lim.max_body_size) {
        ex.keep_alive = false;
        fail_status = 413;
        co_return Outcome::fail;
      }
      gather_.clear();
      size_t len = 0;
      if (chunked) {
        len = format_chunk_size(size_line, step.data.size());
        gather_.emplace_back(size_line, len);
      }
      gather_.emplace_back(step.data.data(), step.data.size());
      if (chunked) {
        gather_.emplace_back("\r\n", 2);
      }
      conn.deadline.expires_after(lim.body_timeout);
      auto [ec, n] = co_await asio::async_write(conn.socket, gather_, kNoThrow);
      if (ec) {
        ex.keep_alive = false;
        fail_status = 502;
        co_return Outcome::fail;
      }
    }
    in_.consume(step.consumed);
  }
  if (chunked) {
    conn.deadline.expires_after(lim.body_timeout);
    auto [ec, n] = co_await asio::async_write(conn.socket, asio::buffer("0\r\n\r\n", 5), kNoThrow);
    if (ec) {
      ex.keep_alive = false;
      fail_status = 502;
      co_return Outcome::fail;
    }
  }
  ex.request_body_done = true;
  co_return Outcome::ok;
}

asio::awaitable<H1Session::Outcome> H1Session::read_response_head(
    Exchange& ex, upstream::UpstreamConnection& conn, bool retryable, int& fail_status) {
  const auto& lim = ex.snapshot->config->limits;
  http::HeadLimits head_limits{kUpstreamMaxHead, kUpstreamMaxHead};
  conn.deadline.expires_after(lim.request_timeout);
  size_t scanned = 0;
  size_t head_size = 0;
  bool any_byte = false;
  for (;;) {
    if (!conn.buffer.empty()) {
      auto found = http::find_head_end(conn.buffer.data(), head_limits, false, scanned, head_size);
      if (found.status == http::ParseStatus::ok) {
        auto parsed =
            http::parse_response_head(conn.buffer.data().substr(0, head_size), req_.method, resp_);
        conn.buffer.consume(head_size);
        if (parsed.status != http::ParseStatus::ok) {
          worker_.shared().log->warn("upstream {}: refused response: {}", ex.upstream_server,
                                     parsed.reason);
          fail_status = 502;
          co_return Outcome::fail;
        }
        if (resp_.status == 101) {
          if (req_.upgrade_websocket) {
            co_return Outcome::ok;  // the handshake's answer: a tunnel follows
          }
          // RFC 9110 15.2.2: switching protocols the client did not ask for.
          worker_.shared().log->warn("upstream {}: 101 without an upgrade request",
                                     ex.upstream_server);
          fail_status = 502;
          co_return Outcome::fail;
        }
        // Interim responses (100, 103) are not relayed.
        if (resp_.status >= 100 && resp_.status < 200) {
          scanned = 0;
          continue;
        }
        co_return Outcome::ok;
      }
      if (found.status != http::ParseStatus::incomplete) {
        fail_status = 502;
        co_return Outcome::fail;
      }
    }
    auto [ec, n] = co_await conn.socket.async_read_some(
        asio::buffer(conn.buffer.write_ptr(), conn.buffer.write_space()), kNoThrow);
    if (ec) {
      if (conn.deadline.expired()) {
        fail_status = 504;
        co_return Outcome::fail;
      }
      fail_status = 502;
      co_return (retryable && !any_byte) ? Outcome::retry : Outcome::fail;
    }
    any_byte = true;
    conn.buffer.commit(n);
  }
}

asio::awaitable<bool> H1Session::relay_response(Exchange& ex, upstream::UpstreamConnection& conn) {
  using Mode = filters::BodyEncoder::Mode;
  const auto& lim = ex.snapshot->config->limits;
  http::prepare_downstream_response(resp_);
  ex.status = resp_.status;
  run_response_filters(ex, resp_.status, false);
  if (resp_.body == http::BodyKind::none) {
    ctx_.response_encoder.reset();  // nothing to encode (HEAD, 204, 304)
  }
  const bool encoding = ctx_.response_encoder != nullptr;
  if (encoding) {
    resp_.headers.remove("content-length");  // the encoded length is not known yet
  }
  // Until-close and encoded bodies become chunked for HTTP/1.1 clients so the
  // downstream connection survives; HTTP/1.0 clients get a close instead.
  bool chunked_down =
      resp_.body == http::BodyKind::chunked ||
      ((resp_.body == http::BodyKind::until_close || encoding) && req_.version_minor == 1);
  if ((resp_.body == http::BodyKind::until_close || encoding) && !chunked_down) {
    ex.keep_alive = false;
  }
  if (!ex.request_body_done) {
    ex.keep_alive = false;
  }
  serialize_response_head(ex, chunked_down);

  auto body = http::BodyDecoder::for_kind(resp_.body, resp_.content_length);
  bool head_sent = false;
  char size_line[24];
  for (;;) {
    http::BodyDecoder::Step step;
    if (!body.done() && !conn.buffer.empty()) {
      step = body.feed(conn.buffer.data());
      if (step.error.status != http::ParseStatus::ok) {
        resp_.keep_alive = false;
        ex.keep_alive = false;
        co_return false;
      }
    }
    bool finished = body.done();
    gather_.clear();
    if (!head_sent) {
      gather_.emplace_back(head_out_.data(), head_out_.size());
    }
    // An encoder holds data back unless told the upstream has nothing more
    // buffered: a streamed response must not sit in the compressor.
    Mode mode = finished                              ? Mode::finish
                : step.consumed >= conn.buffer.size() ? Mode::flush
                                                      : Mode::none;
    if (!step.data.empty() || finished) {
      ex.bytes_out += step.data.size();
      if (!frame_body(step.data, mode, chunked_down, size_line)) {
        worker_.shared().log->warn("response encoder failed for {}", ex.upstream_server);
        resp_.keep_alive = false;
        ex.keep_alive = false;
        co_return false;
      }
    }
    if (!gather_.empty()) {
      deadline_.expires_after(lim.body_timeout);
      auto [ec, n] = co_await down_write(gather_);
      if (ec) {
        ex.keep_alive = false;
        resp_.keep_alive = false;
        co_return false;
      }
      head_sent = true;
      ex.response_started = true;
    }
    conn.buffer.consume(step.consumed);
    if (finished) {
      co_return true;
    }
    if (step.consumed > 0 && !conn.buffer.empty()) {
      continue;
    }
    conn.deadline.expires_after(lim.body_timeout);
    auto [ec, n] = co_await conn.socket.async_read_some(
        asio::buffer(conn.buffer.write_ptr(), conn.buffer.write_space()), kNoThrow);
    if (ec) {
      if (ec == asio::error::eof && body.eof_completes()) {
        resp_.keep_alive = false;
        gather_.clear();
        bool encoded = frame_body({}, Mode::finish, chunked_down, size_line);
        if (!encoded) {
          ex.keep_alive = false;
          co_return false;
        }
        if (!gather_.empty()) {
          deadline_.expires_after(lim.body_timeout);
          auto [wec, wn] = co_await down_write(gather_);
          if (wec) {
            ex.keep_alive = false;
          }
        }
        co_return true;
      }
      // Truncated or stalled upstream body: the client must not take a
      // partial body for a whole one, so its connection is closed.
      resp_.keep_alive = false;
      ex.keep_alive = false;
      co_return false;
    }
    conn.buffer.commit(n);
  }
}

asio::awaitable<void> H1Session::tunnel(Exchange& ex, upstream::UpstreamConnection& conn) {
  http::prepare_downstream_response(resp_);
  ex.status = 101;
  run_response_filters(ex, 101, false);
  ctx_.response_encoder.reset();  // a tunnel carries frames, not a body to encode
  // Neither connection speaks HTTP again.
  resp_.keep_alive = false;
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
  gather_.clear();
  gather_.emplace_back(head_out_.data(), head_out_.size());
  if (!conn.buffer.empty()) {
    gather_.emplace_back(conn.buffer.data().data(), conn.buffer.size());
  }
  auto [ec, n] = co_await down_write(gather_);
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
  boost::system::error_code ignored;
  for (;;) {
    if (!in_.empty()) {
      auto [wec, wn] = co_await asio::async_write(conn.socket, asio::buffer(in_.data()), kNoThrow);
      if (wec) {
        break;
      }
      bytes += in_.size();
      in_.consume(in_.size());
    }
    auto [ec, n] = co_await down_read(asio::buffer(in_.write_ptr(), in_.write_space()));
    if (ec == asio::error::eof) {
      conn.socket.shutdown(tcp::socket::shutdown_send, ignored);
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
    auto [ec, n] = co_await conn.socket.async_read_some(
        asio::buffer(buffer.write_ptr(), buffer.write_space()), kNoThrow);
    if (ec == asio::error::eof) {
      if (tls_) {
        co_await tls_->shutdown();  // close_notify: the TLS way to half-close
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
  tls_ = std::make_unique<tls::TlsStream>(socket_, std::move(ssl));
  tls_->set_deadline(&deadline_);  // a wait starting after the deadline fired ends at once
  deadline_.expires_after(limits().header_timeout);
  auto ec = co_await tls_->handshake();
  auto& metrics = *worker_.shared().metrics;
  if (ec) {
    auto reason = tls_->handshake_error().value_or(tls::HandshakeError::closed);
    if (deadline_.expired()) {
      reason = tls::HandshakeError::closed;
    }
    metrics.tls_handshake_errors.inc(worker_.index(), {listener_.name, tls::to_string(reason)});
    worker_.shared().log->debug("{}: TLS handshake with {} failed: {} ({})", listener_.name,
                                peer_text_, tls::to_string(reason), tls_->openssl_reason());
    co_return false;
  }
  SSL* native = tls_->native_handle();
  tls_version_ = tls::protocol_version(native);
  metrics.tls_handshakes.inc(worker_.index(), {listener_.name, tls_version_});
  if (tls::negotiated_protocol(native) == tls::AppProtocol::h2) {
    co_return false;  // never offered while HTTP/2 is not served (served_listener)
  }
  co_return true;
}

asio::awaitable<std::tuple<boost::system::error_code, size_t>> H1Session::down_read(
    asio::mutable_buffer b) {
  if (tls_) {
    auto r = co_await tls_->read_some(b);
    co_return r;
  }
  auto r = co_await socket_.async_read_some(b, kNoThrow);
  co_return r;
}

asio::awaitable<std::tuple<boost::system::error_code, size_t>> H1Session::down_write(
    const std::vector<asio::const_buffer>& pieces) {
  if (tls_) {
    auto r = co_await tls_->write(pieces);
    co_return r;
  }
  auto r = co_await asio::async_write(socket_, pieces, kNoThrow);
  co_return r;
}

asio::awaitable<std::tuple<boost::system::error_code, size_t>> H1Session::down_write(
    asio::const_buffer b) {
  if (tls_) {
    auto r = co_await tls_->write(b);
    co_return r;
  }
  auto r = co_await asio::async_write(socket_, b, kNoThrow);
  co_return r;
}

void H1Session::serialize_request_head(std::string_view target) {
  head_out_.clear();
  head_out_ += req_.method_text;
  head_out_ += ' ';
  head_out_ += target;
  head_out_ += " HTTP/1.1\r\n";
  req_.headers.serialize_to(head_out_);
  if (req_.body == http::BodyKind::chunked) {
    head_out_ += "Transfer-Encoding: chunked\r\n";
  }
  head_out_ += "\r\n";
}

void H1Session::serialize_response_head(Exchange& ex, bool chunked_down) {
  head_out_.clear();
  head_out_ += protocol_name(req_.version_minor);
  head_out_ += ' ';
  head_out_ += status_label(resp_.status);
  head_out_ += ' ';
  head_out_ += resp_.reason.empty() ? reason_phrase(resp_.status) : std::string_view(resp_.reason);
  head_out_ += "\r\n";
  resp_.headers.serialize_to(head_out_);
  if (chunked_down) {
    head_out_ += "Transfer-Encoding: chunked\r\n";
  }
  if (resp_.status == 101) {
    // "Connection: upgrade" is already there (prepare_downstream_response).
  } else if (!ex.keep_alive || closing_ || worker_.draining()) {
    ex.keep_alive = false;
    head_out_ += "Connection: close\r\n";
  } else if (req_.version_minor == 0) {
    head_out_ += "Connection: keep-alive\r\n";
  }
  head_out_ += "\r\n";
}

asio::awaitable<bool> H1Session::reply(Exchange& ex, int status, std::string_view error,
                                       std::string_view location) {
  ex.status = status;
  // A body the client is still sending would be read as the next request:
  // after a local answer the connection closes unless the body is done.
  if (!ex.request_body_done || closing_ || worker_.draining()) {
    ex.keep_alive = false;
  }
  make_local_reply(status, error, resp_.headers, reply_body_);
  if (!location.empty()) {
    resp_.headers.add("Location", location);
  }
  run_response_filters(ex, status, true);
  const bool head_only = req_.method == http::Method::head;
  if (ctx_.response_encoder && !reply_body_.empty() && !head_only) {
    // A local body is small and whole: encode it in one step, keep its length.
    encoded_.clear();
    if (ctx_.response_encoder->encode(reply_body_, filters::BodyEncoder::Mode::finish, encoded_)) {
      reply_body_.swap(encoded_);
    } else {
      resp_.headers.remove("content-encoding");
    }
  }
  head_out_.clear();
  append_local_reply(head_out_, status, resp_.headers, reply_body_, !ex.keep_alive, head_only);
  ex.response_started = true;
  bool ok = co_await write_downstream(limits().body_timeout);
  if (!ok) {
    ex.keep_alive = false;
  }
  co_return ok;
}

asio::awaitable<bool> H1Session::write_downstream(std::chrono::milliseconds timeout) {
  deadline_.expires_after(timeout);
  auto [ec, n] = co_await down_write(asio::buffer(head_out_));
  co_return !ec;
}

void H1Session::finish(Exchange& ex) {
  const auto& snap = *ex.snapshot;
  if (ex.global_ran > 0) {
    snap.global_filters.run_log(ctx_, ex.global_ran);
  }
  if (ex.route >= 0 && ex.route_ran > 0) {
    snap.route_filters[static_cast<size_t>(ex.route)].run_log(ctx_, ex.route_ran);
  }
  log_request(ex);
  ctx_.response_encoder.reset();  // its state is large: free it between requests
}

void H1Session::log_request(Exchange& ex) {
  auto& shared = worker_.shared();
  auto& metrics = *shared.metrics;
  size_t shard = worker_.index();
  std::string_view route_name;
  if (ex.route >= 0) {
    route_name = ex.snapshot->config->routes[static_cast<size_t>(ex.route)].name;
  }
  double duration_ms = ms_since(ex.start);
  metrics.requests.inc(shard, {route_name, ex.upstream_name, status_label(ex.status)});
  metrics.request_duration.observe(shard, {route_name}, duration_ms / 1000.0);
  if (ex.bytes_in > 0) {
    metrics.bytes_received.inc(shard, {listener_.name}, ex.bytes_in);
  }
  if (ex.bytes_out > 0) {
    metrics.bytes_sent.inc(shard, {listener_.name}, ex.bytes_out);
  }
  if (shared.access_log == nullptr || !shared.access_log->enabled()) {
    return;
  }
  observe::AccessRecord r;
  r.time = ex.wall_start;
  r.client_ip = client_text_.empty() ? std::string_view(peer_text_) : client_text_;
  r.method = req_.method_text;
  r.host = host_;
  r.path = req_.path();
  r.query = req_.query();
  r.protocol = protocol_name(req_.version_minor);
  r.status = ex.status;
  r.bytes_in = ex.bytes_in;
  r.bytes_out = ex.bytes_out;
  r.duration_ms = duration_ms;
  r.route = route_name;
  r.upstream = ex.upstream_name;
  r.upstream_server = ex.upstream_server;
  r.upstream_duration_ms = ex.upstream_ms;
  r.request_id = ctx_.request_id;
  r.user_agent = req_.headers.get("user-agent").value_or("");
  r.referer = req_.headers.get("referer").value_or("");
  r.tls_version = tls_version_;
  shared.access_log->write(shard, r);
}

}  // namespace ward::server
