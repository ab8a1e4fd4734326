#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "filters/filter.h"
#include "proxy/http/h1_parser.h"
#include "proxy/server/worker.h"
#include "proxy/tls/tls_stream.h"
#include "proxy/upstream/connection_pool.h"
#include "proxy/util/cidr.h"
#include "proxy/util/deadline.h"
#include "proxy/util/io_buffer.h"

namespace ward::server {

// One downstream HTTP/1.1 connection: reads request heads, routes, relays
// each request to an upstream and the response back, streaming bodies through
// bounded buffers in both directions. Requests on a connection are handled
// one after another, so pipelined requests are answered in order.
//
// Kept alive by the shared_ptr its coroutine holds; runs on its worker's
// thread only.
class H1Session : public std::enable_shared_from_this<H1Session> {
 public:
  H1Session(Worker& worker, const ListenerInfo& listener, boost::asio::ip::tcp::socket socket);
  ~H1Session();
  H1Session(const H1Session&) = delete;
  H1Session& operator=(const H1Session&) = delete;

  void start();
  // The worker is draining: close now if idle, else after the current response.
  void on_drain();

 private:
  // Per-request state for the log line and metrics.
  struct Exchange {
    std::shared_ptr<const Snapshot> snapshot;
    std::chrono::steady_clock::time_point start;
    std::chrono::system_clock::time_point wall_start;
    int route = -1;
    int status = 0;
    uint64_t bytes_in = 0;
    uint64_t bytes_out = 0;
    std::string_view upstream_name;
    std::string_view upstream_server;
    double upstream_ms = -1;
    bool request_body_done = true;  // every request body byte was read from the client
    bool keep_alive = true;         // the downstream connection may serve another request
    bool response_started = false;  // bytes of the response head were written downstream
    size_t global_ran = 0;          // filters of the global chain whose request phase ran
    size_t route_ran = 0;           // the same for the route's chain
  };

  enum class HeadResult { ok, closed, error };
  enum class Outcome { ok, retry, fail };

  boost::asio::awaitable<void> run();
  boost::asio::awaitable<HeadResult> read_head(http::ParseError& error);
  boost::asio::awaitable<void> handle(Exchange& ex);
  boost::asio::awaitable<void> proxy(Exchange& ex);
  boost::asio::awaitable<Outcome> forward_once(Exchange& ex, upstream::UpstreamConnection& conn,
                                               int& fail_status);
  boost::asio::awaitable<Outcome> send_request_body(Exchange& ex,
                                                    upstream::UpstreamConnection& conn,
                                                    http::BodyDecoder& body, int& fail_status);
  boost::asio::awaitable<Outcome> read_response_head(Exchange& ex,
                                                     upstream::UpstreamConnection& conn,
                                                     bool retryable, int& fail_status);
  boost::asio::awaitable<bool> relay_response(Exchange& ex, upstream::UpstreamConnection& conn);
  // After a 101 to a WebSocket handshake: relays bytes both ways until both
  // sides have ended, an error, or idle_timeout without traffic.
  boost::asio::awaitable<void> tunnel(Exchange& ex, upstream::UpstreamConnection& conn);
  boost::asio::awaitable<void> pipe_up(upstream::UpstreamConnection& conn, uint64_t& bytes);
  boost::asio::awaitable<void> pipe_down(upstream::UpstreamConnection& conn, uint64_t& bytes);
  void close_tunnel(upstream::UpstreamConnection& conn);
  // `proxy_protocol: true` listeners, before anything else: reads the PROXY
  // v1/v2 header, bounded by header_timeout, and takes the client address
  // from it (decide_proxy_source); false = close without a word.
  boost::asio::awaitable<bool> read_proxy_header();
  // TLS listeners: the handshake, bounded by header_timeout; false = close.
  boost::asio::awaitable<bool> handshake();
  // Downstream I/O, over TLS when the listener has it.
  boost::asio::awaitable<std::tuple<boost::system::error_code, size_t>> down_read(
      boost::asio::mutable_buffer b);
  boost::asio::awaitable<std::tuple<boost::system::error_code, size_t>> down_write(
      const std::vector<boost::asio::const_buffer>& pieces);
  boost::asio::awaitable<std::tuple<boost::system::error_code, size_t>> down_write(
      boost::asio::const_buffer b);
  boost::asio::awaitable<std::unique_ptr<upstream::UpstreamConnection>> connect(
      const upstream::Host& host, std::chrono::milliseconds timeout);
  // A response made by ward: JSON error body (`error` names it; empty: the
  // status's kind), through the response phase of the filters that ran.
  boost::asio::awaitable<bool> reply(Exchange& ex, int status, std::string_view error = {},
                                     std::string_view location = {});
  void begin_filters(Exchange& ex);
  void run_response_filters(Exchange& ex, int status, bool local);
  // Appends one piece of response body to gather_, chunk-framed when asked,
  // through the response encoder when a filter installed one. False when the
  // encoder failed.
  bool frame_body(std::string_view data, filters::BodyEncoder::Mode mode, bool chunked,
                  char* size_line);
  boost::asio::awaitable<bool> write_downstream(std::chrono::milliseconds timeout);
  void serialize_request_head(std::string_view target);
  void serialize_response_head(Exchange& ex, bool chunked_down);
  void finish(Exchange& ex);
  void log_request(Exchange& ex);
  const config::Limits& limits() const;

  Worker& worker_;
  const ListenerInfo& listener_;
  boost::asio::ip::tcp::socket socket_;
  util::Deadline deadline_;
  std::unique_ptr<tls::TlsStream> tls_;  // null on a plain listener
  std::string_view tls_version_;         // "TLSv1.3" after the handshake
  util::IoBuffer in_;
  util::IpAddress peer_;
  std::string peer_text_;
  util::IpAddress client_;  // of the current request (decide_client_ip)
  std::string client_text_;
  http::RequestHead req_;
  http::ResponseHead resp_;
  std::string head_out_;  // serialised head going out (either direction)
  std::vector<boost::asio::const_buffer> gather_;
  std::vector<size_t> tried_;                 // hosts tried for the current request
  filters::RequestContext ctx_;               // reused for every request
  std::vector<filters::FilterState> states_;  // global chain's slots, then the route's
  std::string host_;                          // Host as received: stable while filters edit headers
  std::string target_up_;  // the request-target sent upstream when strip_prefix applies
  std::string reply_body_;
  std::string encoded_;  // response encoder output
  uint64_t requests_ = 0;
  bool idle_ = false;     // waiting for the first byte of a request
  bool closing_ = false;  // drain asked to close after the current response
  bool counted_ = false;  // counted in the process-wide connection count
};

}  // namespace ward::server
