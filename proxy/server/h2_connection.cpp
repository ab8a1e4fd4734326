#include "proxy/server/h2_connection.h"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <new>

#include "proxy/http/h2_request.h"
#include "proxy/server/local_reply.h"
#include "proxy/server/request_handler.h"
#include "proxy/util/clock.h"
#include "proxy/util/frame_pool.h"
#include "proxy/util/recv_op.h"

// Style note: GCC 12 miscompiles some coroutine shapes (a co_await inside a
// condition or a ternary, `co_return co_await`). Every co_await here is a
// plain statement or the right-hand side of an assignment.

namespace ward::server {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
// Per-stream receive window: a stream's request body buffered in ward is at
// most this (nginx's http2_body_preread_size is 64k too).
constexpr int32_t kStreamWindow = 64 * 1024;
// Connection receive window: all streams' unforwarded body bytes together.
// Room for every stream's window (up to a bound), so streams stalled by a
// slow upstream cannot starve the others of the connection window.
constexpr int64_t kMaxConnectionWindow = 16 * 1024 * 1024;
// A stream's response bytes waiting for the client's window; past this the
// upstream is not read (backpressure).
constexpr size_t kResponseBuffer = 64 * 1024;
// Stream objects a connection keeps for reuse (H2Connection::retire), and
// the most a spare keeps of each buffer, header list or string (a larger one
// is freed when the stream is retired): a spare holds its object and the
// memory an ordinary request needs.
constexpr size_t kMaxSpareStreams = 16;
constexpr size_t kSpareBufferBytes = 16 * 1024;
// Frames gathered into one write.
constexpr size_t kWriteBatch = 64 * 1024;
constexpr size_t kReadBuffer = 16 * 1024;
// RST_STREAM from the client: a token bucket (burst, per second), then GOAWAY.
constexpr uint64_t kResetBurst = 1000;
constexpr uint64_t kResetRate = 33;
// CONTINUATION frames after one HEADERS.
constexpr size_t kMaxContinuations = 8;
constexpr auto kForever = std::chrono::hours(24);

// nghttp2's memory through the worker's block lists (util/frame_pool.h):
// it allocates a stream, an outbound item per frame and more for every
// stream, in bursts as many streams open together, which missed glibc's
// small per-thread cache like Asio's frames did. nghttp2 frees without a
// size, so each block starts with its size (16 bytes: the payload keeps
// malloc's alignment). Out of memory is a null, never an exception: these
// are called from C.
constexpr size_t kMemHeader = 16;

void* h2_malloc(size_t size, void*) {
  if (size > SIZE_MAX - kMemHeader) {
    return nullptr;
  }
  try {
    auto* p = static_cast<char*>(util::frame_pool::allocate(size + kMemHeader, kMemHeader));
    std::memcpy(p, &size, sizeof size);
    return p + kMemHeader;
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}

size_t h2_size(void* ptr) {
  size_t size = 0;
  std::memcpy(&size, static_cast<char*>(ptr) - kMemHeader, sizeof size);
  return size;
}

void h2_free(void* ptr, void*) {
  if (ptr != nullptr) {
    util::frame_pool::deallocate(static_cast<char*>(ptr) - kMemHeader, h2_size(ptr) + kMemHeader);
  }
}

void* h2_calloc(size_t n, size_t size, void*) {
  if (size != 0 && n > SIZE_MAX / size) {
    return nullptr;
  }
  void* p = h2_malloc(n * size, nullptr);
  if (p != nullptr) {
    std::memset(p, 0, n * size);
  }
  return p;
}

void* h2_realloc(void* ptr, size_t size, void*) {
  if (ptr == nullptr) {
    return h2_malloc(size, nullptr);
  }
  void* p = h2_malloc(size, nullptr);
  if (p != nullptr) {
    std::memcpy(p, ptr, std::min(size, h2_size(ptr)));
    h2_free(ptr, nullptr);
  }
  return p;
}

nghttp2_mem kH2Memory = {nullptr, h2_malloc, h2_free, h2_calloc, h2_realloc};

bool is_lower_token(std::string_view s) {
  for (char c : s) {
    if (c >= 'A' && c <= 'Z') {
      return false;
    }
  }
  return true;
}

}  // namespace

// One request/response exchange on an HTTP/2 connection: RequestHandler's
// codec hooks over nghttp2's stream.
class H2Stream : public RequestHandler {
 public:
  H2Stream(H2Connection& conn, int32_t id)
      : RequestHandler(conn.worker_, conn.listener_),
        conn_(conn),
        id_(id),
        event_(conn.socket_.get_executor()),
        body_event_(conn.socket_.get_executor()),
        builder_(rs_->req, limits().max_header_size, limits().max_uri_size) {
    peer_ = conn.peer_;
    peer_text_ = conn.peer_text_;
    tls_version_ = conn.tls_version_;
    tls_client_subject_ = conn.tls_client_subject_;
    tls_ = conn.tls_ != nullptr;
  }

