#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "filters/filter.h"
#include "proxy/http/h1_parser.h"
#include "proxy/server/snapshot.h"
#include "proxy/server/worker.h"
#include "proxy/upstream/connection_pool.h"
#include "proxy/util/cidr.h"
#include "proxy/util/event.h"

namespace ward::server {

// "1a2b\r\n" for a chunk of n bytes (HTTP/1.1 chunked framing) into `out`
// (room for 18 bytes); returns the length.
size_t format_chunk_size(char* out, size_t n);

// Per-request state for the log line and metrics.
struct Exchange {
  std::shared_ptr<const Snapshot> snapshot;
  std::chrono::steady_clock::time_point start;
  int route = -1;
  int status = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  std::string_view upstream_name;    // in snapshot's config
  std::string_view upstream_server;  // in hosts: a server's name
  // The server list the request picked from, kept until the exchange ends:
  // upstream_server points into it, and the access log line is written
  // after a DNS change or a reload may have replaced it.
  std::shared_ptr<const upstream::HostSet> hosts;
  double upstream_ms = -1;
  bool request_body_done = true;   // every request body byte was read from the client
  bool body_taken = false;         // the upstream side asked the codec for body bytes
  bool keep_alive = true;          // the downstream connection may serve another request
  bool response_started = false;   // bytes of the response went (or were queued) downstream
  bool downstream_failed = false;  // a write of the response to the client failed
  size_t global_ran = 0;           // filters of the global chain whose request phase ran
  size_t route_ran = 0;            // the same for the route's chain
};

// What only a request in flight needs, apart from the connection: the heads,
// the filters' context and slots, the serialised upstream head, ward's own
// reply. About 1 KiB with the vectors' memory. A handler holds one while it
// works; an idle HTTP/1.1 connection gives its one back (H1Session::park)
// to this thread's pool (RequestHandler::release_request_state), so 10,000
// idle connections share the few the busy ones use, the way nginx frees a
// request's pool and keeps the connection's small struct.
struct RequestState {
  util::IpAddress client;  // of the current request (decide_client_ip)
  std::string client_text;
  http::RequestHead req;
  http::ResponseHead resp;
  filters::RequestContext ctx;               // reused for every request
  std::vector<filters::FilterState> states;  // global chain's slots, then the route's
  std::string host;                          // Host as received: stable while filters edit headers
  std::string reply_body;                    // ward's own response body
  std::string encoded;                       // response encoder output
  std::string up_head;                       // the request head going upstream
  std::string target_up;  // the request-target sent upstream when strip_prefix applies
  std::vector<boost::asio::const_buffer> up_gather;
  std::vector<size_t> tried;  // hosts tried for the current request
};

// Everything about one request that does not depend on the codec it came
// in on: the filters' request and response phases, routing, the balancer and
// the upstream pool, the HTTP/1.1 exchange with the upstream server (retries,
// streaming both bodies), ward's own replies, the access log line and the
// metrics. ARCHITECTURE.md: "routing, filters and upstream code never know
// which codec a request came from".
//
// A codec derives from it and supplies the downstream side through the
// virtual hooks below: H1Session is one handler reused for each request of
// its connection; an HTTP/2 connection has one handler per stream. The codec
// fills req_ (an HTTP/1-shaped head: method, origin-form target, Host, body
// framing) and calls handle(); once it returns, finish().
class RequestHandler {
 public:
  RequestHandler(Worker& worker, const ListenerInfo& listener);
  virtual ~RequestHandler();
  RequestHandler(const RequestHandler&) = delete;
  RequestHandler& operator=(const RequestHandler&) = delete;

 protected:
  // One piece of request body from the client.
  struct BodyPiece {
    std::string_view data;  // valid until body_consumed()
    bool end = false;       // the body is complete after `data`
    int fail_status = 0;    // the client failed: 400 bad framing, 408 stalled, 499 gone
  };

  // --- the codec's side ---
  // The next request body bytes; waits (bounded by body_timeout) for some.
  // Runs concurrently with the response hooks below (full duplex: the body
  // goes up while the response comes down), in a coroutine of its own.
  virtual boost::asio::awaitable<BodyPiece> read_body(Exchange& ex) = 0;
  // Ends a read_body in progress soon, and any later one at once, with a
  // fail_status: the exchange is over (the response was complete before
  // the body, or failed) and nobody will take the rest of the body.
  virtual void cancel_body() = 0;
  // The data of the last piece was sent upstream: its memory may be reused
  // and the client may send more (HTTP/2: WINDOW_UPDATE).
  virtual void body_consumed() = 0;
  // Called once the upstream connection is ready and before the first body
  // byte is read (HTTP/1.1 answers "Expect: 100-continue" here). False: the
  // client is gone.
  virtual boost::asio::awaitable<bool> before_body(Exchange& ex) = 0;
  // The upstream's response head is in resp_, hop-by-hop fields removed and
  // the response filters run (a response encoder may be installed). The
  // codec prepares its framing; nothing need be written yet. False: abort.
  virtual bool response_head(Exchange& ex) = 0;
  // Response body toward the client, through the encoder if any. Called
  // with empty data and Mode::none to push the head out before the body
  // starts (streaming), and once with Mode::finish at the end. Waits for
  // the client to take the data (backpressure). False: the client is gone.
  virtual boost::asio::awaitable<bool> response_body(Exchange& ex, std::string_view data,
                                                     filters::BodyEncoder::Mode mode) = 0;
  // The upstream answered an Upgrade with 101: the codec relays the tunnel.
  virtual boost::asio::awaitable<void> upgraded(Exchange& ex,
                                                upstream::UpstreamConnection& conn) = 0;
  // Sends ward's own response: resp_.headers (filters done) and `body`
  // (already encoded when an encoder ran). False: the client is gone.
  virtual boost::asio::awaitable<bool> send_local_reply(Exchange& ex, int status,
                                                        std::string_view body) = 0;
  // The client reset or closed what this request belongs to: upstream work
  // for it should not start.
  virtual bool downstream_gone() const { return false; }
  // "HTTP/1.1", "HTTP/2.0": the access log's protocol.
  virtual std::string_view protocol() const = 0;

