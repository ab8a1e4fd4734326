#include "proxy/server/request_handler.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "proxy/http/forwarding.h"
#include "proxy/router/router.h"
#include "proxy/server/local_reply.h"
#include "proxy/upstream/passive.h"
#include "proxy/util/recv_op.h"
#include "proxy/util/send_now.h"
#include "proxy/util/spare.h"

// Style note: GCC 12 miscompiles some coroutine shapes (a co_await inside a
// condition or a ternary, `co_return co_await`). Every co_await here is a
// plain statement or the right-hand side of an assignment.

namespace ward::server {

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
// A socket operation in deferred form, co_awaited inside an awaitable, runs
// with no coroutine frame of its own (use_awaitable allocates, resumes and
// frees one per operation). The hot path of a request without a body uses
// it on plain upstream connections; TLS ones go through the TlsStream
// coroutines (conn.read_some / conn.write), so the call sites branch.
constexpr auto kDeferred = asio::as_tuple(asio::deferred);
constexpr size_t kUpstreamBufferSize = 64 * 1024;
constexpr size_t kUpstreamMaxHead = 60 * 1024;

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// Passive ejection (upstream/passive.h): counts the attempt's outcome when
// the upstream has a `passive` section, and logs an ejection.
void count_passive(const config::Upstream& u, const upstream::Host& host,
                   const upstream::HostSet& set, bool failed, const WorkerShared& shared,
                   size_t worker) {
  if (!u.passive) {
    return;
  }
  if (!failed) {
    upstream::record_success(*host.stats);
    return;
  }
  auto e = upstream::record_failure(host, set, *u.passive, upstream::steady_now_ms());
  if (e.time.count() > 0) {
    shared.metrics->ejections.inc(worker, {u.name, host.name});
    shared.log->warn("upstream {}: server {} ejected for {} ms after {} failures in a row", u.name,
                     host.name, e.time.count(), u.passive->consecutive_failures);
  } else if (e.spared) {
    shared.log->warn(
        "upstream {}: server {} failed {} times in a row, not ejected: no other server in "
        "service",
        u.name, host.name, u.passive->consecutive_failures);
  }
}

}  // namespace

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

RequestHandler::RequestHandler(Worker& worker, const ListenerInfo& listener)
    : worker_(worker), listener_(listener) {
  take_request_state();
}

RequestHandler::~RequestHandler() {
  release_request_state();  // an HTTP/2 stream's: to the connection's next stream
}

void RequestHandler::take_request_state() {
  if (!rs_) {
    rs_ = util::take_object<RequestState>();  // cleared when it was given back
  }
}

void RequestHandler::release_request_state() {
  if (!rs_) {
    return;
  }
  release_request_memory();
  recycle(0);
  util::give_object(rs_);  // to this thread's spares: at most kMaxSpares kept
}

void RequestHandler::release_request_memory() {
  rs_->req.headers.release_memory();
  rs_->resp.headers.release_memory();
  util::give_back(rs_->up_head);
  util::give_back(rs_->target_up);
  util::give_back(rs_->reply_body);
  util::give_back(rs_->encoded);
  // rs_->up_gather and rs_->tried are a few dozen bytes: kept, not worth a trip.
}

const config::Limits& RequestHandler::limits() const {
  return worker_.snapshot()->config->limits;
}

void RequestHandler::recycle(size_t keep_bytes) {
  auto trim = [keep_bytes](std::string& s) {
    s.clear();
    if (s.capacity() > keep_bytes) {
      s.shrink_to_fit();
    }
  };
  rs_->client = {};
  rs_->client_text.clear();
  rs_->req.clear();
  rs_->resp.clear();
  // A head near max_header_size leaves its lists that large: not kept.
  if (rs_->req.headers.memory() > keep_bytes) {
    rs_->req.headers = http::HeaderList();
  }
  if (rs_->resp.headers.memory() > keep_bytes) {
    rs_->resp.headers = http::HeaderList();
  }
  rs_->ctx.reset();
  rs_->host.clear();
  trim(rs_->reply_body);
  trim(rs_->encoded);
  rs_->up_head.clear();
  rs_->target_up.clear();
  rs_->up_gather.clear();
  rs_->tried.clear();
  active_conn_ = nullptr;
}

