// TlsStream over real loopback TCP sockets, both ends in one io_context on
// the test thread: the server end is the stream under test, the client end
// a second TlsStream over a client SSL. Every run is bounded (a hang fails
// the test, it does not block it); nothing sleeps: a "pending" operation is
// one that io_context::poll() can no longer advance.

#include "proxy/tls/tls_stream.h"

#include <gtest/gtest.h>
#include <malloc.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "proxy/util/recv_op.h"
#include "tests/unit/tls/tls_test_support.h"

namespace ward::tls {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;
using namespace std::chrono_literals;
using namespace testing;

constexpr size_t kRecord = 16384;  // TLS plaintext bytes per record (RFC 8446 5.1)

// What a stream's SSL reports to its message callback.
struct Wire {
  int app_records_sent = 0;  // records whose outer type is application_data
  int key_updates_sent = 0;
  int key_updates_received = 0;

  static void callback(int write_p, int /*version*/, int content_type, const void* buf, size_t len,
                       SSL* /*ssl*/, void* arg) {
    auto* wire = static_cast<Wire*>(arg);
    auto* bytes = static_cast<const unsigned char*>(buf);
    if (len == 0) {
      return;
    }
    if (content_type == SSL3_RT_HEADER && write_p == 1 && bytes[0] == SSL3_RT_APPLICATION_DATA) {
      ++wire->app_records_sent;
    }
    if (content_type == SSL3_RT_HANDSHAKE && bytes[0] == SSL3_MT_KEY_UPDATE) {
      ++(write_p == 1 ? wire->key_updates_sent : wire->key_updates_received);
    }
  }

