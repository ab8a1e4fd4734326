// ward-whoami: the demo upstream and the integration tests' upstream.
//
// Like Traefik's whoami it answers with its own name and what it received:
//   {"name":..,"method":..,"target":..,"version":..,"headers":[[n,v],..],
//    "body_bytes":N,"body_sha256":".."}
// Query parameters (combinable) change what it does, so a test can make an
// upstream slow, big, chunked, rude or broken on demand:
//   status=N      answer with status N
//   delay=MS      wait MS before the response head
//   size=N        answer N bytes of a repeating pattern instead of JSON
//   chunked=1     chunked response
//   close=1       read the request, then close without answering
//   echo=1        stream the request body back as the response body
//   early=1       answer (JSON, status=) before reading any of the body, then
//                 close with the body unread (the kernel resets the
//                 connection: a proxy's writes of the body fail)
//   early=2       answer before reading the body, then read and drop it and
//                 keep the connection (a polite early answer)
//   drip=MS       pause MS between 16 KiB response pieces
//   header=N:V    add a response header (repeatable, %-decoded)
//   nobody=1      no body (204/304 semantics)
//   type=T        Content-Type of a size= or echo= body (default
//                 application/octet-stream)
// GET /ws with a WebSocket upgrade (RFC 6455) echoes every message back,
// prefixed with "<name>:", until the client closes.
// GET /health answers 200 "ok" (503 while --unhealthy-file exists), and
// GET /__count answers {"requests":N,"connections":M}: the requests received
// whole, head and body (echo=1: head), neither of these two paths counted,
// and the connections accepted so far. Tests use it to prove that a request
// ward rejected never reached the upstream.
// Bodies are streamed and hashed in both directions, never held whole.
// With --tls-cert FILE --tls-key FILE it speaks HTTPS (and WSS) instead, for
// the upstream TLS tests.
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using std::chrono::milliseconds;

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kDripPiece = 16 * 1024;  // bytes per piece when dripping
constexpr std::size_t kPiece = 64 * 1024;      // bytes per read/write otherwise
constexpr std::uint32_t kHeaderLimit = 1 << 20;
// The size= body: byte i is kPattern[i % 64]; pieces are multiples of 64 bytes.
constexpr std::string_view kPattern =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

struct Options {
  std::string name = "whoami";
  std::string listen = "127.0.0.1:0";
  std::string unhealthy_file;
  std::string tls_cert;  // with tls_key: serve HTTPS
  std::string tls_key;
  int threads = 1;
};

struct Counters {
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> connections{0};
};

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr); }
  void update(const void* data, std::size_t n) { EVP_DigestUpdate(ctx_.get(), data, n); }
  std::string hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_.get(), digest, &len);
    std::string out;
    for (unsigned int i = 0; i < len; ++i) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += kHex[digest[i] >> 4];
      out += kHex[digest[i] & 15];
    }
    return out;
  }

 private:
  struct Free {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> ctx_;
};

void json_string(std::string& out, std::string_view s) {
  out += '"';
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {  // bytes >= 0x80 read as Latin-1
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\u%04x", c);
      out += esc;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
}

std::string percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    unsigned v = 0;
    if (s[i] == '%' && i + 2 < s.size() &&
        std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16).ptr == s.data() + i + 3) {
      out += static_cast<char>(v);
      i += 2;
    } else {
      out += s[i] == '+' ? ' ' : s[i];
    }
  }
  return out;
}

template <typename T>
T to_number(std::string_view s, T fallback) {
  T v{};
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size() ? v : fallback;
}

// What the query string asks for.
struct Behaviour {
  unsigned status = 200;
  milliseconds delay{0};
  milliseconds drip{0};
  std::optional<std::uint64_t> size;
  bool chunked = false;
  bool close = false;
  bool echo = false;
  bool nobody = false;
  int early = 0;
  std::string type = "application/octet-stream";
  std::vector<std::pair<std::string, std::string>> headers;