  int32_t id() const { return id_; }
  void set_id(int32_t id) { id_ = id; }

  // Back to a new stream's state, keeping the memory of its header lists
  // and strings for the next stream of the connection. Only once nghttp2
  // closed the stream and its coroutine ended (H2Connection::retire).
  void recycle() {
    auto trim = [](std::string& s) {
      s.clear();
      if (s.capacity() > kSpareBufferBytes) {
        s.shrink_to_fit();
      }
    };
    RequestHandler::recycle(kSpareBufferBytes);
    id_ = 0;
    event_.reset();
    body_event_.reset();
    builder_.reset(kSpareBufferBytes);
    trim(body_in_);
    trim(body_taking_);
    trim(out_);
    out_off_ = 0;
    received_ = 0;
    acked_ = 0;
    names_.clear();
    nva_.clear();
    status_text_ = {};
    close_error_ = 0;
    bad_status_ = 0;
    head_done_ = false;
    expect_continue_ = false;
    reset_early_ = false;
    request_ended_ = false;
    submitted_ = false;
    out_eof_ = false;
    deferred_ = false;
    closed_ = false;
    body_cancelled_ = false;
    done_ = false;
  }
  bool request_ended() const { return request_ended_; }
  // Body bytes arriving now have no reader: acknowledge them at once.
  bool discarding() const { return done_; }

  void on_header(std::string_view name, std::string_view value) { builder_.add(name, value); }

  bool head_done() const { return head_done_; }

  // The head is complete; `end_stream`: no body follows.
  void on_head_done(bool end_stream) {
    head_done_ = true;
    request_ended_ = end_stream;
    bad_status_ = builder_.finish(end_stream);
    expect_continue_ = builder_.expect_continue();
  }

  void on_data(const uint8_t* data, size_t len) {
    received_ += len;
    body_in_.append(reinterpret_cast<const char*>(data), len);
    body_event_.notify();
  }

  void on_request_end() {
    request_ended_ = true;
    body_event_.notify();
  }

  void on_close(uint32_t error_code) {
    if (!closed_ && !submitted_) {
      reset_early_ = true;  // the client gave up before any response
    }
    closed_ = true;
    close_error_ = error_code;
    event_.notify();
    body_event_.notify();
    if (auto* up = active_upstream()) {
      boost::system::error_code ignored;
      up->socket.cancel(ignored);  // the client reset the stream: stop the upstream work
    }
  }