  void watch(SSL* ssl) {
    SSL_set_msg_callback(ssl, &Wire::callback);
    SSL_set_msg_callback_arg(ssl, this);
  }
};

// A deterministic byte pattern, so a misplaced or lost byte shows.
std::string pattern(size_t size, unsigned seed = 1) {
  std::string s(size, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (auto& c : s) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
// In the sanitizer runtimes (GCC ships no header that declares it).
extern "C" size_t __sanitizer_get_current_allocated_bytes();
#endif

// Bytes of heap in use now: the sanitizers' allocator when one replaced
// malloc, glibc's main arena (this test's thread) otherwise.
size_t heap_in_use() {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  return __sanitizer_get_current_allocated_bytes();
#else
  struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
#endif
}

ClientOptions h2_client() {
  ClientOptions o;
  o.sni = "default.example.com";
  o.alpn = {"h2", "http/1.1"};
  return o;
}

class TlsStreamTest : public ::testing::Test {
 protected:
  TlsStreamTest()
      : contexts_(build_ok(listener({"default"}, "      alpn: [h2, http/1.1]\n"),
                           std::make_shared<TicketKeyRing>(TicketKeyRing::Clock::time_point{}))) {}

  void TearDown() override {
    // Streams first, while their sockets are still open.
    server_.reset();
    client_.reset();
  }

  // A connected pair of loopback sockets (port 0: the kernel picks).
  void connect() {
    tcp::acceptor acceptor(io_, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    client_socket_.connect(acceptor.local_endpoint());
    acceptor.accept(server_socket_);
    server_socket_.set_option(tcp::no_delay(true));
    client_socket_.set_option(tcp::no_delay(true));
  }

  void make_streams(const ClientOptions& o) {
    connect();
    server_ = std::make_unique<TlsStream>(server_socket_, contexts_->new_ssl());
    client_ = std::make_unique<TlsStream>(client_socket_, make_client(o));
  }

  // Both ends connected and past the handshake.
  void establish(const ClientOptions& o = h2_client()) {
    make_streams(o);
    error_code server_ec = asio::error::would_block;
    error_code client_ec = asio::error::would_block;
    spawn([&]() -> asio::awaitable<void> { server_ec = co_await server_->handshake(); });
    spawn([&]() -> asio::awaitable<void> { client_ec = co_await client_->handshake(); });
    run();
    ASSERT_FALSE(server_ec) << server_ec.message() << " " << server_->openssl_reason();
    ASSERT_FALSE(client_ec) << client_ec.message() << " " << client_->openssl_reason();
  }

  void spawn(std::function<asio::awaitable<void>()> f) {
    asio::co_spawn(io_, std::move(f), asio::detached);
  }

  // Runs until no work is left; a hang fails the test after a bound.
  void run() {
    io_.restart();
    io_.run_for(20s);
    EXPECT_TRUE(io_.stopped()) << "operations still pending after 20s";
  }

  // Runs everything that can run now, leaving only operations that wait on
  // the network: afterwards a read with no data is certainly pending.
  void run_until_blocked() {
    io_.restart();
    while (io_.poll() > 0) {
    }
  }

  // Reads from `s` until `size` bytes came (or an error).
  asio::awaitable<error_code> read_exactly(TlsStream& s, std::string& out, size_t size) {
    out.clear();
    std::vector<char> buf(64 * 1024);
    while (out.size() < size) {
      auto [ec, n] = co_await s.read_some(asio::buffer(buf));
      if (ec) {
        co_return ec;
      }
      out.append(buf.data(), n);
    }
    co_return error_code{};
  }

  // `message` from `from` to `to`, read there in full.
  void send(TlsStream& from, TlsStream& to, const std::string& message) {
    error_code write_ec = asio::error::would_block;
    error_code read_ec = asio::error::would_block;
    std::string got;
    spawn([&]() -> asio::awaitable<void> {
      auto [ec, n] = co_await from.write(asio::buffer(message));
      write_ec = ec;
      EXPECT_EQ(n, message.size());
    });
    spawn([&]() -> asio::awaitable<void> {
      read_ec = co_await read_exactly(to, got, message.size());
    });
    run();
    EXPECT_FALSE(write_ec) << write_ec.message();
    EXPECT_FALSE(read_ec) << read_ec.message();
    EXPECT_EQ(got, message);
  }

  // Writes `pieces` on the server and reads them whole on the client.
  void server_writes(const std::vector<asio::const_buffer>& pieces, std::string& got) {
    size_t total = asio::buffer_size(pieces);
    error_code write_ec = asio::error::would_block;
    error_code read_ec = asio::error::would_block;
    spawn([&]() -> asio::awaitable<void> {
      auto [ec, n] = co_await server_->write(pieces);
      write_ec = ec;
      EXPECT_EQ(n, total);
    });
    spawn(
        [&]() -> asio::awaitable<void> { read_ec = co_await read_exactly(*client_, got, total); });
    run();
    EXPECT_FALSE(write_ec) << write_ec.message();
    EXPECT_FALSE(read_ec) << read_ec.message();
  }

  // One read on `s`; its result.
  TlsStream::IoResult read_once(TlsStream& s, size_t size = 1024) {
    TlsStream::IoResult result{asio::error::would_block, 0};
    std::vector<char> buf(size);
    spawn([&]() -> asio::awaitable<void> { result = co_await s.read_some(asio::buffer(buf)); });
    run();
    return result;
  }

  // Writes `bytes` raw on the client's socket and resets it (SO_LINGER 0),
  // then runs the loop for at most 5 s: true when nothing is left waiting.
  bool reset_after(const std::string& bytes) {
    asio::write(client_socket_, asio::buffer(bytes));
    client_socket_.set_option(asio::socket_base::linger(true, 0));
    client_socket_.close();
    io_.restart();
    io_.run_for(5s);
    return io_.stopped();
  }

  void shutdown(TlsStream& s) {
    spawn([&]() -> asio::awaitable<void> { co_await s.shutdown(); });
    run();
  }

  asio::io_context io_;
  std::shared_ptr<const ServerContexts> contexts_;
  tcp::socket server_socket_{io_};
  tcp::socket client_socket_{io_};
  std::unique_ptr<TlsStream> server_;
  std::unique_ptr<TlsStream> client_;
};

// ---------------------------------------------------------------------------
// Handshake

TEST_F(TlsStreamTest, HandshakeNegotiatesTls13AndTheClientsAlpnChoice) {
  establish();
  EXPECT_EQ(negotiated_protocol(server_->native_handle()), AppProtocol::h2);
  EXPECT_EQ(negotiated_protocol(client_->native_handle()), AppProtocol::h2);
  EXPECT_EQ(protocol_version(server_->native_handle()), "TLSv1.3");
  EXPECT_EQ(server_->handshake_error(), std::nullopt);
  EXPECT_TRUE(server_socket_.non_blocking());
}

TEST_F(TlsStreamTest, ClientWithoutAlpnGetsNone) {
  ClientOptions o = h2_client();
  o.alpn.clear();
  establish(o);
  EXPECT_EQ(negotiated_protocol(server_->native_handle()), AppProtocol::none);
}

TEST_F(TlsStreamTest, PlainHttpOnTheTlsPortIsClassifiedNotTls) {
  connect();
  server_ = std::make_unique<TlsStream>(server_socket_, contexts_->new_ssl());
  asio::write(client_socket_, asio::buffer(std::string("GET / HTTP/1.1\r\nHost: a\r\n\r\n")));
  error_code ec;
  spawn([&]() -> asio::awaitable<void> { ec = co_await server_->handshake(); });
  run();
  EXPECT_EQ(ec, StreamError::handshake_failed);
  EXPECT_EQ(server_->handshake_error(), HandshakeError::not_tls);
  EXPECT_FALSE(server_->openssl_reason().empty());
  EXPECT_EQ(ERR_peek_error(), 0u) << "the thread's error queue must be left empty";
}

TEST_F(TlsStreamTest, Tls11OnlyClientIsClassifiedUnsupportedProtocol) {
  ClientOptions o = h2_client();
  o.min_version = TLS1_1_VERSION;
  o.max_version = TLS1_1_VERSION;
  o.legacy = true;
  make_streams(o);
  error_code server_ec;
  error_code client_ec;
  spawn([&]() -> asio::awaitable<void> { server_ec = co_await server_->handshake(); });
  spawn([&]() -> asio::awaitable<void> { client_ec = co_await client_->handshake(); });
  run();
  EXPECT_EQ(server_ec, StreamError::handshake_failed);
  EXPECT_EQ(server_->handshake_error(), HandshakeError::unsupported_protocol);
  EXPECT_TRUE(client_ec);
}

TEST_F(TlsStreamTest, PeerClosingMidHandshakeIsClassifiedClosed) {
  connect();
  server_ = std::make_unique<TlsStream>(server_socket_, contexts_->new_ssl());
  asio::write(client_socket_, asio::buffer(std::string("\x16\x03\x01\x00\x40\x01\x00", 7)));
  client_socket_.close();
  error_code ec;
  spawn([&]() -> asio::awaitable<void> { ec = co_await server_->handshake(); });
  run();
  EXPECT_EQ(ec, StreamError::handshake_failed);
  EXPECT_EQ(server_->handshake_error(), HandshakeError::closed);
}

// Part of a ClientHello and a reset in one edge, while the handshake waits:
// the BIO reads the part, which empties the socket (TCP_INQ counts no
// reset), and OpenSSL asks for the rest. The wait for it must end with the
// reset at once, not hang on an edge that was already reported.
TEST_F(TlsStreamTest, PeerResetAfterPartOfTheHelloEndsTheHandshakeAtOnce) {
  tcp::acceptor acceptor(io_, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  ASSERT_TRUE(util::enable_inq(acceptor.native_handle()));  // as ward's listeners
  client_socket_.connect(acceptor.local_endpoint());
  acceptor.accept(server_socket_);
  server_ = std::make_unique<TlsStream>(server_socket_, contexts_->new_ssl());
  error_code ec = asio::error::would_block;
  spawn([&]() -> asio::awaitable<void> { ec = co_await server_->handshake(); });
  run_until_blocked();  // waiting for the ClientHello
  ASSERT_EQ(ec, asio::error::would_block);
  ASSERT_TRUE(reset_after(std::string("\x16\x03\x01\x00\x40\x01\x00", 7)))
      << "the handshake still waits 5 s after the reset";
  EXPECT_EQ(ec, StreamError::handshake_failed);
  EXPECT_EQ(server_->handshake_error(), HandshakeError::closed);
}

TEST_F(TlsStreamTest, CancelDuringHandshakeCompletesAbortedWithoutAReason) {
  connect();
  server_ = std::make_unique<TlsStream>(server_socket_, contexts_->new_ssl());
  error_code ec = asio::error::would_block;
  spawn([&]() -> asio::awaitable<void> { ec = co_await server_->handshake(); });
  run_until_blocked();  // waiting for a ClientHello that never comes
  ASSERT_EQ(ec, asio::error::would_block);
  server_socket_.cancel();  // what the session's deadline does
  run();
  EXPECT_EQ(ec, asio::error::operation_aborted);
  EXPECT_EQ(server_->handshake_error(), std::nullopt);
}

// A crowd of clients that send a ClientHello and then nothing: each server
// handshake answers and waits for a Finished that never comes. The record
// buffers (two of about 16 KiB) must not stay with it while it waits, or a
// few thousand stalled clients pin a hundred MiB until the header timeout.
TEST_F(TlsStreamTest, AHandshakeWaitingOnItsPeerHoldsNoRecordBuffers) {
  constexpr size_t kStalled = 16;
  struct Stalled {
    explicit Stalled(asio::io_context& io) : server_socket(io), client_socket(io) {}
    tcp::socket server_socket;
    tcp::socket client_socket;
    std::unique_ptr<TlsStream> server;
    SslPtr client;
    error_code ec = asio::error::would_block;
  };
  std::vector<std::unique_ptr<Stalled>> crowd;
  tcp::acceptor acceptor(io_, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  for (size_t i = 0; i < kStalled; ++i) {
    auto c = std::make_unique<Stalled>(io_);
    c->client_socket.connect(acceptor.local_endpoint());
    acceptor.accept(c->server_socket);
    c->server = std::make_unique<TlsStream>(c->server_socket, contexts_->new_ssl());
    // The client runs over memory BIOs: its hello goes out by hand, once.
    c->client = make_client(h2_client());
    BIO* in = BIO_new(BIO_s_mem());
    BIO* out = BIO_new(BIO_s_mem());
    SSL_set_bio(c->client.get(), in, out);
    ASSERT_EQ(SSL_get_error(c->client.get(), SSL_do_handshake(c->client.get())),
              SSL_ERROR_WANT_READ);
    char* hello = nullptr;
    long size = BIO_get_mem_data(out, &hello);
    ASSERT_GT(size, 0);
    asio::write(c->client_socket, asio::buffer(hello, static_cast<size_t>(size)));
    crowd.push_back(std::move(c));
  }

  size_t before = heap_in_use();
  for (auto& c : crowd) {
    Stalled* p = c.get();
    spawn([p]() -> asio::awaitable<void> { p->ec = co_await p->server->handshake(); });
  }
  run_until_blocked();
  size_t after = heap_in_use();

  for (auto& c : crowd) {
    ASSERT_EQ(c->ec, asio::error::would_block) << c->ec.message();
    int flight = 0;  // the server's answer, waiting on the client's socket
    ASSERT_EQ(::ioctl(c->client_socket.native_handle(), FIONREAD, &flight), 0);
    EXPECT_GT(flight, 0) << "the server has not answered the hello";
  }
  size_t per_handshake = after > before ? (after - before) / kStalled : 0;
  // The handshake's own state is about 37 KiB with OpenSSL 3.0 (a 21 KiB
  // message buffer, the transcript, keys); the two record buffers held on
  // top of it would make about 70.
  EXPECT_LT(per_handshake, 48u * 1024) << "heap held per stalled handshake";
  for (auto& c : crowd) {
    c->server.reset();  // before its socket closes
  }
}

// ---------------------------------------------------------------------------
// Data

TEST_F(TlsStreamTest, SmallMessagesEchoBothWays) {
  establish();
  send(*client_, *server_, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  send(*server_, *client_, "HTTP/1.1 204 No Content\r\n\r\n");
  send(*client_, *server_, "x");
}

// Several MiB each way at once (more than any socket or TLS buffer), the
// client writing and reading concurrently on one stream, both ends writing
// gathered pieces of every size around the record size.
TEST_F(TlsStreamTest, LargeDataEchoesFullDuplexThroughGatheredPieces) {
  establish();
  const std::string data = pattern(6 * 1024 * 1024 + 12345);
  std::string echoed;
  error_code client_write_ec;
  error_code client_read_ec;
  error_code server_ec;

  spawn([&]() -> asio::awaitable<void> {
    static constexpr size_t kSizes[] = {1,     7,     300, 16384, 5,     70000, 2,
                                        40000, 16383, 9,   16385, 65536, 3,     1000};
    size_t off = 0;
    size_t k = 0;
    while (off < data.size()) {
      std::vector<asio::const_buffer> pieces;
      size_t batch = 0;
      for (int j = 0; j < 4 && off < data.size(); ++j) {
        size_t n = std::min(kSizes[k++ % std::size(kSizes)], data.size() - off);
        pieces.emplace_back(data.data() + off, n);
        off += n;
        batch += n;
      }
      auto [ec, n] = co_await client_->write(pieces);
      if (ec || n != batch) {
        client_write_ec = ec ? ec : asio::error::message_size;
        co_return;
      }
    }
  });
  spawn([&]() -> asio::awaitable<void> {
    client_read_ec = co_await read_exactly(*client_, echoed, data.size());
  });
  spawn([&]() -> asio::awaitable<void> {
    // Echo each read back as three pieces: a small head, the middle, a
    // two-byte tail (the shape of head + data + CRLF).
    std::vector<char> buf(48 * 1024);
    size_t total = 0;
    while (total < data.size()) {
      auto [ec, n] = co_await server_->read_some(asio::buffer(buf));
      if (ec) {
        server_ec = ec;
        co_return;
      }
      size_t head = std::min<size_t>(n, 5);
      size_t tail = std::min<size_t>(n - head, 2);
      std::vector<asio::const_buffer> pieces{asio::buffer(buf.data(), head),
                                             asio::buffer(buf.data() + head, n - head - tail),
                                             asio::buffer(buf.data() + n - tail, tail)};
      auto [wec, wn] = co_await server_->write(pieces);
      if (wec || wn != n) {
        server_ec = wec ? wec : asio::error::message_size;
        co_return;
      }
      total += n;
    }
  });
  run();
  EXPECT_FALSE(client_write_ec) << client_write_ec.message();
  EXPECT_FALSE(client_read_ec) << client_read_ec.message();
  EXPECT_FALSE(server_ec) << server_ec.message();
  ASSERT_EQ(echoed.size(), data.size());
  EXPECT_TRUE(echoed == data) << "echoed bytes differ";
}

TEST_F(TlsStreamTest, Tls12ConnectionCarriesLargeData) {
  ClientOptions o = h2_client();
  o.max_version = TLS1_2_VERSION;
  establish(o);
  EXPECT_EQ(protocol_version(server_->native_handle()), "TLSv1.2");
  send(*server_, *client_, pattern(3 * 1024 * 1024, 2));
  send(*client_, *server_, pattern(1024 * 1024, 3));
}

TEST_F(TlsStreamTest, ManySmallPiecesGoOutAsOneRecord) {
  establish();
  Wire wire;
  wire.watch(server_->native_handle());
  std::string expected;
  std::vector<std::string> headers;
  for (int i = 0; i < 100; ++i) {
    headers.push_back("x-header-" + std::to_string(i) + ": v\r\n");
  }
  std::vector<asio::const_buffer> pieces;
  for (const auto& h : headers) {
    pieces.push_back(asio::buffer(h));
    expected += h;
  }
  ASSERT_LT(expected.size(), kRecord);
  std::string got;
  server_writes(pieces, got);
  EXPECT_EQ(got, expected);
  EXPECT_EQ(wire.app_records_sent, 1);
}

TEST_F(TlsStreamTest, HeadChunkLineDataAndCrlfFillRecordsWithoutGaps) {
  establish();
  Wire wire;
  wire.watch(server_->native_handle());
  const std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::string body = pattern(100000, 4);
  const std::string line = "186a0\r\n";
  std::vector<asio::const_buffer> pieces{asio::buffer(head), asio::buffer(line), asio::buffer(body),
                                         asio::buffer("\r\n", 2), asio::buffer("0\r\n\r\n", 5)};
  size_t total = asio::buffer_size(pieces);
  std::string got;
  server_writes(pieces, got);
  EXPECT_EQ(got, head + line + body + "\r\n0\r\n\r\n");
  // Every record full but the last: as few records (and send calls) as
  // the bytes allow.
  EXPECT_EQ(static_cast<size_t>(wire.app_records_sent), (total + kRecord - 1) / kRecord);
}

TEST_F(TlsStreamTest, SinglePiecesAreSentWithoutStaging) {
  establish();
  const std::string big = pattern(1024 * 1024, 5);
  std::string got;
  server_writes({asio::buffer(big)}, got);
  EXPECT_EQ(got, big);
  EXPECT_EQ(server_->staging_capacity(), 0u);
  send(*server_, *client_, "small");
  EXPECT_EQ(server_->staging_capacity(), 0u);
}

TEST_F(TlsStreamTest, ReleaseBuffersFreesStagingAndLeavesTheStreamUsable) {
  establish();
  std::string got;
  server_writes({asio::buffer("a", 1), asio::buffer("b", 1)}, got);
  EXPECT_EQ(got, "ab");
  EXPECT_EQ(server_->staging_capacity(), kRecord);
  server_->release_buffers();
  client_->release_buffers();
  EXPECT_EQ(server_->staging_capacity(), 0u);
  EXPECT_FALSE(server_->has_buffered_data());
  send(*client_, *server_, "after release");
  server_writes({asio::buffer("c", 1), asio::buffer("d", 1)}, got);
  EXPECT_EQ(got, "cd");
  send(*server_, *client_, pattern(200000, 6));
}

// The write is parked mid-flush of the staging buffer (the client reads
// nothing yet); an idle-time release must not free it under the write.
TEST_F(TlsStreamTest, ReleaseBuffersDuringAGatheredWriteKeepsTheStagingBuffer) {
  establish();
  const std::string data = pattern(8 * 1024 * 1024, 8);
  std::vector<asio::const_buffer> pieces;
  for (size_t off = 0; off < data.size(); off += 1000) {
    pieces.emplace_back(data.data() + off, std::min<size_t>(1000, data.size() - off));
  }
  TlsStream::IoResult w{asio::error::would_block, 0};
  spawn([&]() -> asio::awaitable<void> { w = co_await server_->write(pieces); });
  run_until_blocked();
  ASSERT_EQ(std::get<0>(w), asio::error::would_block) << "the write must be pending";
  server_->release_buffers();
  EXPECT_EQ(server_->staging_capacity(), kRecord);
  std::string got;
  error_code read_ec;
  spawn([&]() -> asio::awaitable<void> {
    read_ec = co_await read_exactly(*client_, got, data.size());
  });
  run();
  EXPECT_EQ(w, (TlsStream::IoResult{error_code{}, data.size()}));
  EXPECT_FALSE(read_ec);
  EXPECT_TRUE(got == data) << "bytes differ";
  server_->release_buffers();
  EXPECT_EQ(server_->staging_capacity(), 0u);
}

// RFC 6066 4: a client that asked for 1 KiB records gets them, and the
// staging buffer shrinks to one record.
TEST_F(TlsStreamTest, NegotiatedMaxFragmentLengthSizesTheGatheredRecords) {
  connect();
  SslPtr client_ssl = make_client(h2_client());
  ASSERT_EQ(SSL_set_tlsext_max_fragment_length(client_ssl.get(), TLSEXT_max_fragment_length_1024),
            1);
  server_ = std::make_unique<TlsStream>(server_socket_, contexts_->new_ssl());
  client_ = std::make_unique<TlsStream>(client_socket_, std::move(client_ssl));
  error_code server_ec;
  error_code client_ec;
  spawn([&]() -> asio::awaitable<void> { server_ec = co_await server_->handshake(); });
  spawn([&]() -> asio::awaitable<void> { client_ec = co_await client_->handshake(); });
  run();
  ASSERT_FALSE(server_ec);
  ASSERT_FALSE(client_ec);
  Wire wire;
  wire.watch(server_->native_handle());
  const std::string body = pattern(5000, 9);
  std::string got;
  server_writes(
      {asio::buffer("HTTP/1.1 200 OK\r\n\r\n", 19), asio::buffer(body), asio::buffer("\r\n", 2)},
      got);
  EXPECT_EQ(got, "HTTP/1.1 200 OK\r\n\r\n" + body + "\r\n");
  EXPECT_EQ(server_->staging_capacity(), 1024u);
  EXPECT_EQ(wire.app_records_sent, static_cast<int>((19 + body.size() + 2 + 1023) / 1024));
}

TEST_F(TlsStreamTest, EmptyBuffersCompleteAtOnce) {
  establish();
  TlsStream::IoResult read{asio::error::would_block, 1};
  TlsStream::IoResult single{asio::error::would_block, 1};
  TlsStream::IoResult gathered{asio::error::would_block, 1};
  spawn([&]() -> asio::awaitable<void> {
    read = co_await server_->read_some(asio::mutable_buffer());
    single = co_await server_->write(asio::const_buffer());
    gathered = co_await server_->write(std::vector<asio::const_buffer>(3));
  });
  run();
  EXPECT_EQ(read, (TlsStream::IoResult{error_code{}, 0}));
  EXPECT_EQ(single, (TlsStream::IoResult{error_code{}, 0}));
  EXPECT_EQ(gathered, (TlsStream::IoResult{error_code{}, 0}));
}

// OpenSSL reads ahead of the record it returns: the socket may be empty
// while records wait in OpenSSL's buffer.
TEST_F(TlsStreamTest, BufferedDataIsReportedWhenTheSocketIsDrained) {
  establish();
  send(*server_, *client_, "drain tickets");  // the client reads its session tickets
  spawn([&]() -> asio::awaitable<void> {
    for (const char* m : {"one.", "two.", "three."}) {
      co_await client_->write(asio::buffer(std::string_view(m)));  // one record each
    }
  });
  run();
  EXPECT_FALSE(server_->has_buffered_data());  // nothing read yet
  auto [ec, n] = read_once(*server_, 4);
  ASSERT_FALSE(ec);
  EXPECT_EQ(n, 4u);
  EXPECT_TRUE(server_->has_buffered_data());
  std::string rest;
  error_code rest_ec;
  spawn([&]() -> asio::awaitable<void> { rest_ec = co_await read_exactly(*server_, rest, 10); });
  run();
  EXPECT_FALSE(rest_ec);
  EXPECT_EQ(rest, "two.three.");
  EXPECT_FALSE(server_->has_buffered_data());
}

// TLS 1.3 KeyUpdate (RFC 8446 4.6.3) asking for one back, from either side,
// in the middle of the data.
TEST_F(TlsStreamTest, KeyUpdatesMidStreamAreSurvived) {
  establish();
  Wire server_wire;
  Wire client_wire;
  server_wire.watch(server_->native_handle());
  client_wire.watch(client_->native_handle());
  send(*client_, *server_, "before");

  ASSERT_EQ(SSL_key_update(client_->native_handle(), SSL_KEY_UPDATE_REQUESTED), 1);
  send(*client_, *server_, "after the client's update");
  send(*server_, *client_, "answer");
  EXPECT_EQ(server_wire.key_updates_received, 1);
  EXPECT_EQ(server_wire.key_updates_sent, 1);

  ASSERT_EQ(SSL_key_update(server_->native_handle(), SSL_KEY_UPDATE_REQUESTED), 1);
  send(*server_, *client_, pattern(100000, 7));
  send(*client_, *server_, "answer");
  EXPECT_EQ(server_wire.key_updates_sent, 2);
  EXPECT_EQ(server_wire.key_updates_received, 2);
  EXPECT_EQ(client_wire.key_updates_received, 2);
}

// ---------------------------------------------------------------------------
// Ends

TEST_F(TlsStreamTest, CloseNotifyGivesACleanEofBothWays) {
  establish();
  send(*client_, *server_, "bye");
  shutdown(*client_);
  auto [ec, n] = read_once(*server_);
  EXPECT_EQ(ec, asio::error::eof);
  EXPECT_FALSE(server_->truncated());
  shutdown(*server_);  // answers with its own close_notify
  EXPECT_NE(SSL_get_shutdown(server_->native_handle()) & SSL_SENT_SHUTDOWN, 0);
  auto [cec, cn] = read_once(*client_);
  EXPECT_EQ(cec, asio::error::eof);
  EXPECT_FALSE(client_->truncated());
}

TEST_F(TlsStreamTest, TcpCloseWithoutCloseNotifyIsATruncatedEof) {
  establish();
  send(*client_, *server_, "partial");
  // The client reads its session tickets: a socket closed with unread data
  // sends RST, not FIN.
  send(*server_, *client_, "response");
  client_.reset();
  client_socket_.close();  // FIN, no close_notify
  auto [ec, n] = read_once(*server_);
  EXPECT_EQ(ec, asio::error::eof);
  EXPECT_TRUE(server_->truncated());
  shutdown(*server_);  // nothing to say to a vanished peer; must not hang
  EXPECT_EQ(SSL_get_shutdown(server_->native_handle()), SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
}

TEST_F(TlsStreamTest, PeerResetIsAConnectionResetThatFailsTheStream) {
  establish();
  client_.reset();
  client_socket_.set_option(asio::socket_base::linger(true, 0));
  client_socket_.close();  // RST
  auto [ec, n] = read_once(*server_);
  EXPECT_EQ(ec, asio::error::connection_reset);
  EXPECT_FALSE(server_->truncated());
  TlsStream::IoResult w{asio::error::would_block, 0};
  spawn([&]() -> asio::awaitable<void> { w = co_await server_->write(asio::buffer("x", 1)); });
  run();
  EXPECT_EQ(std::get<0>(w), asio::error::connection_reset);
}

// Part of a record and a reset in one edge, while a read waits: the read
// must end at once, as a reset (not a truncated end: the check that ends
// the wait must leave the socket's error for the read).
TEST_F(TlsStreamTest, PeerResetAfterPartOfARecordIsAConnectionReset) {
  establish();
  ASSERT_TRUE(util::enable_inq(server_socket_.native_handle()));  // as ward's sockets
  TlsStream::IoResult result{asio::error::would_block, 0};
  std::vector<char> buf(1024);
  spawn(
      [&]() -> asio::awaitable<void> { result = co_await server_->read_some(asio::buffer(buf)); });
  run_until_blocked();
  ASSERT_EQ(std::get<0>(result), asio::error::would_block);
  client_.reset();
  ASSERT_TRUE(reset_after(std::string("\x17\x03\x03\x00\x40\x00\x00", 7)))
      << "the read still waits 5 s after the reset";
  EXPECT_EQ(std::get<0>(result), asio::error::connection_reset);
  EXPECT_FALSE(server_->truncated());
}

TEST_F(TlsStreamTest, WritingToAResetPeerIsAnError) {
  establish();
  client_.reset();
  client_socket_.set_option(asio::socket_base::linger(true, 0));
  client_socket_.close();  // RST: the server learns on its next send
  TlsStream::IoResult w{asio::error::would_block, 0};
  const std::string big = pattern(4 * 1024 * 1024);
  spawn([&]() -> asio::awaitable<void> { w = co_await server_->write(asio::buffer(big)); });
  run();
  error_code ec = std::get<0>(w);
  EXPECT_TRUE(ec == asio::error::broken_pipe || ec == asio::error::connection_reset)
      << ec.message();
}

// send(2) on a socket whose sending side is shut down fails with EPIPE,
// which raises SIGPIPE unless the send says MSG_NOSIGNAL; this test binary
// does not ignore SIGPIPE, so it would die here.
TEST_F(TlsStreamTest, BrokenPipeIsAnErrorNotASignal) {
  establish();
  server_socket_.shutdown(tcp::socket::shutdown_send);
  TlsStream::IoResult w{asio::error::would_block, 0};
  spawn([&]() -> asio::awaitable<void> { w = co_await server_->write(asio::buffer("x", 1)); });
  run();
  EXPECT_EQ(std::get<0>(w), asio::error::broken_pipe);
}

TEST_F(TlsStreamTest, CancelDuringAPendingReadCompletesAbortedAndKeepsTheStream) {
  establish();
  TlsStream::IoResult result{asio::error::would_block, 0};
  std::vector<char> buf(100);
  spawn(
      [&]() -> asio::awaitable<void> { result = co_await server_->read_some(asio::buffer(buf)); });
  run_until_blocked();
  ASSERT_EQ(std::get<0>(result), asio::error::would_block) << "the read must be pending";
  server_socket_.cancel();  // what the session's deadline does
  run();
  EXPECT_EQ(std::get<0>(result), asio::error::operation_aborted);
  // Nothing was half-done: the next read works.
  send(*client_, *server_, "still here");
}

// The deadline fired while no wait was pending (its socket.cancel() found
// nothing: the socket had just become ready). The stream's next wait must
// not start, or nothing would ever end it.
TEST_F(TlsStreamTest, ExpiredDeadlineEndsTheNextWaitItsCancelMissed) {
  establish();
  util::Deadline deadline(io_.get_executor());
  deadline.on_expire([] {});  // stands for a cancel that came too early
  deadline.expires_after(0s);
  run();
  ASSERT_TRUE(deadline.expired());
  server_->set_deadline(&deadline);
  auto [ec, n] = read_once(*server_);  // no data: it would wait for good
  EXPECT_EQ(ec, asio::error::operation_aborted);
  server_->set_deadline(nullptr);
  send(*client_, *server_, "the read was never started");
}

TEST_F(TlsStreamTest, CancelDuringABlockedWriteFailsTheStreamWithoutHanging) {
  establish();
  const std::string big = pattern(32 * 1024 * 1024);  // far beyond both socket buffers
  TlsStream::IoResult result{asio::error::would_block, 0};
  spawn([&]() -> asio::awaitable<void> { result = co_await server_->write(asio::buffer(big)); });
  run_until_blocked();  // the client reads nothing: the write waits for room
  ASSERT_EQ(std::get<0>(result), asio::error::would_block) << "the write must be pending";
  server_socket_.cancel();
  run();
  EXPECT_EQ(std::get<0>(result), asio::error::operation_aborted);
  // A record may be half sent: nothing else may be written, and shutdown
  // does not try close_notify.
  TlsStream::IoResult again{asio::error::would_block, 0};
  spawn([&]() -> asio::awaitable<void> { again = co_await server_->write(asio::buffer("x", 1)); });
  run();
  EXPECT_EQ(std::get<0>(again), asio::error::operation_aborted);
  shutdown(*server_);
  EXPECT_EQ(SSL_get_shutdown(server_->native_handle()), SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
}

TEST_F(TlsStreamTest, GarbageAfterTheHandshakeIsAProtocolError) {
  establish();
  // A well-formed record header with an undecryptable body.
  std::string record("\x17\x03\x03\x00\x20", 5);
  record += std::string(32, 'x');
  asio::write(client_socket_, asio::buffer(record));
  auto [ec, n] = read_once(*server_);
  EXPECT_EQ(ec, StreamError::protocol_error);
  EXPECT_FALSE(server_->openssl_reason().empty());
  EXPECT_EQ(ERR_peek_error(), 0u);
  auto [again, m] = read_once(*server_);
  EXPECT_EQ(again, StreamError::protocol_error);
}

TEST_F(TlsStreamTest, WriteAfterShutdownIsRefused) {
  establish();
  shutdown(*server_);
  TlsStream::IoResult w{asio::error::would_block, 0};
  spawn([&]() -> asio::awaitable<void> { w = co_await server_->write(asio::buffer("late", 4)); });
  run();
  EXPECT_EQ(std::get<0>(w), asio::error::shut_down);
}

TEST_F(TlsStreamTest, ClosedSocketIsNeverTouched) {
  establish();
  server_socket_.close();
  auto [ec, n] = read_once(*server_);
  EXPECT_EQ(ec, asio::error::bad_descriptor);
  shutdown(*server_);  // no close_notify on a descriptor that is not ours
  EXPECT_EQ(SSL_get_shutdown(server_->native_handle()), SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
}

// ---------------------------------------------------------------------------
// poll_idle: a client connection resting in an upstream pool

bool socket_readable(tcp::socket& s) {
  char byte;
  return ::recv(s.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

TEST_F(TlsStreamTest, PollIdleTakesSessionTicketsAndStaysIdle) {
  establish();
  // TLS 1.3: the server's tickets follow the handshake. Readable, yet not
  // a byte of application data.
  ASSERT_TRUE(socket_readable(client_socket_));
  SSL* ssl = client_->native_handle();
  EXPECT_EQ(SSL_SESSION_is_resumable(SSL_get0_session(ssl)), 0);
  EXPECT_TRUE(client_->poll_idle());
  EXPECT_FALSE(socket_readable(client_socket_));
  EXPECT_EQ(SSL_SESSION_is_resumable(SSL_get0_session(ssl)), 1);  // a session to reuse
  EXPECT_TRUE(client_->poll_idle());                              // nothing at all: idle too
  // And the stream carries the next exchange.
  send(*client_, *server_, "GET / HTTP/1.1\r\n\r\n");
  send(*server_, *client_, "HTTP/1.1 204 No Content\r\n\r\n");
  EXPECT_TRUE(client_->poll_idle());
}

TEST_F(TlsStreamTest, PollIdleRefusesApplicationDataNobodyAskedFor) {
  establish();
  spawn([&]() -> asio::awaitable<void> { co_await server_->write(asio::buffer("HTTP/1.1", 8)); });
  run();
  EXPECT_FALSE(client_->poll_idle());
}

TEST_F(TlsStreamTest, PollIdleSeesCloseNotify) {
  establish();
  shutdown(*server_);
  EXPECT_FALSE(client_->poll_idle());
}

TEST_F(TlsStreamTest, PollIdleSeesATcpCloseWithoutCloseNotify) {
  establish();
  server_.reset();
  server_socket_.close();  // FIN, no close_notify
  EXPECT_FALSE(client_->poll_idle());
}

// ---------------------------------------------------------------------------
// The socket BIO

// Waits (2 s at most) until `s` has `want` bytes queued; returns what it has.
int wait_queued(tcp::socket& s, int want) {
  int n = 0;
  for (int i = 0; i < 200; ++i) {
    if (::ioctl(s.native_handle(), FIONREAD, &n) != 0 || n >= want) {
      break;
    }
    pollfd p{s.native_handle(), POLLIN, 0};
    ::poll(&p, 1, 10);
  }
  return n;
}

// Within one OpenSSL call, once a read has emptied the socket the next one
// fails with EAGAIN without a recv(2): the handshake reads the ClientHello,
// writes its flight and reads on for the Finished that cannot have come yet.
// What arrived meanwhile stays in the kernel (the stream's wait sees its
// edge), and the stream's clearing of the flag before its next call reads it.
TEST_F(TlsStreamTest, SocketBioSkipsTheReadThatWouldFindTheSocketEmpty) {
  connect();
  ASSERT_TRUE(util::enable_inq(server_socket_.native_handle()));
  BioEnd end{server_socket_.native_handle(), false};
  BIO* bio = BIO_new(socket_bio_method());
  ASSERT_NE(bio, nullptr);
  BIO_set_data(bio, &end);
  BIO_set_init(bio, 1);
  char buf[16];

  asio::write(client_socket_, asio::buffer("abc", 3));
  ASSERT_EQ(wait_queued(server_socket_, 3), 3);
  EXPECT_EQ(BIO_read(bio, buf, sizeof buf), 3);
  EXPECT_TRUE(end.drained);  // TCP_INQ: nothing left

  asio::write(client_socket_, asio::buffer("de", 2));
  ASSERT_EQ(wait_queued(server_socket_, 2), 2);
  EXPECT_EQ(BIO_read(bio, buf, sizeof buf), -1);
  EXPECT_TRUE(BIO_should_read(bio));
  EXPECT_EQ(wait_queued(server_socket_, 2), 2);  // not read

  end.drained = false;  // as before the stream's next OpenSSL call
  EXPECT_EQ(BIO_read(bio, buf, sizeof buf), 2);
  EXPECT_EQ(std::string(buf, 2), "de");
  BIO_free(bio);
}

TEST(StreamErrorTest, CategoryIsTlsAndMessagesAreDistinct) {
  error_code a = StreamError::handshake_failed;
  error_code b = StreamError::protocol_error;
  EXPECT_STREQ(a.category().name(), "tls");
  EXPECT_NE(a.message(), b.message());
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace ward::tls