  static Behaviour parse(std::string_view target) {
    Behaviour b;
    auto q = target.find('?');
    std::string_view query = q == target.npos ? "" : target.substr(q + 1);
    while (!query.empty()) {
      auto amp = query.find('&');
      std::string_view item = query.substr(0, amp);
      query = amp == query.npos ? "" : query.substr(amp + 1);
      auto eq = item.find('=');
      std::string_view key = item.substr(0, eq);
      std::string value = percent_decode(eq == item.npos ? "" : item.substr(eq + 1));
      b.apply(key, value);
    }
    return b;
  }

 private:
  void apply(std::string_view key, const std::string& value) {
    if (key == "status") {
      status = std::clamp(to_number<unsigned>(value, 200), 200u, 999u);
    } else if (key == "delay") {
      delay = milliseconds(to_number<unsigned>(value, 0));
    } else if (key == "drip") {
      drip = milliseconds(to_number<unsigned>(value, 0));
    } else if (key == "size") {
      size = to_number<std::uint64_t>(value, 0);
    } else if (key == "chunked") {
      chunked = value == "1";
    } else if (key == "close") {
      close = value == "1";
    } else if (key == "echo") {
      echo = value == "1";
    } else if (key == "early") {
      early = std::clamp(to_number<int>(value, 0), 0, 2);
    } else if (key == "nobody") {
      nobody = value == "1";
    } else if (key == "type") {
      // No CR/LF: the value goes into the response head as is.
      if (value.find_first_of("\r\n") == std::string::npos) {
        type = value;
      }
    } else if (key == "header") {
      auto colon = value.find(':');
      if (colon != std::string::npos) {
        auto v = value.substr(colon + 1);
        v.erase(0, v.find_first_not_of(' '));
        headers.emplace_back(value.substr(0, colon), v);
      }
    }
  }
};

// One request/response exchange on a connection; the buffer outlives it so
// pipelined bytes read past this request stay for the next one.
//
// Every co_await here is a plain statement or `x = co_await ...;`: GCC 12
// lays out some frames wrongly for `if (!co_await f())` and `co_await a &&
// co_await b`, so a failed read or write sets ok_ instead of returning a
// value to test, and every later step is a no-op once ok_ is false.
template <typename Stream>
class Exchange {
 public:
  Exchange(Stream& sock, beast::flat_buffer& buffer, const Options& opt, Counters& counters)
      : sock_(sock), buffer_(buffer), opt_(opt), counters_(counters) {
    parser_.header_limit(kHeaderLimit);
    parser_.body_limit(std::numeric_limits<std::uint64_t>::max());
  }

  // Serves one request; false when the connection must not be reused.
  asio::awaitable<bool> run() {
    auto [ec, n] = co_await http::async_read_header(sock_, buffer_, parser_, kTuple);
    if (ec) {
      co_return false;
    }
    const auto& req = parser_.get();
    std::string_view path = req.target().substr(0, req.target().find('?'));
    head_only_ = req.method() == http::verb::head;
    keep_alive_ = req.keep_alive();
    chunk_ok_ = req.version() >= 11;
    if (path == "/ws" && beast::websocket::is_upgrade(req)) {
      counters_.requests++;
      co_await answer_websocket();
      co_return false;  // the connection was the WebSocket's
    }
    if (path == "/health") {
      co_await answer_health();
    } else if (path == "/__count") {
      co_await answer_count();
    } else {
      want_ = Behaviour::parse(req.target());
      co_await answer();
    }
    bool reusable = ok_ && keep_alive_;
    co_return reusable;
  }