  // nghttp2's data source: how many response bytes the next DATA frame
  // carries. They are not copied here (NO_COPY): nghttp2 then has
  // take_response() put them straight from out_ into the write batch, rather
  // than into its own frame buffer first, which we would copy again.
  ssize_t read_response(size_t length, uint32_t* data_flags) {
    size_t avail = out_.size() - out_off_;
    if (avail == 0) {
      if (out_eof_) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        return 0;
      }
      deferred_ = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = std::min(avail, length);
    *data_flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (n == avail && out_eof_) {
      *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return static_cast<ssize_t>(n);
  }

  // The `n` bytes the last read_response() offered go out now: onto `to`.
  void take_response(std::string& to, size_t n) {
    to.append(out_, out_off_, n);
    out_off_ += n;
    if (out_off_ == out_.size()) {
      out_.clear();
      out_off_ = 0;
    }
    event_.notify();  // room in the buffer
  }

  asio::awaitable<void> run() {
    if (closed_) {
      done_ = true;
      release_body();
      co_return;  // reset before it started (rapid reset): no work at all
    }
    Exchange ex;
    ex.snapshot = worker_.snapshot();
    ex.start = Clock::now();
    if (bad_status_ != 0) {
      ex.keep_alive = false;
      co_await reply(ex, bad_status_);
    } else {
      co_await handle(ex);
    }
    if (reset_early_) {
      ex.status = 499;  // nginx's code for "the client closed the request"
    }
    finish(ex);
    done_ = true;
    release_body();  // what nobody will read: the client gets its window back
    if (!closed_ && (!submitted_ || !out_eof_)) {
      // A response cut short (upstream failed mid-body) must not pass for
      // a whole one.
      nghttp2_submit_rst_stream(conn_.session_, NGHTTP2_FLAG_NONE, id_, NGHTTP2_INTERNAL_ERROR);
      conn_.kick();
    }
  }

 protected:
  asio::awaitable<BodyPiece> read_body(Exchange& ex) override {
    BodyPiece piece;
    const auto timeout = ex.snapshot->config->limits.body_timeout;
    for (;;) {
      if (closed_ || body_cancelled_) {
        piece.fail_status = 499;  // cancelled: the caller ignores it
        co_return piece;
      }
      if (!body_in_.empty()) {
        body_taking_.swap(body_in_);
        body_in_.clear();
        piece.data = body_taking_;
        piece.end = request_ended_;
        co_return piece;
      }
      if (request_ended_) {
        piece.end = true;
        co_return piece;
      }
      bool woken = co_await body_event_.wait(timeout);
      if (!woken && !closed_ && !body_cancelled_ && body_in_.empty() && !request_ended_) {
        piece.fail_status = 408;
        co_return piece;
      }
    }
  }

  // Full duplex: the response is done (or failed) before the body. What
  // the client still sends is acknowledged once the handler has finished
  // (release_body), and the codec resets the request side with NO_ERROR
  // when the response's END_STREAM goes out (on_frame_send).
  void cancel_body() override {
    body_cancelled_ = true;
    body_event_.notify();
  }

  void body_consumed() override {
    if (!body_taking_.empty()) {
      acknowledge(body_taking_.size());
    }
    body_taking_.clear();
  }

  // `n` received bytes are done with: the windows open again (on a closed
  // stream nghttp2 counts them for the connection only).
  void acknowledge(size_t n) {
    acked_ += n;
    nghttp2_session_consume(conn_.session_, id_, n);
    conn_.kick();  // WINDOW_UPDATE: the client may send more
  }

  // Every body byte received and not forwarded: nobody will read it.
  void release_body() {
    body_in_.clear();
    body_taking_.clear();
    if (received_ > acked_) {
      acknowledge(received_ - acked_);
    }
  }

  asio::awaitable<bool> before_body(Exchange&) override {
    if (expect_continue_ && !closed_ && body_in_.empty() && !request_ended_) {
      // The client waits for a 100 before its body (RFC 9110 10.1.1).
      expect_continue_ = false;
      nghttp2_nv nv = make_nv(":status", "100");
      nghttp2_submit_headers(conn_.session_, NGHTTP2_FLAG_NONE, id_, nullptr, &nv, 1, nullptr);
      conn_.kick();
    }
    co_return !closed_;
  }

  bool downstream_gone() const override { return closed_; }

  bool response_head(Exchange&) override {
    if (closed_) {
      return false;
    }
    bool has_body = rs_->resp.body != http::BodyKind::none && rs_->req.method != http::Method::head;
    submit(rs_->resp.status, has_body, {});
    return true;
  }

  asio::awaitable<bool> response_body(Exchange& ex, std::string_view data,
                                      filters::BodyEncoder::Mode mode) override {
    if (closed_) {
      co_return false;
    }
    if (!data.empty() || mode == filters::BodyEncoder::Mode::finish) {
      if (rs_->ctx.response_encoder) {
        rs_->encoded.clear();
        if (!rs_->ctx.response_encoder->encode(data, mode, rs_->encoded)) {
          worker_.shared().log->warn("response encoder failed for {}", ex.upstream_server);
          co_return false;
        }
        data = rs_->encoded;
      }
      if (!out_eof_) {  // a response without a body ended with its HEADERS
        out_.append(data);
        out_eof_ = mode == filters::BodyEncoder::Mode::finish;
        resume();
      }
    }
    const auto timeout = ex.snapshot->config->limits.body_timeout;
    while (!closed_ && out_.size() - out_off_ > kResponseBuffer) {
      bool woken = co_await event_.wait(timeout);
      if (!woken && out_.size() - out_off_ > kResponseBuffer) {
        co_return false;  // the client's window stayed shut for body_timeout
      }
    }
    // A stream closed after the whole response went out is a success: an
    // early answer ends the stream while the client still sends its body
    // (END_STREAM, then our RST_STREAM NO_ERROR).
    co_return !closed_ || (out_eof_ && out_off_ == out_.size());
  }

  asio::awaitable<void> upgraded(Exchange&, upstream::UpstreamConnection&) override {
    co_return;  // never: an HTTP/2 request carries no Upgrade (RFC 9113 8.2.2)
  }

  asio::awaitable<bool> send_local_reply(Exchange&, int status, std::string_view body) override {
    if (closed_ || submitted_) {
      co_return false;
    }
    bool has_body = !body.empty() && rs_->req.method != http::Method::head;
    if (status != 204 && status != 304) {
      char len[24];
      auto [end, ec] = std::to_chars(len, len + sizeof len, body.size());
      rs_->resp.headers.set("Content-Length",
                            std::string_view(len, static_cast<size_t>(end - len)));
    }
    submit(status, has_body, body);
    co_return true;
  }

  std::string_view protocol() const override { return "HTTP/2.0"; }

 private:
  static ssize_t data_source_read(nghttp2_session*, int32_t, uint8_t*, size_t length,
                                  uint32_t* data_flags, nghttp2_data_source* source, void*) {
    return static_cast<H2Stream*>(source->ptr)->read_response(length, data_flags);
  }

  // HEADERS for the response in rs_->resp.headers (HTTP/2 wants lower-case
  // names; hop-by-hop fields are already gone), then DATA from out_.
  void submit(int status, bool has_body, std::string_view body) {
    submitted_ = true;
    status_text_ = status_label(status);
    size_t name_bytes = 0;
    rs_->resp.headers.for_each(
        [&](const http::HeaderList::Field& f) { name_bytes += f.name.size(); });
    // nva points into names_: sized once, no reallocation below.
    names_.resize(name_bytes);
    char* lower = names_.data();
    nva_.clear();
    nva_.push_back(make_nv(":status", status_text_));
    rs_->resp.headers.for_each([&](const http::HeaderList::Field& f) {
      std::string_view name = f.name;
      if (!is_lower_token(name)) {
        for (size_t i = 0; i < name.size(); ++i) {
          char c = name[i];
          lower[i] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
        }
        name = std::string_view(lower, name.size());
        lower += name.size();
      }
      nva_.push_back(make_nv(name, f.value));
    });
    if (has_body) {
      out_.append(body);
      out_eof_ = !body.empty();
      nghttp2_data_provider provider{};
      provider.source.ptr = this;
      provider.read_callback = &H2Stream::data_source_read;
      nghttp2_submit_response(conn_.session_, id_, nva_.data(), nva_.size(), &provider);
    } else {
      out_eof_ = true;
      nghttp2_submit_response(conn_.session_, id_, nva_.data(), nva_.size(), nullptr);
    }
    conn_.kick();
  }

  static nghttp2_nv make_nv(std::string_view name, std::string_view value) {
    nghttp2_nv nv;
    nv.name = reinterpret_cast<uint8_t*>(const_cast<char*>(name.data()));
    nv.namelen = name.size();
    nv.value = reinterpret_cast<uint8_t*>(const_cast<char*>(value.data()));
    nv.valuelen = value.size();
    nv.flags = NGHTTP2_NV_FLAG_NONE;  // nghttp2 copies both
    return nv;
  }

  void resume() {
    if (deferred_) {
      deferred_ = false;
      nghttp2_session_resume_data(conn_.session_, id_);
    }
    conn_.kick();
  }

  friend class H2Connection;

  H2Connection& conn_;
  int32_t id_;
  // H2Connection's lists: open_ (both links) while nghttp2 has the stream
  // open, spare_ (next_ only) while kept for reuse.
  H2Stream* prev_ = nullptr;
  H2Stream* next_ = nullptr;
  bool open_ = false;     // in the connection's open_ list
  bool running_ = false;  // its coroutine was started and has not ended
  // Two waiters may run at once (full duplex): the response side waits on
  // event_ for room in out_, the body side on body_event_ for data. Each
  // re-checks its condition.
  util::Event event_;       // room in out_, or a reset
  util::Event body_event_;  // request body data, its end, a reset or cancel_body()
  http::H2RequestBuilder builder_;
  std::string body_in_;      // request body received, not yet taken
  std::string body_taking_;  // request body being written upstream
  std::string out_;          // response body waiting for the client's window
  size_t out_off_ = 0;
  uint64_t received_ = 0;  // request body bytes received on this stream
  uint64_t acked_ = 0;     // of those, given back to the flow-control windows
  std::string names_;      // lower-cased response header names
  std::vector<nghttp2_nv> nva_;
  std::string_view status_text_;
  uint32_t close_error_ = 0;
  int bad_status_ = 0;  // the head was refused: answer this
  bool head_done_ = false;
  bool expect_continue_ = false;
  bool reset_early_ = false;  // closed by the client before the response started
  bool request_ended_ = false;
  bool submitted_ = false;       // the response HEADERS were submitted
  bool out_eof_ = false;         // the response body is complete in out_
  bool deferred_ = false;        // nghttp2 waits for resume()
  bool closed_ = false;          // nghttp2 closed the stream (done or reset)
  bool body_cancelled_ = false;  // cancel_body(): no more request body is taken
  bool done_ = false;            // the handler finished
};

H2Connection::H2Connection(Worker& worker, const ListenerInfo& listener,
                           boost::asio::ip::tcp::socket& socket, tls::TlsStream* tls,
                           util::Deadline& deadline, const util::IpAddress& peer,
                           const std::string& peer_text, std::string_view tls_version,
                           const std::string& tls_client_subject)
    : worker_(worker),
      listener_(listener),
      socket_(socket),
      tls_(tls),
      deadline_(deadline),
      peer_(peer),
      peer_text_(peer_text),
      tls_version_(tls_version),
      tls_client_subject_(tls_client_subject),
      write_event_(socket.get_executor()),
      done_event_(socket.get_executor()) {}

H2Connection::~H2Connection() {
  // run() has returned: no stream coroutine is left. Streams nghttp2 still
  // has open go before the session (it may point at them), spares too.
  while (open_ != nullptr) {
    H2Stream* next = open_->next_;
    delete open_;
    open_ = next;
  }
  drop_spares();
  if (session_ != nullptr) {
    nghttp2_session_del(session_);
  }
}

bool H2Connection::setup() {
  nghttp2_session_callbacks* cbs = nullptr;
  if (nghttp2_session_callbacks_new(&cbs) != 0) {
    return false;
  }
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, &H2Connection::on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, &H2Connection::on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &H2Connection::on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &H2Connection::on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &H2Connection::on_stream_close);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, &H2Connection::on_frame_send);
  nghttp2_session_callbacks_set_send_data_callback(cbs, &H2Connection::send_data);
  nghttp2_option* opt = nullptr;
  if (nghttp2_option_new(&opt) != 0) {
    nghttp2_session_callbacks_del(cbs);
    return false;
  }
  // Windows open only as bodies move upstream (body_consumed).
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_stream_reset_rate_limit(opt, kResetBurst, kResetRate);
  nghttp2_option_set_max_continuations(opt, kMaxContinuations);
  // Closed streams are kept only for RFC 7540 priorities, which ward
  // ignores: free them at once.
  nghttp2_option_set_no_closed_streams(opt, 1);
  int rv = nghttp2_session_server_new3(&session_, cbs, this, opt, &kH2Memory);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  if (rv != 0) {
    session_ = nullptr;
    return false;
  }
  const auto& lim = worker_.snapshot()->config->limits;
  nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, lim.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(kStreamWindow)},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<uint32_t>(lim.max_header_size)},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  auto window =
      std::min<int64_t>(kMaxConnectionWindow, int64_t{kStreamWindow} * lim.max_concurrent_streams);
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                        static_cast<int32_t>(std::max<int64_t>(window, 65535)));
  return true;
}

