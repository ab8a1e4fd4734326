#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "filters/filter.h"
#include "proxy/http/h1_parser.h"
#include "proxy/server/parking_lot.h"
#include "proxy/server/request_handler.h"
#include "proxy/server/worker.h"
#include "proxy/tls/tls_stream.h"
#include "proxy/upstream/connection_pool.h"
#include "proxy/util/cidr.h"
#include "proxy/util/deadline.h"
#include "proxy/util/intrusive_list.h"
#include "proxy/util/io_buffer.h"

namespace ward::server {

class H2Connection;

// One downstream connection: the TLS handshake when the listener has TLS,
// then HTTP/1.1 (or HTTP/2 when ALPN picked h2, or the client opened with
// the HTTP/2 preface on a plain listener: the connection is handed to an
// H2Connection). For HTTP/1.1 it reads request heads and, as the codec of a
// RequestHandler, relays each request to an upstream and the response back,
// streaming bodies through bounded buffers in both directions. Requests on a
// connection are handled one after another, so pipelined requests are
// answered in order.
//
// Kept alive by the shared_ptr its coroutine holds, or while parked by
// itself (parked_self_); runs on its worker's thread only.
class H1Session : public RequestHandler,
                  public std::enable_shared_from_this<H1Session>,
                  public ParkingLot::Spot,
                  public util::ListHook<SessionListTag> {
 public:
  // `peer` is the client's address as accept(2) returned it (no
  // getpeername(2) per connection).
  H1Session(Worker& worker, const ListenerInfo& listener, boost::asio::ip::tcp::socket socket,
            const boost::asio::ip::tcp::endpoint& peer);
  ~H1Session() override;

  void start();
  // The worker is draining: close now if idle, else after the current response.
  void on_drain();

 private:
  enum class HeadResult { ok, closed, error, h2, park };
  // How run() starts: a new connection (PROXY header, TLS handshake, ALPN),
  // a parked one that became readable, or a parked one whose wait failed
  // (idle timeout, drain), which only closes.
  enum class Start { fresh, resumed, close };

  void spawn(Start how);
  boost::asio::awaitable<void> run(Start how);
  // Idle long enough: end the coroutines and wait for the next request with
  // a plain handler (see the definition).
  void park();
  // The worker's parking lot let go of this connection (ParkingLot::Spot).
  void unparked(ParkingLot::Unpark why) override;
  // Before parking: the request state (RequestState, with its header lists
  // and heads) goes to the thread's pool and the response head and gather
  // list to its spares; the read and TLS buffers went when the wait began.
  void release_idle_memory();
  boost::asio::awaitable<HeadResult> read_head(http::ParseError& error);
  // Hands the connection to HTTP/2; `preread` holds bytes already read (the
  // h2c preface and what followed it).
  boost::asio::awaitable<void> serve_h2(std::string_view preread);

  // RequestHandler's codec hooks.
  boost::asio::awaitable<BodyPiece> read_body(Exchange& ex) override;
  void cancel_body() override;
  void body_consumed() override;
  boost::asio::awaitable<bool> before_body(Exchange& ex) override;
  bool response_head(Exchange& ex) override;
  boost::asio::awaitable<bool> response_body(Exchange& ex, std::string_view data,
                                             filters::BodyEncoder::Mode mode) override;
  boost::asio::awaitable<void> upgraded(Exchange& ex, upstream::UpstreamConnection& conn) override;
  boost::asio::awaitable<bool> send_local_reply(Exchange& ex, int status,
                                                std::string_view body) override;
  std::string_view protocol() const override;

  // After a 101 to a WebSocket handshake: relays bytes both ways until both
  // sides have ended, an error, or idle_timeout without traffic.
  boost::asio::awaitable<void> pipe_up(upstream::UpstreamConnection& conn, uint64_t& bytes);
  boost::asio::awaitable<void> pipe_down(upstream::UpstreamConnection& conn, uint64_t& bytes);
  void close_tunnel(upstream::UpstreamConnection& conn);
  // `proxy_protocol: true` listeners, before anything else: reads the PROXY
  // v1/v2 header, bounded by header_timeout, and takes the client address
  // from it (decide_proxy_source); false = close without a word.
  boost::asio::awaitable<bool> read_proxy_header();
  // Before closing a connection whose client may still be sending a body
  // nobody read: half-close, then drop what comes, for a bounded time.
  boost::asio::awaitable<void> linger();
  // TLS listeners: the handshake, bounded by header_timeout; false = close.
  boost::asio::awaitable<bool> handshake();
  // Downstream I/O, over TLS when the listener has it.
  boost::asio::awaitable<std::tuple<boost::system::error_code, size_t>> down_read(
      boost::asio::mutable_buffer b);
  boost::asio::awaitable<std::tuple<boost::system::error_code, size_t>> down_write(
      std::span<const boost::asio::const_buffer> pieces);
  boost::asio::awaitable<std::tuple<boost::system::error_code, size_t>> down_write(
      boost::asio::const_buffer b);
  // Appends one piece of response body to h1_->gather, chunk-framed when asked,
  // through the response encoder when a filter installed one. False when the
  // encoder failed.
  bool frame_body(std::string_view data, filters::BodyEncoder::Mode mode, bool chunked,
                  char* size_line);
  void serialize_response_head(Exchange& ex, bool chunked_down);

  boost::asio::ip::tcp::socket socket_;
  util::Deadline deadline_;
  std::unique_ptr<tls::TlsStream> tls_stream_;  // null on a plain listener
  std::unique_ptr<H2Connection> h2_;            // set once the connection speaks HTTP/2
  util::IoBuffer in_;
  // The HTTP/1.1 side of a request in flight: pooled per thread like the
  // RequestState (util::take_object), so a parked connection holds neither.
  struct H1Request {
    http::BodyDecoder body;   // the current request's body, decoded from in_
    size_t body_pending = 0;  // bytes of in_ the last read_body piece spans
    std::string head_out;     // serialised response head going out
    std::vector<boost::asio::const_buffer> gather;
    char size_line[24] = {};
    bool chunked_down = false;     // the current response is chunk-framed toward the client
    bool head_pending = false;     // head_out holds a head not yet written
    bool expect_continue = false;  // the client waits for "100 Continue" before its body
    bool body_cancelled = false;   // cancel_body(): read_body returns at once
  };
  std::unique_ptr<H1Request> h1_;  // null while parked
  uint64_t requests_ = 0;
  std::shared_ptr<H1Session> parked_self_;  // while parked: nothing else owns it
  bool linger_ = false;                     // a request body was left unread: lingering close
  bool idle_ = false;                       // waiting for the first byte of a request
  bool resumed_ = false;                    // read_head runs right after a parked wait
  bool closing_ = false;                    // drain asked to close after the current response
  bool counted_ = false;                    // counted in the process-wide connection count
};

}  // namespace ward::server
