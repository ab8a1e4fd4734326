#pragma once

#include <nghttp2/nghttp2.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "proxy/server/worker.h"
#include "proxy/tls/tls_stream.h"
#include "proxy/util/cidr.h"
#include "proxy/util/deadline.h"
#include "proxy/util/event.h"

namespace ward::server {

class H2Stream;

// The HTTP/2 codec of one downstream connection (RFC 9113), on nghttp2's
// server session driven by hand: one coroutine reads and feeds
// nghttp2_session_mem_recv, one writes what nghttp2_session_mem_send yields,
// and every stream is a RequestHandler running its own coroutine, so routing,
// filters and upstream pools are the HTTP/1.1 ones. Streams are multiplexed
// onto the worker's HTTP/1.1 upstream pool.
//
// Flow control is backpressure both ways: a request body's bytes are
// acknowledged (WINDOW_UPDATE) only once they were written upstream, so a
// slow upstream stops the client; a response body waits in a bounded
// per-stream buffer that nghttp2 drains as the client's window allows, and a
// full buffer stops reading from the upstream.
//
// Defences: SETTINGS_MAX_CONCURRENT_STREAMS from limits, a header list bound
// (max_header_size, 431), nghttp2's limits against rapid reset
// (CVE-2023-44487: a token bucket on RST_STREAM, then GOAWAY), CONTINUATION
// floods, SETTINGS floods and unanswered-ACK floods; header_timeout for a
// stream's head, idle_timeout for a connection without streams,
// body_timeout for every body wait. drain() sends GOAWAY: streams in flight
// finish, new ones are refused.
//
// Lives inside the H1Session that accepted the connection (and owns the
// socket, the TLS stream and the deadline); run() returns only when every
// stream coroutine has ended.
class H2Connection {
 public:
  H2Connection(Worker& worker, const ListenerInfo& listener, boost::asio::ip::tcp::socket& socket,
               tls::TlsStream* tls, util::Deadline& deadline, const util::IpAddress& peer,
               const std::string& peer_text, std::string_view tls_version,
               const std::string& tls_client_subject);
  ~H2Connection();
  H2Connection(const H2Connection&) = delete;
  H2Connection& operator=(const H2Connection&) = delete;

  // Serves the connection to its end. `preread`: bytes already read from
  // the client (the h2c preface), fed first.
  boost::asio::awaitable<void> run(std::string_view preread);
  // GOAWAY: finish the streams in flight, accept no new one, then close.
  void drain();

 private:
  friend class H2Stream;

  static int on_begin_headers(nghttp2_session* s, const nghttp2_frame* frame, void* user);
  static int on_header(nghttp2_session* s, const nghttp2_frame* frame, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t flags,
                       void* user);
  static int on_frame_recv(nghttp2_session* s, const nghttp2_frame* frame, void* user);
  static int on_data_chunk(nghttp2_session* s, uint8_t flags, int32_t stream_id,
                           const uint8_t* data, size_t len, void* user);
  static int on_stream_close(nghttp2_session* s, int32_t stream_id, uint32_t error_code,
                             void* user);
  static int on_frame_send(nghttp2_session* s, const nghttp2_frame* frame, void* user);
  static int send_data(nghttp2_session* s, nghttp2_frame* frame, const uint8_t* framehd,
                       size_t length, nghttp2_data_source* source, void* user);

  bool setup();
  boost::asio::awaitable<void> write_loop();
  void send_goaway();
  void say_goodbye_if_idle();
  // A stream object for a new stream id: a spare one when there is one.
  H2Stream* open_stream(int32_t id);
  void start_stream(H2Stream* stream);
  void stream_closed(int32_t id, uint32_t error_code);
  // The stream is neither open in nghttp2 nor running its coroutine: keep
  // it as a spare for the next stream, or free it.
  void retire(H2Stream* stream);
  void drop_spares();
  // Frames may be waiting to go out.
  void kick() { write_event_.notify(); }
  // The connection's deadline for what it waits on now (see the class note).
  void arm_deadline();
  H2Stream* stream(int32_t id);

  Worker& worker_;
  const ListenerInfo& listener_;
  boost::asio::ip::tcp::socket& socket_;
  tls::TlsStream* tls_;
  util::Deadline& deadline_;
  util::IpAddress peer_;
  std::string peer_text_;
  std::string_view tls_version_;
  const std::string& tls_client_subject_;
  nghttp2_session* session_ = nullptr;
  // Streams nghttp2 has open (a doubly linked list through the streams, so
  // opening and closing one allocates nothing), and stream objects kept for
  // reuse (linked by next_): a stream allocates its object, header lists,
  // strings and nva only the first time. At most kMaxSpareStreams spares,
  // and none once the connection goes idle.
  H2Stream* open_ = nullptr;
  size_t open_count_ = 0;
  H2Stream* spare_ = nullptr;
  size_t spare_count_ = 0;
  util::Event write_event_;
  util::Event done_event_;  // a stream coroutine or the writer ended
  std::string wbuf_;
  std::chrono::steady_clock::time_point idle_deadline_;
  std::chrono::steady_clock::time_point head_deadline_;
  size_t running_ = 0;        // stream coroutines alive
  size_t heads_pending_ = 0;  // streams whose head has not fully arrived
  bool writing_ = false;
  bool writer_running_ = false;
  bool reader_done_ = false;
  bool draining_ = false;
};

}  // namespace ward::server