asio::awaitable<void> H2Connection::run(std::string_view preread) {
  if (!setup()) {
    co_return;
  }
  const auto& lim = worker_.snapshot()->config->limits;
  idle_deadline_ = util::coarse_now() + lim.header_timeout;
  bool alive = true;
  if (!preread.empty()) {
    auto n = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(preread.data()),
                                      preread.size());
    alive = n >= 0;
  }
  if (draining_) {
    send_goaway();  // drain() came before the session existed
  }
  writer_running_ = true;
  asio::co_spawn(socket_.get_executor(), write_loop(), [this](std::exception_ptr) {
    writer_running_ = false;
    done_event_.notify();
  });
  std::unique_ptr<char[]> buffer;
  while (alive) {
    kick();
    if (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0) {
      break;
    }
    arm_deadline();
    if (open_count_ == 0 && !(tls_ != nullptr && tls_->has_buffered_data())) {
      // Idle: wait for readability without a buffer, so an idle HTTP/2
      // connection holds no read buffer (as for HTTP/1.1), nor spare streams.
      buffer.reset();
      drop_spares();
      if (tls_ != nullptr) {
        tls_->release_buffers();
      }
      auto [wec] = co_await util::async_wait_readable(socket_, false, kNoThrow);
      if (wec) {
        say_goodbye_if_idle();
        break;
      }
    }
    if (!buffer) {
      buffer.reset(new char[kReadBuffer]);
    }
    auto [ec, n] = co_await tls::read_some(socket_, tls_, asio::buffer(buffer.get(), kReadBuffer));
    if (ec) {
      say_goodbye_if_idle();
      break;
    }
    auto fed =
        nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(buffer.get()), n);
    if (fed < 0) {
      worker_.shared().log->debug("{}: HTTP/2 connection from {} failed: {}", listener_.name,
                                  peer_text_, nghttp2_strerror(static_cast<int>(fed)));
      if (fed != NGHTTP2_ERR_BAD_CLIENT_MAGIC) {
        nghttp2_session_terminate_session(session_, NGHTTP2_PROTOCOL_ERROR);
      }
      break;
    }
  }
  buffer.reset();
  reader_done_ = true;
  // Every stream still open ends now: their coroutines see the reset and
  // unwind (an upstream wait is cancelled).
  // They stay in open_ (nghttp2 may still point at them) until the
  // destructor.
  for (H2Stream* stream = open_; stream != nullptr; stream = stream->next_) {
    stream->on_close(NGHTTP2_CANCEL);
  }
  kick();
  // The writer flushes a last GOAWAY within a short bound, then stops.
  deadline_.expires_after(std::chrono::seconds(1));
  while (writer_running_ || running_ > 0) {
    co_await done_event_.wait(kForever);
  }
  deadline_.clear();
}