 private:
  asio::awaitable<void> answer() {
    if (want_.early != 0) {
      counters_.requests++;  // counted when its head arrives, like echo
      co_await answer_early();
      co_return;
    }
    if (want_.echo && !head_only_) {
      counters_.requests++;  // echo streams: counted when its head arrives
      co_await answer_echo();
      co_return;
    }
    co_await read_whole_body();
    if (!ok_) {
      co_return;  // an incomplete request is not counted
    }
    counters_.requests++;
    co_await sleep(want_.delay);
    if (want_.close) {
      ok_ = false;
    } else if (want_.nobody) {
      co_await send_head(want_.status, "", std::nullopt);
    } else if (want_.size) {
      co_await answer_pattern(*want_.size);
    } else {
      co_await answer_json();
    }
  }

  // Echoes each message with the server's name in front, until a close or an
  // error; each read is bounded (a test upstream must not hang a test).
  asio::awaitable<void> answer_websocket() {
    beast::websocket::stream<Stream&> ws(sock_);
    ws.set_option(beast::websocket::stream_base::timeout{std::chrono::seconds(10),
                                                         std::chrono::seconds(30), false});
    ws.read_message_max(1 << 20);
    auto [aec] = co_await ws.async_accept(parser_.get(), kTuple);
    if (aec) {
      co_return;
    }
    beast::flat_buffer message;
    for (;;) {
      message.clear();
      auto [rec, rn] = co_await ws.async_read(message, kTuple);
      if (rec) {
        co_return;
      }
      std::string reply = opt_.name + ":" + beast::buffers_to_string(message.data());
      ws.text(ws.got_text());
      auto [wec, wn] = co_await ws.async_write(asio::buffer(reply), kTuple);
      if (wec) {
        co_return;
      }
    }
  }

  asio::awaitable<void> answer_health() {
    bool sick = !opt_.unhealthy_file.empty() && std::filesystem::exists(opt_.unhealthy_file);
    text_ = sick ? "unhealthy\n" : "ok\n";
    unsigned status = sick ? 503 : 200;
    co_await read_whole_body();
    co_await answer_text(status, "text/plain");
  }

  asio::awaitable<void> answer_count() {
    text_ = "{\"requests\":" + std::to_string(counters_.requests) +
            ",\"connections\":" + std::to_string(counters_.connections) + "}";
    co_await read_whole_body();
    co_await answer_text(200, "application/json");
  }

  asio::awaitable<void> answer_json() {
    const auto& req = parser_.get();
    text_ = "{\"name\":";
    json_string(text_, opt_.name);
    text_ += ",\"method\":";
    json_string(text_, req.method_string());
    text_ += ",\"target\":";
    json_string(text_, req.target());
    text_ += ",\"version\":";
    json_string(text_, req.version() == 10 ? "HTTP/1.0" : "HTTP/1.1");
    text_ += ",\"headers\":[";
    for (const auto& f : req) {
      text_ += text_.back() == '[' ? "[" : ",[";
      json_string(text_, f.name_string());
      text_ += ',';
      json_string(text_, f.value());
      text_ += ']';
    }
    text_ += "],\"body_bytes\":" + std::to_string(body_bytes_) + ",\"body_sha256\":";
    json_string(text_, body_hash_.hex());
    text_ += "}\n";
    co_await answer_text(want_.status, "application/json");
  }

  // Sends text_ as the whole body, in drip pieces when asked.
  asio::awaitable<void> answer_text(unsigned status, std::string_view type) {
    co_await send_head(status, type, text_.size());
    std::size_t piece = want_.drip.count() ? kDripPiece : text_.size();
    for (std::size_t at = 0; ok_ && at < text_.size(); at += piece) {
      co_await send_piece(std::string_view(text_).substr(at, piece));
    }
    co_await finish_body();
  }

  asio::awaitable<void> answer_pattern(std::uint64_t size) {
    static const std::string block = [] {
      std::string s;
      while (s.size() < kPiece) {
        s += kPattern;
      }
      return s;
    }();
    co_await send_head(want_.status, want_.type, size);
    std::size_t piece = want_.drip.count() ? kDripPiece : kPiece;
    for (std::uint64_t sent = 0; ok_ && sent < size; sent += piece) {
      auto n = static_cast<std::size_t>(std::min<std::uint64_t>(piece, size - sent));
      co_await send_piece(std::string_view(block).substr(0, n));
    }
    co_await finish_body();
  }