  // --- what the codec calls ---
  // Runs a request whose head is in req_: global filters, routing, the
  // route's filters, the upstream. ex.keep_alive is the codec's to set first.
  boost::asio::awaitable<void> handle(Exchange& ex);
  // A response made by ward: JSON error body (`error` names it; empty: the
  // status's kind), through the response phase of the filters that ran.
  boost::asio::awaitable<bool> reply(Exchange& ex, int status, std::string_view error = {},
                                     std::string_view location = {});
  void begin_filters(Exchange& ex);
  void run_response_filters(Exchange& ex, int status, bool local);
  // Log phase of the filters, the access log line and the metrics.
  void finish(Exchange& ex);
  const config::Limits& limits() const;
  // Idle for a while (H1Session::park): the request state goes to this
  // thread's pool, its header lists' and strings' memory to the thread's
  // spares first (util/spare.h); take_request_state() gets one back (from
  // the pool, else a new one) before the next request.
  void release_request_state();
  void take_request_state();
  // Back to a new handler's per-request state, for a codec that reuses one
  // handler object for an unrelated request (an HTTP/2 stream recycled by its
  // connection): what a request set and the next one might read before
  // setting it is cleared. Strings and lists keep their memory (that is the
  // point), except the body-sized ones beyond `keep_bytes`.
  void recycle(size_t keep_bytes);
  // The upstream connection the current request uses (null when none):
  // a codec whose stream was reset cancels its I/O.
  upstream::UpstreamConnection* active_upstream() { return active_conn_; }

  Worker& worker_;
  const ListenerInfo& listener_;
  util::IpAddress peer_;
  std::string peer_text_;
  std::string_view tls_version_;    // "TLSv1.3" after a handshake, "" on plain
  std::string tls_client_subject_;  // mTLS: the verified client certificate's subject
  bool tls_ = false;                // the downstream connection is TLS
  // The current request's state; null only while a codec has given it
  // back (release_request_state: a parked HTTP/1.1 connection).
  std::unique_ptr<RequestState> rs_;

 private:
  enum class Outcome { ok, retry, fail };

  // release_request_state's first step: the memory of the state's header
  // lists and strings to the thread's spares, for whichever connection
  // works next.
  void release_request_memory();

  // The request body's side of a full-duplex exchange (forward_duplex): a
  // coroutine of its own (send_body) streams the body upstream while the
  // exchange's coroutine reads the response and relays it down. Each side
  // tells the other through this, and forward_duplex joins the body side
  // before it returns: it uses the Exchange, the codec and the connection.
  struct BodyRelay {
    explicit BodyRelay(const boost::asio::any_io_executor& ex) : ended(ex) {}
    util::Event ended;             // notified when send_body has returned
    int client_status = 0;         // the client failed the body: 400, 408, 413 or 499
    bool upstream_failed = false;  // a write upstream failed: the body stopped there
    bool stop = false;             // the response side is done: send no more
    bool awaiting_head = true;     // the response head has not come yet
    bool running = false;          // send_body has not returned yet
  };

  boost::asio::awaitable<void> proxy(Exchange& ex);
  // A filter of `chain` waits on a store: makes its calls until the chain
  // goes on, answers or ends. `first_state`: the chain's first slot in
  // states. Returns how many of its filters ran.
  boost::asio::awaitable<size_t> wait_on_store(const filters::FilterChain& chain,
                                               size_t first_state, size_t ran);
  boost::asio::awaitable<Outcome> forward_once(Exchange& ex, upstream::UpstreamConnection& conn,
                                               int& fail_status);
  // Sends the request body while reading the response (the head is sent).
  boost::asio::awaitable<Outcome> forward_duplex(Exchange& ex, upstream::UpstreamConnection& conn,
                                                 int& fail_status);
  boost::asio::awaitable<void> send_body(Exchange& ex, upstream::UpstreamConnection& conn,
                                         BodyRelay& relay);
  // The body side's end: stop it when it still runs, then wait for it.
  boost::asio::awaitable<void> join_body(BodyRelay& relay, upstream::UpstreamConnection& conn,
                                         bool stop);
  // request_timeout bounds the wait from the end of the request: with
  // `duplex` still sending the body, send_body starts it when done.
  boost::asio::awaitable<Outcome> read_response_head(Exchange& ex,
                                                     upstream::UpstreamConnection& conn,
                                                     bool retryable, int& fail_status,
                                                     const BodyRelay* duplex);
  // `duplex`: the body side when the request body may still be going up
  // (null for a request without a body: the hot path).
  boost::asio::awaitable<bool> relay_response(Exchange& ex, upstream::UpstreamConnection& conn,
                                              const BodyRelay* duplex);
  // TCP connect, then the TLS handshake when `client_tls` is set, both within `timeout`.
  boost::asio::awaitable<std::unique_ptr<upstream::UpstreamConnection>> connect(
      const upstream::Host& host, std::chrono::milliseconds timeout,
      const std::shared_ptr<const tls::ClientContext>& client_tls);
  void serialize_request_head(std::string_view target);
  // An idempotent request without a body, none of which was taken from the
  // client: it can be sent again (we keep no copy of bodies to replay).
  bool replayable(const Exchange& ex) const;
  void log_request(Exchange& ex);

  upstream::UpstreamConnection* active_conn_ = nullptr;
};

}  // namespace ward::server