asio::awaitable<void> H2Connection::write_loop() {
  const auto body_timeout = worker_.snapshot()->config->limits.body_timeout;
  for (;;) {
    wbuf_.clear();
    bool failed = false;
    while (wbuf_.size() < kWriteBatch) {
      const uint8_t* data = nullptr;
      auto n = nghttp2_session_mem_send(session_, &data);
      if (n < 0) {
        failed = true;
        break;
      }
      if (n == 0) {
        break;
      }
      wbuf_.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
    }
    if (failed) {
      break;
    }
    if (!wbuf_.empty()) {
      writing_ = true;
      if (!reader_done_) {
        deadline_.expires_after(body_timeout);
      }
      auto [wec, wn] = co_await tls::write(socket_, tls_, asio::buffer(wbuf_));
      writing_ = false;
      if (wec) {
        break;
      }
      if (!reader_done_) {
        arm_deadline();
      }
      continue;
    }
    if (reader_done_) {
      break;
    }
    if (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0) {
      break;  // GOAWAY exchanged and every stream done
    }
    if (open_count_ == 0) {
      wbuf_.clear();
      wbuf_.shrink_to_fit();  // idle: keep no write buffer either
    }
    co_await write_event_.wait(kForever);
  }
  wbuf_.clear();
  wbuf_.shrink_to_fit();
  if (!reader_done_) {
    boost::system::error_code ignored;
    socket_.cancel(ignored);  // wake the reader: the connection is over
  }
}