  // The answer goes out before one body byte is read (a server refusing an
  // upload by its head: 413, 401).
  asio::awaitable<void> answer_early() {
    if (want_.early == 1) {
      keep_alive_ = false;
    }
    co_await answer_json();
    if (want_.early == 1) {
      ok_ = false;  // close now, the body unread
      co_return;
    }
    co_await read_whole_body();
  }

  // Streams the request body back as it arrives (constant memory).
  asio::awaitable<void> answer_echo() {
    co_await sleep(want_.delay);
    if (want_.close) {
      ok_ = false;
      co_return;
    }
    std::optional<std::uint64_t> length;  // none when the request is chunked
    if (auto cl = parser_.content_length()) {
      length = *cl;
    }
    co_await send_head(want_.status, want_.type, length);
    co_await continue_if_expected();
    std::array<char, kPiece> buf;
    std::size_t piece = want_.drip.count() ? kDripPiece : kPiece;
    while (ok_ && !parser_.is_done()) {
      std::size_t n = co_await read_body_piece(buf.data(), piece);
      co_await send_piece(std::string_view(buf.data(), n));
    }
    co_await finish_body();
  }

  asio::awaitable<void> read_whole_body() {
    co_await continue_if_expected();
    std::array<char, kPiece> buf;
    while (ok_ && !parser_.is_done()) {
      co_await read_body_piece(buf.data(), buf.size());
    }
  }

  // Reads up to `cap` body bytes into `out` and hashes them; returns the count.
  asio::awaitable<std::size_t> read_body_piece(char* out, std::size_t cap) {
    auto& body = parser_.get().body();
    body.data = out;
    body.size = cap;
    auto [ec, n] = co_await http::async_read_some(sock_, buffer_, parser_, kTuple);
    if (ec && ec != http::error::need_buffer) {
      ok_ = false;
    }
    std::size_t got = cap - body.size;
    body_hash_.update(out, got);
    body_bytes_ += got;
    co_return got;
  }

  // RFC 9110 10.1.1: a client waiting on Expect: 100-continue gets an interim answer.
  asio::awaitable<void> continue_if_expected() {
    auto expect = parser_.get()[http::field::expect];
    if (!parser_.is_done() && beast::iequals(expect, "100-continue") && chunk_ok_) {
      co_await write(asio::buffer("HTTP/1.1 100 Continue\r\n\r\n", 25));
    }
  }

  // Writes the status line and headers. A known `length` gives
  // Content-Length; otherwise chunked (or close-delimited for HTTP/1.0).
  asio::awaitable<void> send_head(unsigned status, std::string_view type,
                                  std::optional<std::uint64_t> length) {
    bool bodiless = want_.nobody || status == 204 || status == 304;
    chunked_ = !bodiless && chunk_ok_ && (want_.chunked || !length);
    if (!bodiless && !chunked_ && !length) {
      keep_alive_ = false;  // HTTP/1.0 and unknown length: the close ends the body
    }
    std::string head = "HTTP/1.1 " + std::to_string(status) + " " +
                       std::string(http::obsolete_reason(static_cast<http::status>(status))) +
                       "\r\nServer: ward-whoami\r\nX-Whoami: " + opt_.name + "\r\n";
    if (!type.empty() && !bodiless) {
      head += "Content-Type: " + std::string(type) + "\r\n";
    }
    if (chunked_) {
      head += "Transfer-Encoding: chunked\r\n";
    } else if (want_.nobody && status != 204 && status != 304) {
      head += "Content-Length: 0\r\n";
    } else if (!bodiless && length) {
      head += "Content-Length: " + std::to_string(*length) + "\r\n";
    }
    for (const auto& [name, value] : want_.headers) {
      head += name + ": " + value + "\r\n";
    }
    if (!keep_alive_) {
      head += "Connection: close\r\n";
    } else if (!chunk_ok_) {
      head += "Connection: keep-alive\r\n";  // HTTP/1.0 closes unless told otherwise
    }
    head += "\r\n";
    body_allowed_ = !bodiless && !head_only_;
    co_await write(asio::buffer(head));
  }