asio::awaitable<void> RequestHandler::handle(Exchange& ex) {
  const auto& cfg = *ex.snapshot->config;
  ex.request_body_done =
      rs_->req.body == http::BodyKind::none ||
      (rs_->req.body == http::BodyKind::content_length && rs_->req.content_length == 0);

  rs_->client = http::decide_client_ip(rs_->req.headers, peer_, ex.snapshot->trusted_proxies);
  rs_->client_text = rs_->client == peer_ ? peer_text_ : rs_->client.to_string();

  rs_->host = rs_->req.headers.get("host").value_or("");
  begin_filters(ex);
  const auto& snap = *ex.snapshot;
  if (!snap.global_filters.empty()) {
    ex.global_ran = snap.global_filters.run_request(rs_->ctx, rs_->states.data());
    if (rs_->ctx.waiting()) {
      ex.global_ran = co_await wait_on_store(snap.global_filters, 0, ex.global_ran);
    }
    if (rs_->ctx.replied()) {
      co_await reply(ex, rs_->ctx.reply_status, rs_->ctx.reply_error);
      co_return;
    }
  }
  std::string_view host = rs_->host;
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
    location += rs_->req.target;
    co_await reply(ex, 308, {}, location);
    co_return;
  }
  if (rs_->req.body == http::BodyKind::content_length && cfg.limits.max_body_size > 0 &&
      rs_->req.content_length > cfg.limits.max_body_size) {
    co_await reply(ex, 413);
    co_return;
  }
  ex.route = snap.router.match(host, rs_->req.path(), rs_->req.method_text);
  if (ex.route < 0) {
    co_await reply(ex, 404);
    co_return;
  }
  const auto& chain = snap.route_filters[static_cast<size_t>(ex.route)];
  if (!chain.empty()) {
    ex.route_ran = chain.run_request(rs_->ctx, rs_->states.data() + snap.global_filters.size());
    if (rs_->ctx.waiting()) {
      ex.route_ran = co_await wait_on_store(chain, snap.global_filters.size(), ex.route_ran);
    }
    if (rs_->ctx.replied()) {
      co_await reply(ex, rs_->ctx.reply_status, rs_->ctx.reply_error);
      co_return;
    }
  }
  co_await proxy(ex);
}

asio::awaitable<size_t> RequestHandler::wait_on_store(const filters::FilterChain& chain,
                                                      size_t first_state, size_t ran) {
  auto& ctx = rs_->ctx;
  while (ctx.waiting()) {
    Worker::RedisStore& store = worker_.redis(*ctx.store_call.address);
    auto timeout = std::chrono::nanoseconds(ctx.store_call.timeout_ns);
    auto start = std::chrono::steady_clock::now();
    upstream::RedisClient::Result r =
        co_await store.client->call(std::move(ctx.store_call.command), timeout);
    std::chrono::duration<double> waited = std::chrono::steady_clock::now() - start;
    worker_.note_redis_result(store, r, waited.count());
    filters::StoreResult result{r.ok, &r.reply, r.error};
    ran = chain.resume_request(ctx, rs_->states.data() + first_state, ran, result);
  }
  co_return ran;
}

void RequestHandler::begin_filters(Exchange& ex) {
  const auto& snap = *ex.snapshot;
  if (rs_->states.size() < snap.max_filter_states) {
    rs_->states.resize(snap.max_filter_states);
  }
  rs_->ctx.reset();
  rs_->ctx.method = rs_->req.method_text;
  rs_->ctx.path = rs_->req.path();
  rs_->ctx.query = rs_->req.query();
  rs_->ctx.host = rs_->host;
  rs_->ctx.request_headers = &rs_->req.headers;
  rs_->ctx.client_ip = rs_->client;
  rs_->ctx.client_ip_text = rs_->client_text;
  rs_->ctx.tls = tls_;
  rs_->ctx.now_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(ex.start.time_since_epoch()).count();
  rs_->ctx.worker = worker_.index();
}

void RequestHandler::run_response_filters(Exchange& ex, int status, bool local) {
  rs_->ctx.status = status;
  rs_->ctx.local_reply = local;
  rs_->ctx.response_headers = &rs_->resp.headers;
  rs_->ctx.response_has_body =
      status >= 200 && status != 204 && status != 304 && rs_->req.method != http::Method::head;
  const auto& snap = *ex.snapshot;
  if (ex.route >= 0 && ex.route_ran > 0) {
    snap.route_filters[static_cast<size_t>(ex.route)].run_response(
        rs_->ctx, rs_->states.data() + snap.global_filters.size(), ex.route_ran);
  }
  if (ex.global_ran > 0) {
    snap.global_filters.run_response(rs_->ctx, rs_->states.data(), ex.global_ran);
  }
}