void H2Connection::arm_deadline() {
  const auto& lim = worker_.snapshot()->config->limits;
  if (writing_) {
    deadline_.expires_after(lim.body_timeout);
  } else if (heads_pending_ > 0) {
    deadline_.expires_at(head_deadline_);
  } else if (running_ > 0) {
    deadline_.clear();  // each stream's handler bounds its own waits
  } else if (open_count_ > 0) {
    // Answered streams wait on the client alone (its window, the rest of
    // a body nobody reads): a client that never moves is dropped.
    deadline_.expires_after(lim.body_timeout);
  } else {
    deadline_.expires_at(idle_deadline_);
  }
}

void H2Connection::drain() {
  if (draining_) {
    return;
  }
  draining_ = true;
  if (session_ == nullptr) {
    return;  // run() sends it once the session exists
  }
  send_goaway();
  if (open_count_ == 0) {
    boost::system::error_code ignored;
    socket_.cancel(ignored);  // idle: the reader stops, the writer flushes the GOAWAY
  }
  kick();
}

void H2Connection::say_goodbye_if_idle() {
  if (deadline_.expired() && open_count_ == 0) {
    // Idle timeout: GOAWAY before closing (the writer flushes it).
    nghttp2_session_terminate_session(session_, NGHTTP2_NO_ERROR);
  }
}