  // Writes one body piece (as a chunk when chunked), dripping between pieces.
  asio::awaitable<void> send_piece(std::string_view data) {
    if (!body_allowed_ || data.empty()) {
      co_return;
    }
    if (pieces_sent_++ > 0) {
      co_await sleep(want_.drip);
    }
    char size_line[32];
    int len = std::snprintf(size_line, sizeof size_line, "%zx\r\n", data.size());
    std::array<asio::const_buffer, 3> bufs{asio::buffer(size_line, chunked_ ? len : 0),
                                           asio::buffer(data),
                                           asio::buffer("\r\n", chunked_ ? 2 : 0)};
    co_await write(bufs);
  }

  asio::awaitable<void> finish_body() {
    if (chunked_ && body_allowed_) {
      co_await write(asio::buffer("0\r\n\r\n", 5));
    }
  }

  // Every write goes through here; after any failure the rest are skipped.
  template <typename Buffers>
  asio::awaitable<void> write(Buffers buffers) {
    if (ok_) {
      auto [ec, n] = co_await asio::async_write(sock_, buffers, kTuple);
      ok_ = !ec;
    }
  }

  asio::awaitable<void> sleep(milliseconds d) {
    if (ok_ && d.count() > 0) {
      asio::steady_timer timer(sock_.get_executor(), d);
      co_await timer.async_wait(kTuple);
    }
  }

  Stream& sock_;
  beast::flat_buffer& buffer_;
  const Options& opt_;
  Counters& counters_;
  http::request_parser<http::buffer_body> parser_;
  Behaviour want_;
  std::string text_;  // a whole small body (JSON, health, count)
  Sha256 body_hash_;
  std::uint64_t body_bytes_ = 0;
  std::uint64_t pieces_sent_ = 0;
  bool ok_ = true;  // no read or write has failed
  bool head_only_ = false;
  bool keep_alive_ = true;
  bool chunk_ok_ = true;
  bool chunked_ = false;
  bool body_allowed_ = true;
};

template <typename Stream>
asio::awaitable<void> serve_requests(Stream& stream, const Options& opt, Counters& counters) {
  beast::flat_buffer buffer;
  for (bool again = true; again;) {
    Exchange<Stream> exchange(stream, buffer, opt, counters);  // named: GCC 12 mishandles
    again = co_await exchange.run();                           // temporaries in co_await
  }
}

asio::awaitable<void> serve(tcp::socket sock, const Options& opt, Counters& counters) {
  counters.connections++;
  co_await serve_requests(sock, opt, counters);
  beast::error_code ec;
  sock.shutdown(tcp::socket::shutdown_send, ec);
  sock.close(ec);
}