asio::awaitable<void> RequestHandler::proxy(Exchange& ex) {
  const auto& snap = *ex.snapshot;
  const auto& route = snap.config->routes[static_cast<size_t>(ex.route)];
  const auto& ucfg = *snap.route_upstream_configs[static_cast<size_t>(ex.route)];
  const auto& state = snap.route_upstreams[static_cast<size_t>(ex.route)];
  // Not kept across a co_await (Worker::upstream): looked up again for every
  // pick after the first.
  WorkerUpstream* wu = &worker_.upstream(state, ucfg);
  ex.hosts = wu->hosts;  // kept for the whole exchange, whatever DNS or a reload does
  const auto& hosts = ex.hosts;
  ex.upstream_name = ucfg.name;

  http::ForwardContext fctx;
  fctx.peer = peer_;
  fctx.client = rs_->client;  // decided once, in handle()
  fctx.peer_trusted = snap.trusted_proxies.contains(peer_);
  fctx.tls = tls_;
  http::prepare_upstream_request(rs_->req, fctx);
  // The client's target stays in rs_->req (filters and the access log see it);
  // only a stripped target needs a string of its own.
  if (route.strip_prefix) {
    rs_->target_up = router::strip_prefix(rs_->req.target, route.match.path_prefix);
  }
  serialize_request_head(route.strip_prefix ? std::string_view(rs_->target_up)
                                            : std::string_view(rs_->req.target));

  auto& metrics = *worker_.shared().metrics;
  auto& tried = rs_->tried;  // reused: no allocation per request
  tried.clear();
  int fail_status = 502;
  uint32_t attempts = 1 + ucfg.retries;
  // A replayable request that died on a pooled connection before any
  // response byte (the keep-alive race: the server closed it as we sent) is
  // sent once more on a new connection without spending a retry: the
  // failure is the pool's, not the server's, and `retries: 0` must not turn
  // it into a 502.
  bool race_retry_left = true;
  bool fresh_only = false;
  for (uint32_t attempt = 0; attempt < attempts; ++attempt) {
    upstream::PickContext pctx;
    pctx.now_ms = upstream::steady_now_ms();
    if (ucfg.balance == config::Balance::ip_hash) {
      pctx.hash = upstream::hash_key(rs_->client_text);
    }
    pctx.tried = tried;
    if (wu == nullptr) {
      wu = &worker_.upstream(state, ucfg);
    }
    int index = wu->balancer->pick(*hosts, pctx);
    wu = nullptr;  // the waits below may outlive it
    if (index < 0) {
      // Nothing available at all is 503; everything tried and failed is 502.
      fail_status = tried.empty() ? 503 : fail_status;
      break;
    }
    const auto& host = hosts->hosts[static_cast<size_t>(index)];
    tried.push_back(static_cast<size_t>(index));
    ex.upstream_server = host.name;

    // A request that could not be replayed gets a connection checked with a
    // peek however recently it was pooled (see ConnectionPool::kTrustIdle).
    std::unique_ptr<upstream::UpstreamConnection> conn;
    if (!fresh_only) {
      conn = worker_.pool().take(host.stats.get(), replayable(ex));
    }
    const bool reused = conn != nullptr;
    if (!conn) {
      conn = co_await connect(host, ucfg.connect_timeout,
                              snap.route_upstream_tls[static_cast<size_t>(ex.route)]);
      if (!conn) {
        metrics.upstream_connect_failures.inc(worker_.index(), {ucfg.name, host.name});
        host.stats->failures.fetch_add(1, std::memory_order_relaxed);
        count_passive(ucfg, host, *hosts, true, worker_.shared(), worker_.index());
        fail_status = 502;
        continue;
      }
      metrics.upstream_created.inc(worker_.index(), {ucfg.name});
    } else {
      metrics.upstream_reused.inc(worker_.index(), {ucfg.name});
    }
    if (!ex.request_body_done && !ex.body_taken) {
      bool ready = co_await before_body(ex);
      if (!ready) {
        ex.keep_alive = false;
        ex.status = 499;
        co_return;
      }
    }

    if (downstream_gone()) {
      ex.keep_alive = false;
      ex.status = 499;
      co_return;
    }
    host.stats->active.fetch_add(1, std::memory_order_relaxed);
    auto upstream_start = Clock::now();
    active_conn_ = conn.get();
    Outcome outcome = co_await forward_once(ex, *conn, fail_status);
    active_conn_ = nullptr;
    host.stats->active.fetch_sub(1, std::memory_order_relaxed);
    host.stats->requests.fetch_add(1, std::memory_order_relaxed);
    ex.upstream_ms = ms_since(upstream_start);
    if (outcome == Outcome::ok) {
      metrics.upstream_requests.inc(worker_.index(),
                                    {ucfg.name, host.name, status_label(ex.status)});
      count_passive(ucfg, host, *hosts, upstream::passive_failure_status(ex.status),
                    worker_.shared(), worker_.index());
      worker_.pool().keep_session(*conn);  // TLS 1.3: the tickets came before the response
      bool reusable = rs_->resp.keep_alive && ex.request_body_done && conn->buffer.empty();
      if (reusable) {
        ++conn->requests;
        worker_.pool().put(std::move(conn), ucfg.keepalive);
      }
      co_return;
    }
    if (outcome == Outcome::retry && reused && race_retry_left) {
      race_retry_left = false;
      fresh_only = true;
      tried.pop_back();  // the server is not at fault: it may be picked again
      --attempt;
      continue;
    }
    fresh_only = false;
    host.stats->failures.fetch_add(1, std::memory_order_relaxed);
    if (upstream::passive_failure_status(fail_status)) {
      count_passive(ucfg, host, *hosts, true, worker_.shared(),
                    worker_.index());  // not a client's 400/408/413/499
    }
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

asio::awaitable<std::unique_ptr<upstream::UpstreamConnection>> RequestHandler::connect(
    const upstream::Host& host, std::chrono::milliseconds timeout,
    const std::shared_ptr<const tls::ClientContext>& client_tls) {
  auto conn = std::make_unique<upstream::UpstreamConnection>(worker_.io().get_executor(),
                                                             kUpstreamBufferSize);
  conn->host = host.stats;
  conn->deadline.expires_after(timeout);
  SSL_SESSION* session =
      client_tls ? worker_.pool().session(host.stats.get(), client_tls.get()) : nullptr;
  std::string failure = co_await upstream::connect_to(*conn, host, client_tls, session);
  if (!failure.empty()) {
    worker_.shared().log->warn("upstream {}: {}", host.name, failure);
    co_return nullptr;
  }
  if (client_tls) {
    worker_.pool().keep_session(*conn);  // TLS 1.2: the session exists now
  }
  co_return conn;
}

bool RequestHandler::replayable(const Exchange& ex) const {
  return rs_->req.idempotent() && !ex.body_taken &&
         (rs_->req.body == http::BodyKind::none ||
          (rs_->req.body == http::BodyKind::content_length && rs_->req.content_length == 0));
}

asio::awaitable<RequestHandler::Outcome> RequestHandler::forward_once(
    Exchange& ex, upstream::UpstreamConnection& conn, int& fail_status) {
  const auto& lim = ex.snapshot->config->limits;
  // A request may be sent again on another connection only while no body
  // byte has been taken from the client (we do not buffer bodies to replay).
  bool body_untouched = !ex.body_taken;

  conn.deadline.expires_after(lim.body_timeout);
  upstream::UpstreamConnection::IoResult sent;
  if (conn.is_tls()) {
    sent = co_await conn.write(asio::buffer(rs_->up_head));
  } else {
    // The head fits the send buffer of a connection that is ready for a
    // request: sent here, no wait. Only a part left over waits.
    const asio::const_buffer head = asio::buffer(rs_->up_head);
    const util::SentNow now = util::send_now(conn.socket.native_handle(), {&head, 1});
    if (now.done()) {
      sent = {now.ec, now.bytes};
    } else {
      sent = co_await asio::async_write(conn.socket, head + now.bytes, kDeferred);
      std::get<1>(sent) += now.bytes;
    }
  }
  auto [ec, n] = sent;
  if (ec) {
    fail_status = 502;
    co_return body_untouched ? Outcome::retry : Outcome::fail;
  }
  if (!ex.request_body_done) {
    Outcome duplex = co_await forward_duplex(ex, conn, fail_status);
    co_return duplex;
  }
  // No body: nothing runs beside the response (the hot path).
  // Retry after sending only an idempotent request without a body (we keep
  // no copy of bodies to replay) whose server closed before any response
  // byte: on a reused connection that is the keep-alive race, on a new one a
  // crashing or restarting server.
  bool retryable = replayable(ex);
  Outcome head = co_await read_response_head(ex, conn, retryable, fail_status, nullptr);
  if (head != Outcome::ok) {
    co_return head;
  }
  if (rs_->resp.status == 101) {
    co_await upgraded(ex, conn);
    co_return Outcome::ok;
  }
  bool relayed = co_await relay_response(ex, conn, nullptr);
  co_return relayed ? Outcome::ok : Outcome::fail;
}

// Full duplex, as Envoy does and nginx with proxy_request_buffering off:
// the response is read while the body is still going up, so an upstream
// that answers as it reads (an echo, a transcoder, bidirectional gRPC)
// streams, and one that answers early (413, 401) is heard. Both directions
// keep their bounded buffers: a slow upstream reader stops the body side
// from reading the client, a slow client reader stops the response side
// from reading the upstream.
//
// Endings:
//  - the body side finishes: the response goes on alone, as before;
//  - the response is complete first (an early answer): the body side is
//    stopped, the upstream connection is not reused (it is mid-request)
//    and the client's connection closes after the response (HTTP/2: the
//    codec resets the request side with NO_ERROR);
//  - a write upstream fails (the server answered and closed): the body
//    stops there, the response side still relays what the server said;
//  - the client fails the body (400, 408, 413, 499): the upstream
//    connection is cancelled, so the response side stops; the client's
//    status is answered if no response byte went down yet, else the
//    exchange is cut short under that status;
//  - the response side fails: the body side is stopped, and the usual
//    502/504 is answered when nothing went down yet.
// Deadlines: the response side's waits are on the connection's main lane
// (request_timeout to the head, body_timeout per read), the body's writes
// on the second lane (body_timeout each), so neither moves the other's.
asio::awaitable<RequestHandler::Outcome> RequestHandler::forward_duplex(
    Exchange& ex, upstream::UpstreamConnection& conn, int& fail_status) {
  const auto executor = conn.socket.get_executor();
  BodyRelay relay(executor);
  relay.running = true;
  asio::co_spawn(executor, send_body(ex, conn, relay), [&relay](std::exception_ptr) {
    relay.running = false;
    relay.ended.notify();
  });

  Outcome outcome = co_await read_response_head(ex, conn, false, fail_status, &relay);
  relay.awaiting_head = false;
  if (outcome == Outcome::ok) {
    // The head is in: request_timeout must not fire while the response
    // waits on the client (it would cancel the body's writes too).
    conn.deadline.reset(util::Deadline::Lane::main);
    if (rs_->resp.status == 101) {
      // The tunnel starts after the whole request, as it always did: its
      // first upstream bytes must not interleave with the body.
      co_await join_body(relay, conn, false);
      if (relay.client_status == 0 && !relay.upstream_failed) {
        co_await upgraded(ex, conn);
      } else {
        fail_status = 502;
        outcome = Outcome::fail;
      }
    } else {
      bool relayed = co_await relay_response(ex, conn, &relay);
      outcome = relayed ? Outcome::ok : Outcome::fail;
    }
  }
  co_await join_body(relay, conn, true);

  if (!ex.request_body_done) {
    // The rest of the body is still on its way from the client: this
    // connection cannot carry another request (HTTP/1.1 closes it).
    ex.keep_alive = false;
  }
  if (outcome != Outcome::ok && relay.client_status == 0 && ex.downstream_failed &&
      !ex.request_body_done) {
    // The client went away with its request unfinished, and the response
    // write noticed before the body's read did: the same ending (499) as
    // when the read notices first, whichever wins the race.
    ex.status = 499;
  }
  if (outcome == Outcome::ok || relay.client_status == 0) {
    co_return outcome;
  }
  // The client failed the body first (and so cancelled the upstream side).
  const int status = relay.client_status;
  fail_status = status == 499 ? 400 : status;
  if (status == 499 || ex.response_started) {
    ex.status = status;  // the log says why the exchange was cut short
  }
  co_return Outcome::fail;
}

asio::awaitable<void> RequestHandler::join_body(BodyRelay& relay,
                                                upstream::UpstreamConnection& conn, bool stop) {
  if (relay.running && stop) {
    relay.stop = true;
    cancel_body();  // a wait on the client
    conn.cancel();  // a write upstream
  }
  while (relay.running) {
    co_await relay.ended.wait(std::chrono::hours(24));
  }
  conn.deadline.reset(util::Deadline::Lane::second);
}

asio::awaitable<void> RequestHandler::send_body(Exchange& ex, upstream::UpstreamConnection& conn,
                                                BodyRelay& relay) {
  using Lane = util::Deadline::Lane;
  const auto& lim = ex.snapshot->config->limits;
  const bool chunked = rs_->req.body == http::BodyKind::chunked;
  char size_line[24];
  // The request has gone up (or can go no further): from now on the wait
  // for the response head is request_timeout's, as without a body.
  auto request_sent = [&] {
    if (relay.awaiting_head) {
      conn.deadline.expires_after(lim.request_timeout);
    }
  };
  // The client failed: nothing sane can be relayed, and the upstream
  // connection is mid-message. Cancelling it ends the response side's wait.
  auto client_failed = [&](int status) {
    relay.client_status = status;
    conn.cancel();
  };
  for (;;) {
    ex.body_taken = true;
    BodyPiece piece = co_await read_body(ex);
    if (relay.stop) {
      co_return;  // the exchange is over, whatever this piece says
    }
    if (piece.fail_status != 0) {
      // The client stalled (408), sent bad framing (400) or went away
      // mid-body (499).
      client_failed(piece.fail_status);
      co_return;
    }
    if (!piece.data.empty()) {
      ex.bytes_in += piece.data.size();
      if (lim.max_body_size > 0 && ex.bytes_in > lim.max_body_size) {
        client_failed(413);
        co_return;
      }
      rs_->up_gather.clear();
      if (chunked) {
        size_t len = format_chunk_size(size_line, piece.data.size());
        rs_->up_gather.emplace_back(size_line, len);
      }
      rs_->up_gather.emplace_back(piece.data.data(), piece.data.size());
      if (chunked) {
        rs_->up_gather.emplace_back("\r\n", 2);
      }
      conn.deadline.expires_after(lim.body_timeout, Lane::second);
      auto [ec, n] = co_await conn.write(rs_->up_gather);
      if (relay.stop) {
        co_return;
      }
      if (ec) {
        // The server closed or reset (it may have answered already: the
        // response side reads that), or took nothing for body_timeout (the
        // expired lane cancelled the response side too: 504).
        relay.upstream_failed = true;
        request_sent();
        co_return;
      }
      conn.deadline.reset(Lane::second);
    }
    body_consumed();
    if (piece.end) {
      break;
    }
  }
  if (chunked) {
    conn.deadline.expires_after(lim.body_timeout, Lane::second);
    auto [ec, n] = co_await conn.write(asio::buffer("0\r\n\r\n", 5));
    if (relay.stop) {
      co_return;
    }
    if (ec) {
      relay.upstream_failed = true;
      request_sent();
      co_return;
    }
    conn.deadline.reset(Lane::second);
  }
  ex.request_body_done = true;
  request_sent();
}

asio::awaitable<RequestHandler::Outcome> RequestHandler::read_response_head(
    Exchange& ex, upstream::UpstreamConnection& conn, bool retryable, int& fail_status,
    const BodyRelay* duplex) {
  const auto& lim = ex.snapshot->config->limits;
  http::HeadLimits head_limits{kUpstreamMaxHead, kUpstreamMaxHead};
  if (duplex == nullptr || ex.request_body_done) {
    conn.deadline.expires_after(lim.request_timeout);
  } else {
    // The request is still going up: an upload of any length is bounded by
    // body_timeout per wait on the body side, which starts request_timeout
    // once it has sent the end of the body (or stopped on a failure).
    conn.deadline.clear();
  }
  size_t scanned = 0;
  size_t head_size = 0;
  bool any_byte = false;
  for (;;) {
    if (!conn.buffer.empty()) {
      auto found = http::find_head_end(conn.buffer.data(), head_limits, false, scanned, head_size);
      if (found.status == http::ParseStatus::ok) {
        auto parsed = http::parse_response_head(conn.buffer.data().substr(0, head_size),
                                                rs_->req.method, rs_->resp);
        conn.buffer.consume(head_size);
        if (parsed.status != http::ParseStatus::ok) {
          worker_.shared().log->warn("upstream {}: refused response: {}", ex.upstream_server,
                                     parsed.reason);
          fail_status = 502;
          co_return Outcome::fail;
        }
        if (rs_->resp.status == 101) {
          if (rs_->req.upgrade_websocket) {
            co_return Outcome::ok;  // the handshake's answer: a tunnel follows
          }
          // RFC 9110 15.2.2: switching protocols the client did not ask for.
          worker_.shared().log->warn("upstream {}: 101 without an upgrade request",
                                     ex.upstream_server);
          fail_status = 502;
          co_return Outcome::fail;
        }
        // Interim responses (100, 103) are not relayed.
        if (rs_->resp.status >= 100 && rs_->resp.status < 200) {
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
    if (duplex != nullptr && duplex->client_status != 0) {
      // The body side failed before this read was waiting (its cancel found
      // nothing to end); nothing would bound this read then.
      fail_status = 502;
      co_return Outcome::fail;
    }
    auto space = asio::buffer(conn.buffer.write_ptr(), conn.buffer.write_space());
    upstream::UpstreamConnection::IoResult got;
    if (conn.is_tls()) {
      got = co_await conn.read_some(space);
    } else {
      got = co_await util::async_recv(conn.socket, space, kDeferred);
    }
    auto [ec, n] = got;
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

asio::awaitable<bool> RequestHandler::relay_response(Exchange& ex,
                                                     upstream::UpstreamConnection& conn,
                                                     const BodyRelay* duplex) {
  using Mode = filters::BodyEncoder::Mode;
  const auto& lim = ex.snapshot->config->limits;
  http::prepare_downstream_response(rs_->resp);
  ex.status = rs_->resp.status;
  run_response_filters(ex, rs_->resp.status, false);
  if (rs_->resp.body == http::BodyKind::none) {
    rs_->ctx.response_encoder.reset();  // nothing to encode (HEAD, 204, 304)
  }
  if (rs_->ctx.response_encoder) {
    rs_->resp.headers.remove("content-length");  // the encoded length is not known yet
  }
  // A body still going up may well end before the response does (an
  // echo): the head does not announce a close for that. One the client
  // will not finish sending (the upstream stopped taking it) closes the
  // client's connection: say so now.
  if (duplex != nullptr ? duplex->upstream_failed : !ex.request_body_done) {
    ex.keep_alive = false;
  }
  if (!response_head(ex)) {
    rs_->resp.keep_alive = false;
    ex.keep_alive = false;
    co_return false;
  }

  auto body = http::BodyDecoder::for_kind(rs_->resp.body, rs_->resp.content_length);
  bool head_out = false;
  for (;;) {
    http::BodyDecoder::Step step;
    if (!body.done() && !conn.buffer.empty()) {
      step = body.feed(conn.buffer.data());
      if (step.error.status != http::ParseStatus::ok) {
        rs_->resp.keep_alive = false;
        ex.keep_alive = false;
        co_return false;
      }
    }
    bool finished = body.done();
    // An encoder holds data back unless told the upstream has nothing more
    // buffered: a streamed response must not sit in the compressor.
    Mode mode = finished                              ? Mode::finish
                : step.consumed >= conn.buffer.size() ? Mode::flush
                                                      : Mode::none;
    if (!step.data.empty() || finished || !head_out) {
      ex.bytes_out += step.data.size();
      if (step.data.empty() && !finished) {
        mode = Mode::none;  // only the head goes out: the body has not started
      }
      bool sent = co_await response_body(ex, step.data, mode);
      if (!sent) {
        rs_->resp.keep_alive = false;
        ex.keep_alive = false;
        ex.downstream_failed = true;
        co_return false;
      }
      head_out = true;
      ex.response_started = true;
    }
    conn.buffer.consume(step.consumed);
    if (finished) {
      co_return true;
    }
    if (step.consumed > 0 && !conn.buffer.empty()) {
      continue;
    }
    if (duplex != nullptr && duplex->client_status != 0) {
      // The client failed its body while this side was busy downstream.
      rs_->resp.keep_alive = false;
      ex.keep_alive = false;
      co_return false;
    }
    conn.deadline.expires_after(lim.body_timeout);
    auto space = asio::buffer(conn.buffer.write_ptr(), conn.buffer.write_space());
    upstream::UpstreamConnection::IoResult got;
    if (conn.is_tls()) {
      got = co_await conn.read_some(space);
    } else {
      got = co_await util::async_recv(conn.socket, space, kDeferred);
    }
    auto [ec, n] = got;
    if (duplex != nullptr && !ec) {
      // This wait is over: its deadline must not fire while the response
      // waits on the client, cancelling the body's write upstream.
      conn.deadline.reset(util::Deadline::Lane::main);
    }
    if (ec) {
      if (ec == asio::error::eof && body.eof_completes()) {
        rs_->resp.keep_alive = false;
        bool sent = co_await response_body(ex, {}, Mode::finish);
        if (!sent) {
          ex.keep_alive = false;
        }
        co_return sent;
      }
      // Truncated or stalled upstream body: the client must not take a
      // partial body for a whole one, so its connection is closed.
      rs_->resp.keep_alive = false;
      ex.keep_alive = false;
      co_return false;
    }
    conn.buffer.commit(n);
  }
}

void RequestHandler::serialize_request_head(std::string_view target) {
  rs_->up_head.clear();
  util::take_spare(rs_->up_head);
  rs_->up_head += rs_->req.method_text;
  rs_->up_head += ' ';
  rs_->up_head += target;
  rs_->up_head += " HTTP/1.1\r\n";
  rs_->req.headers.serialize_to(rs_->up_head);
  if (rs_->req.body == http::BodyKind::chunked) {
    rs_->up_head += "Transfer-Encoding: chunked\r\n";
  }
  rs_->up_head += "\r\n";
}

asio::awaitable<bool> RequestHandler::reply(Exchange& ex, int status, std::string_view error,
                                            std::string_view location) {
  ex.status = status;
  // A body the client is still sending would be read as the next request:
  // after a local answer the connection closes unless the body is done.
  if (!ex.request_body_done || worker_.draining()) {
    ex.keep_alive = false;
  }
  make_local_reply(status, error, rs_->resp.headers, rs_->reply_body);
  if (!location.empty()) {
    rs_->resp.headers.add("Location", location);
  }
  run_response_filters(ex, status, true);
  const bool head_only = rs_->req.method == http::Method::head;
  if (rs_->ctx.response_encoder && !rs_->reply_body.empty() && !head_only) {
    // A local body is small and whole: encode it in one step, keep its length.
    rs_->encoded.clear();
    if (rs_->ctx.response_encoder->encode(rs_->reply_body, filters::BodyEncoder::Mode::finish,
                                          rs_->encoded)) {
      rs_->reply_body.swap(rs_->encoded);
    } else {
      rs_->resp.headers.remove("content-encoding");
    }
  }
  ex.response_started = true;
  bool ok = co_await send_local_reply(ex, status, rs_->reply_body);
  if (!ok) {
    ex.keep_alive = false;
  }
  co_return ok;
}

void RequestHandler::finish(Exchange& ex) {
  const auto& snap = *ex.snapshot;
  if (ex.global_ran > 0) {
    snap.global_filters.run_log(rs_->ctx, ex.global_ran);
  }
  if (ex.route >= 0 && ex.route_ran > 0) {
    snap.route_filters[static_cast<size_t>(ex.route)].run_log(rs_->ctx, ex.route_ran);
  }
  log_request(ex);
  rs_->ctx.response_encoder.reset();  // its state is large: free it between requests
}

void RequestHandler::log_request(Exchange& ex) {
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
  // The request's start on the wall clock, worked out here rather than read
  // for every request: most run with the access log off.
  r.time = std::chrono::system_clock::now() -
           std::chrono::duration_cast<std::chrono::system_clock::duration>(Clock::now() - ex.start);
  r.client_ip = rs_->client_text.empty() ? std::string_view(peer_text_) : rs_->client_text;
  r.method = rs_->req.method_text;
  r.host = rs_->host;
  r.path = rs_->req.path();
  r.query = rs_->req.query();
  r.protocol = protocol();
  r.status = ex.status;
  r.bytes_in = ex.bytes_in;
  r.bytes_out = ex.bytes_out;
  r.duration_ms = duration_ms;
  r.route = route_name;
  r.upstream = ex.upstream_name;
  r.upstream_server = ex.upstream_server;
  r.upstream_duration_ms = ex.upstream_ms;
  r.request_id = rs_->ctx.request_id;
  r.user_agent = rs_->req.headers.get("user-agent").value_or("");
  r.referer = rs_->req.headers.get("referer").value_or("");
  r.tls_version = tls_version_;
  r.tls_client_subject = tls_client_subject_;
  shared.access_log->write(shard, r);
}

}  // namespace ward::server