void H2Connection::send_goaway() {
  // Streams up to the last one seen finish; later ones are refused.
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                        nullptr, 0);
}

H2Stream* H2Connection::stream(int32_t id) {
  return static_cast<H2Stream*>(nghttp2_session_get_stream_user_data(session_, id));
}

H2Stream* H2Connection::open_stream(int32_t id) {
  H2Stream* stream = spare_;
  if (stream != nullptr) {
    spare_ = stream->next_;
    --spare_count_;
    stream->set_id(id);
  } else {
    stream = new H2Stream(*this, id);
  }
  stream->prev_ = nullptr;
  stream->next_ = open_;
  if (open_ != nullptr) {
    open_->prev_ = stream;
  }
  open_ = stream;
  stream->open_ = true;
  ++open_count_;
  return stream;
}

void H2Connection::start_stream(H2Stream* stream) {
  ++running_;
  stream->running_ = true;
  auto ex = socket_.get_executor();
  asio::post(ex, [this, stream, ex] {
    asio::co_spawn(ex, stream->run(), [this, stream](std::exception_ptr) {
      --running_;
      stream->running_ = false;
      if (!stream->open_) {
        retire(stream);
      }
      done_event_.notify();
      if (!reader_done_) {
        arm_deadline();
      }
      kick();
    });
  });
}

void H2Connection::stream_closed(int32_t id, uint32_t error_code) {
  H2Stream* stream = this->stream(id);
  if (stream == nullptr || !stream->open_) {
    return;
  }
  if (stream->prev_ != nullptr) {
    stream->prev_->next_ = stream->next_;
  } else {
    open_ = stream->next_;
  }
  if (stream->next_ != nullptr) {
    stream->next_->prev_ = stream->prev_;
  }
  stream->prev_ = nullptr;
  stream->next_ = nullptr;
  stream->open_ = false;
  --open_count_;
  if (!stream->head_done() && heads_pending_ > 0) {
    --heads_pending_;  // reset while its head was still arriving
  }
  nghttp2_session_set_stream_user_data(session_, id, nullptr);
  stream->on_close(error_code);
  if (open_count_ == 0) {
    idle_deadline_ = util::coarse_now() + worker_.snapshot()->config->limits.idle_timeout;
  }
  if (!stream->running_) {
    retire(stream);  // answered, or never started (reset before its head ended)
  }
}

void H2Connection::retire(H2Stream* stream) {
  if (spare_count_ >= kMaxSpareStreams || reader_done_) {
    delete stream;
    return;
  }
  stream->recycle();
  stream->next_ = spare_;
  spare_ = stream;
  ++spare_count_;
}

void H2Connection::drop_spares() {
  while (spare_ != nullptr) {
    H2Stream* next = spare_->next_;
    delete spare_;
    spare_ = next;
  }
  spare_count_ = 0;
}