asio::awaitable<void> serve_tls(tcp::socket sock, asio::ssl::context& tls, const Options& opt,
                                Counters& counters) {
  counters.connections++;
  asio::ssl::stream<tcp::socket> stream(std::move(sock), tls);
  // Every wait of the handshake and the close is bounded: a test upstream
  // must not hang a test.
  asio::steady_timer timer(stream.get_executor(), std::chrono::seconds(10));
  timer.async_wait([&stream](const beast::error_code& ec) {
    if (!ec) {
      beast::error_code ignored;
      stream.next_layer().cancel(ignored);
    }
  });
  auto [hec] = co_await stream.async_handshake(asio::ssl::stream_base::server, kTuple);
  timer.cancel();
  if (!hec) {
    co_await serve_requests(stream, opt, counters);
    timer.expires_after(std::chrono::seconds(2));
    timer.async_wait([&stream](const beast::error_code& ec) {
      if (!ec) {
        beast::error_code ignored;
        stream.next_layer().cancel(ignored);
      }
    });
    auto [sec] = co_await stream.async_shutdown(kTuple);  // close_notify both ways
    (void)sec;
    timer.cancel();
  }
  beast::error_code ec;
  stream.next_layer().shutdown(tcp::socket::shutdown_send, ec);
  stream.next_layer().close(ec);
}

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, asio::ssl::context* tls,
                                  const Options& opt, Counters& counters) {
  for (;;) {
    auto [ec, sock] = co_await acceptor.async_accept(kTuple);
    if (ec) {
      continue;
    }
    sock.set_option(tcp::no_delay(true), ec);
    if (tls != nullptr) {
      asio::co_spawn(acceptor.get_executor(), serve_tls(std::move(sock), *tls, opt, counters),
                     asio::detached);
    } else {
      asio::co_spawn(acceptor.get_executor(), serve(std::move(sock), opt, counters),
                     asio::detached);
    }
  }
}

tcp::endpoint parse_endpoint(const std::string& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos) {
    throw std::invalid_argument("--listen wants HOST:PORT, got " + text);
  }
  std::string host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  auto port = to_number<unsigned>(std::string_view(text).substr(colon + 1), 65536);
  if (port > 65535) {
    throw std::invalid_argument("bad port in " + text);
  }
  return {asio::ip::make_address(host.empty() ? "0.0.0.0" : host),
          static_cast<unsigned short>(port)};
}

Options parse_args(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << "usage: ward-whoami [--name NAME] [--listen HOST:PORT] "
                   "[--unhealthy-file PATH] [--threads N] [--tls-cert FILE --tls-key FILE]\n";
      std::exit(0);
    }
    if (i + 1 >= argc) {
      throw std::invalid_argument("missing value for " + std::string(arg));
    }
    std::string value = argv[++i];
    if (arg == "--name") {
      opt.name = value;
    } else if (arg == "--listen") {
      opt.listen = value;
    } else if (arg == "--unhealthy-file") {
      opt.unhealthy_file = value;
    } else if (arg == "--tls-cert") {
      opt.tls_cert = value;
    } else if (arg == "--tls-key") {
      opt.tls_key = value;
    } else if (arg == "--threads") {
      opt.threads = std::max(1, to_number<int>(value, 1));
    } else {
      throw std::invalid_argument("unknown option " + std::string(arg));
    }
  }
  if (opt.tls_cert.empty() != opt.tls_key.empty()) {
    throw std::invalid_argument("--tls-cert and --tls-key go together");
  }
  return opt;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Options opt = parse_args(argc, argv);
    Counters counters;
    asio::io_context io(opt.threads);
    tcp::endpoint want = parse_endpoint(opt.listen);
    tcp::acceptor acceptor(io, want.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    acceptor.bind(want);
    acceptor.listen(asio::socket_base::max_listen_connections);
    auto bound = acceptor.local_endpoint();
    std::string host = bound.address().to_string();
    if (bound.address().is_v6()) {
      host = "[" + host + "]";
    }
    std::cout << "listening " << host << ":" << bound.port() << std::endl;  // flushed
    std::optional<asio::ssl::context> tls;
    if (!opt.tls_cert.empty()) {
      tls.emplace(asio::ssl::context::tls_server);
      tls->use_certificate_chain_file(opt.tls_cert);
      tls->use_private_key_file(opt.tls_key, asio::ssl::context::pem);
    }
    asio::co_spawn(io, accept_loop(acceptor, tls ? &*tls : nullptr, opt, counters), asio::detached);
    std::vector<std::jthread> extra;
    for (int i = 1; i < opt.threads; ++i) {
      extra.emplace_back([&io] { io.run(); });
    }
    io.run();
  } catch (const std::exception& e) {
    std::cerr << "ward-whoami: " << e.what() << "\n";
    return 2;
  }
}