int H2Connection::on_begin_headers(nghttp2_session* s, const nghttp2_frame* frame, void* user) {
  auto* c = static_cast<H2Connection*>(user);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
    return 0;
  }
  H2Stream* stream = c->open_stream(frame->hd.stream_id);
  nghttp2_session_set_stream_user_data(s, frame->hd.stream_id, stream);
  if (c->heads_pending_++ == 0) {
    c->head_deadline_ = util::coarse_now() + c->worker_.snapshot()->config->limits.header_timeout;
  }
  return 0;
}

int H2Connection::on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                            size_t namelen, const uint8_t* value, size_t valuelen, uint8_t,
                            void* user) {
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
    return 0;  // trailers are not forwarded
  }
  auto* c = static_cast<H2Connection*>(user);
  if (auto* st = c->stream(frame->hd.stream_id)) {
    st->on_header(std::string_view(reinterpret_cast<const char*>(name), namelen),
                  std::string_view(reinterpret_cast<const char*>(value), valuelen));
  }
  return 0;
}

int H2Connection::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* c = static_cast<H2Connection*>(user);
  const bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  switch (frame->hd.type) {
    case NGHTTP2_HEADERS: {
      auto* st = c->stream(frame->hd.stream_id);
      if (st == nullptr) {
        break;
      }
      if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        if (c->heads_pending_ > 0) {
          --c->heads_pending_;
        }
        st->on_head_done(end_stream);
        c->start_stream(st);
      } else if (end_stream) {
        st->on_request_end();  // trailers end the body
      }
      break;
    }
    case NGHTTP2_DATA:
      if (end_stream) {
        if (auto* st = c->stream(frame->hd.stream_id)) {
          st->on_request_end();
        }
      }
      break;
    default:
      break;
  }
  return 0;
}

int H2Connection::on_data_chunk(nghttp2_session* s, uint8_t, int32_t stream_id, const uint8_t* data,
                                size_t len, void* user) {
  auto* c = static_cast<H2Connection*>(user);
  auto* st = c->stream(stream_id);
  if (st == nullptr || st->discarding()) {
    nghttp2_session_consume(s, stream_id, len);  // nobody reads it: keep the window open
    return 0;
  }
  st->on_data(data, len);
  return 0;
}

int H2Connection::on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code,
                                  void* user) {
  auto* c = static_cast<H2Connection*>(user);
  c->stream_closed(stream_id, error_code);
  return 0;
}

int H2Connection::send_data(nghttp2_session*, nghttp2_frame* frame, const uint8_t* framehd,
                            size_t length, nghttp2_data_source* source, void* user) {
  // A DATA frame whose payload read_response() left in the stream's buffer
  // (NO_COPY), called from nghttp2_session_mem_send in write_loop: the frames
  // mem_send returned before are in wbuf_ already, so this one goes right
  // after them.
  auto* c = static_cast<H2Connection*>(user);
  auto* st = static_cast<H2Stream*>(source->ptr);  // the stream is open (nghttp2 checked)
  constexpr size_t kFrameHeader = 9;
  c->wbuf_.append(reinterpret_cast<const char*>(framehd), kFrameHeader);
  size_t padlen = frame->data.padlen;  // 0: ward sets no padding callback
  if (padlen > 0) {
    c->wbuf_.push_back(static_cast<char>(padlen - 1));
  }
  st->take_response(c->wbuf_, length);
  if (padlen > 1) {
    c->wbuf_.append(padlen - 1, '\0');
  }
  // A full batch goes out before more DATA is taken (mem_send returns 0
  // after this frame; write_loop writes, then asks again).
  return c->wbuf_.size() >= kWriteBatch ? NGHTTP2_ERR_PAUSE : 0;
}

int H2Connection::on_frame_send(nghttp2_session* s, const nghttp2_frame* frame, void* user) {
  if ((frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS) ||
      (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0) {
    return 0;
  }
  // The response is complete while the client still sends its body: stop
  // it (RFC 9113 8.1 allows RST_STREAM with NO_ERROR here).
  auto* c = static_cast<H2Connection*>(user);
  if (auto* st = c->stream(frame->hd.stream_id); st != nullptr && !st->request_ended()) {
    nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
  }
  return 0;
}

}  // namespace ward::server
