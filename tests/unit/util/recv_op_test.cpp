#include "proxy/util/recv_op.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>

// util::async_recv on real loopback TCP sockets. It replaces
// async_read_some on every plain read of a connection, so what a user relies
// on is that it reads the same: bytes in order whatever the buffer size,
// bytes that come after a read that emptied the socket (the read after it
// waits for the kernel's report instead of trying: it must still get them),
// the end of the stream, also when it came with the last bytes, and a pending read ended by
// cancel() and close() (deadlines and drains end waits that way), or dropped unrun with its
// io_context.

namespace ward::util {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

struct Result {
  error_code ec;
  size_t n = 0;
};

class RecvOpTest : public ::testing::Test {
 protected:
  // TCP_INQ on the listener, as ward's are: the accepted socket inherits it.
  RecvOpTest() : server_(io_), client_(io_) {
    tcp::acceptor acceptor(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    EXPECT_TRUE(enable_inq(acceptor.native_handle()));
    client_.connect(acceptor.local_endpoint());
    acceptor.accept(server_);
  }

  // Starts a read of up to `size` bytes into buf_.
  void start(size_t size) {
    result_.reset();
    async_recv(server_, asio::buffer(buf_.data(), size), [this](const error_code& ec, size_t n) {
      result_ = Result{ec, n};
    });
  }
  // Runs the loop until the read completes, for at most 5 s.
  std::optional<Result> finish() {
    wait_for([this] { return result_.has_value(); });
    return result_;
  }
  std::string read(size_t size) {
    start(size);
    auto r = finish();
    EXPECT_TRUE(r.has_value()) << "the read did not complete in 5 s";
    if (!r || r->ec) {
      return r ? "error: " + r->ec.message() : "(none)";
    }
    return std::string(buf_.data(), r->n);
  }
  void send(const std::string& s) { asio::write(client_, asio::buffer(s)); }
  // Runs what is ready now. (A loop that ran out of work stops, and runs
  // nothing until restarted.)
  void poll() {
    io_.restart();
    io_.poll();
  }
  // A read waits before "abc" comes (as a proxy's reads do); then "xyz" is
  // sent and the next read starts. Returns the bytes the kernel still holds
  // right after that start: 3 when the read waits for epoll's report, 0
  // when it was tried at once. Either way it must end with "xyz".
  int unread_when_the_next_read_starts() {
    start(buf_.size());
    poll();
    send("abc");
    auto first = finish();
    EXPECT_TRUE(first && !first->ec && first->n == 3);
    send("xyz");
    EXPECT_EQ(unread(3), 3);
    start(buf_.size());
    int n = -1;
    EXPECT_EQ(::ioctl(server_.native_handle(), FIONREAD, &n), 0);
    auto second = finish();
    EXPECT_TRUE(second && !second->ec);
    if (second && !second->ec) {
      EXPECT_EQ(std::string(buf_.data(), second->n), "xyz");
    }
    return n;
  }
  // The client aborts (SO_LINGER 0: a reset, not a FIN); returns once the
  // server's socket has taken it (bounded by 5 s), without reading it.
  void reset_client() {
    client_.set_option(asio::socket_base::linger(true, 0));
    client_.close();
    pollfd p{server_.native_handle(), POLLIN, 0};
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    do {
      ::poll(&p, 1, 10);
    } while ((p.revents & POLLERR) == 0 && std::chrono::steady_clock::now() < deadline);
    ASSERT_TRUE(p.revents & POLLERR) << "the reset never reached the server's socket";
  }
  // A new connection in place of the reset one.
  void reconnect() {
    tcp::acceptor acceptor(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    ASSERT_TRUE(enable_inq(acceptor.native_handle()));
    server_.close();
    client_ = tcp::socket(io_);
    client_.connect(acceptor.local_endpoint());
    acceptor.accept(server_);
  }
  // Runs the loop until done() (for at most 5 s).
  template <typename Done>
  void wait_for(Done done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      io_.run_for(std::chrono::milliseconds(10));
      io_.restart();
    }
  }
  // Bytes the kernel holds for the server socket, once `want` are there
  // (loopback delivers at once; bounded by 5 s all the same).
  int unread(int want) {
    int n = -1;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    do {
      EXPECT_EQ(::ioctl(server_.native_handle(), FIONREAD, &n), 0);
    } while (n != want && std::chrono::steady_clock::now() < deadline);
    return n;
  }

  asio::io_context io_;
  tcp::socket server_;
  tcp::socket client_;
  std::array<char, 4096> buf_{};
  std::optional<Result> result_;
};

TEST_F(RecvOpTest, ReadsWhatCame) {
  send("GET / HTTP/1.1\r\n\r\n");
  EXPECT_EQ(read(buf_.size()), "GET / HTTP/1.1\r\n\r\n");
}

// The first read empties the socket, which the reactor is told; the next
// read starts before the next bytes come, and must get them when they do.
TEST_F(RecvOpTest, BytesAfterAReadThatEmptiedTheSocketArrive) {
  send("abc");
  EXPECT_EQ(read(buf_.size()), "abc");
  start(buf_.size());
  poll();
  EXPECT_FALSE(result_) << "a read completed with nothing to read";
  send("defg");
  auto r = finish();
  ASSERT_TRUE(r) << "the bytes sent after a short read were never reported";
  ASSERT_FALSE(r->ec) << r->ec.message();
  EXPECT_EQ(std::string(buf_.data(), r->n), "defg");
  // And once more, with the read started after the bytes came.
  send("hij");
  EXPECT_EQ(read(buf_.size()), "hij");
}

// What async_recv is for: a read that emptied the socket (TCP_INQ counted
// nothing left) makes the next read leave the socket alone until epoll
// reports it (Asio's async_read_some would try a recv at once, which mostly
// fails with EAGAIN). Seen from outside: bytes that are already there when
// the next read starts stay in the kernel until the loop runs.
TEST_F(RecvOpTest, AfterAReadThatEmptiedTheSocketTheNextWaitsForEpoll) {
  if (!WARD_RECV_OP) {
    GTEST_SKIP() << "this Boost falls back to async_read_some (proxy/util/recv_op.h)";
  }
  EXPECT_EQ(unread_when_the_next_read_starts(), 3)
      << "the read was tried before epoll reported the socket";
}

// Bytes and the FIN in one edge (a "Connection: close" response, a client
// that half-closes after its request): the read that takes the bytes must
// not tell the reactor the socket is empty, or the next read would wait for
// an edge that never comes instead of reading the end.
TEST_F(RecvOpTest, BytesAndTheEndInOneReportStillEndTheStream) {
  start(buf_.size());
  poll();
  send("last words");
  client_.shutdown(tcp::socket::shutdown_send);
  ASSERT_EQ(unread(10), 10);
  auto first = finish();
  ASSERT_TRUE(first && !first->ec);
  ASSERT_EQ(std::string(buf_.data(), first->n), "last words");
  start(buf_.size());
  auto end = finish();
  ASSERT_TRUE(end) << "the end of the stream was never read";
  EXPECT_EQ(end->ec, asio::error::eof);
}

// A socket without TCP_INQ (a kernel before 4.18) reports nothing, and its
// reads go on as Asio's do: each is tried at once.
TEST_F(RecvOpTest, WithoutInqEveryReadIsTriedAtOnce) {
  int zero = 0;
  ASSERT_EQ(::setsockopt(server_.native_handle(), IPPROTO_TCP, TCP_INQ, &zero, sizeof zero), 0);
  EXPECT_EQ(unread_when_the_next_read_starts(), 0)
      << "the read waited although the kernel said nothing";
}

// A read that fills its buffer leaves bytes queued: the next read is tried
// at once, as Asio's is.
TEST_F(RecvOpTest, AfterAFullReadTheNextIsTriedAtOnce) {
  start(4);
  poll();
  send("0123456789");
  auto first = finish();
  ASSERT_TRUE(first && !first->ec);
  ASSERT_EQ(first->n, 4u);
  ASSERT_EQ(unread(6), 6);
  start(4);
  EXPECT_EQ(unread(2), 2) << "the read waited although bytes were left";
  auto second = finish();
  ASSERT_TRUE(second && !second->ec);
  EXPECT_EQ(std::string(buf_.data(), second->n), "4567");
}

// A read that fills its buffer leaves the rest for the next read.
TEST_F(RecvOpTest, SmallBuffersReadEverythingInOrder) {
  send("0123456789");
  std::string got;
  while (got.size() < 10) {
    std::string piece = read(4);
    ASSERT_FALSE(piece.empty());
    ASSERT_LE(piece.size(), 4u);
    if (piece.starts_with("error")) {
      FAIL() << piece;
    }
    got += piece;
  }
  EXPECT_EQ(got, "0123456789");
}

TEST_F(RecvOpTest, TheEndOfTheStreamIsEof) {
  send("last");
  client_.shutdown(tcp::socket::shutdown_send);
  EXPECT_EQ(read(buf_.size()), "last");
  start(buf_.size());
  auto r = finish();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->ec, asio::error::eof);
  EXPECT_EQ(r->n, 0u);
}

// Bytes and a reset in one edge (a peer that writes and aborts, or a
// server that closes with a request unread): TCP_INQ counts nothing left
// after the bytes, a reset not being something to read. The next read must
// still fail at once with the reset, not wait for an edge that came already.
TEST_F(RecvOpTest, BytesAndAResetInOneReportStillFailTheNextRead) {
  start(buf_.size());
  poll();
  send("partial");
  reset_client();
  auto first = finish();
  ASSERT_TRUE(first && !first->ec);
  ASSERT_EQ(std::string(buf_.data(), first->n), "partial");
  start(buf_.size());
  auto next = finish();
  ASSERT_TRUE(next) << "the reset was never read: the read waited for another edge";
  EXPECT_EQ(next->ec, asio::error::connection_reset);
}

// The same for the TLS stream's reads: a wait ends the BIO's read of the
// bytes that came with the reset, and the reads that follow are told the
// socket is empty (note_drained, or a wait that says so); they must still
// end, so the stream sees the reset.
TEST_F(RecvOpTest, AfterBytesAndAResetInOneReportTheNextWaitEnds) {
  for (const bool noted : {false, true}) {
    SCOPED_TRACE(noted ? "note_drained, then a wait" : "a wait told the socket is drained");
    if (noted) {
      reconnect();
    }
    std::optional<error_code> waited;
    async_wait_readable(server_, true, [&](const error_code& ec) { waited = ec; });
    poll();
    ASSERT_FALSE(waited);
    send("partial");
    reset_client();
    wait_for([&] { return waited.has_value(); });
    ASSERT_TRUE(waited);
    char tmp[64];
    InqRead r = recv_inq(server_.native_handle(), tmp, sizeof tmp);
    ASSERT_EQ(r.n, 7);
    ASSERT_TRUE(r.empty);
    waited.reset();
    if (noted) {
      note_drained(server_);
    }
    async_wait_readable(server_, !noted, [&](const error_code& ec) { waited = ec; });
    wait_for([&] { return waited.has_value(); });
    ASSERT_TRUE(waited) << "the wait never ended: the reset came in the edge already reported";
    EXPECT_FALSE(*waited);
    r = recv_inq(server_.native_handle(), tmp, sizeof tmp);
    EXPECT_EQ(r.n, -1);
    EXPECT_EQ(errno, ECONNRESET);
  }
}

// cancel() (a deadline) ends a pending read, and the socket still reads
// afterwards; close() ends one too.
TEST_F(RecvOpTest, CancelAndCloseEndAPendingRead) {
  for (const bool close : {false, true}) {
    start(buf_.size());
    poll();
    ASSERT_FALSE(result_);
    if (close) {
      server_.close();
    } else {
      server_.cancel();
    }
    auto r = finish();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->ec, asio::error::operation_aborted);
    if (!close) {
      send("after");
      EXPECT_EQ(read(buf_.size()), "after");
    }
  }
}

TEST_F(RecvOpTest, AClosedSocketFailsAtOnce) {
  server_.close();
  start(buf_.size());
  auto r = finish();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->ec, asio::error::bad_descriptor);
}

TEST_F(RecvOpTest, AnEmptyBufferCompletesAtOnce) {
  start(0);
  auto r = finish();
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->ec);
  EXPECT_EQ(r->n, 0u);
}

// async_wait_readable, what TLS connections wait with: it ends when bytes
// come, at once when they are already there, and with the end of the stream.
TEST_F(RecvOpTest, AWaitEndsWhenBytesCome) {
  std::optional<error_code> waited;
  async_wait_readable(server_, false, [&](const error_code& ec) { waited = ec; });
  poll();
  EXPECT_FALSE(waited) << "a wait ended with nothing to read";
  send("x");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!waited && std::chrono::steady_clock::now() < deadline) {
    io_.run_for(std::chrono::milliseconds(10));
    io_.restart();
  }
  ASSERT_TRUE(waited);
  EXPECT_FALSE(*waited);
  EXPECT_EQ(unread(1), 1) << "a wait must not take bytes";
}

// Bytes already there, and the reactor not told the socket is empty: the
// wait checks at its start, and ends at once.
TEST_F(RecvOpTest, AWaitForBytesAlreadyThereEndsAtOnce) {
  send("already");
  ASSERT_EQ(unread(7), 7);
  poll();  // the edge of those bytes is reported, with no reader
  std::optional<error_code> waited;
  async_wait_readable(server_, false, [&](const error_code& ec) { waited = ec; });
  poll();
  ASSERT_TRUE(waited) << "the wait missed bytes that were already there";
  EXPECT_FALSE(*waited);
}

// The TLS stream's BIO read the socket empty (recv_inq) and tells the
// reactor: a wait then starts without a check and still ends when the next
// bytes come; a FIN counts as something to read.
TEST_F(RecvOpTest, AfterNoteDrainedAWaitEndsWithTheNextBytesOrTheEnd) {
  start(buf_.size());
  poll();
  send("record");
  ASSERT_TRUE(finish());
  for (const bool fin : {false, true}) {
    send(fin ? "last" : "next");
    ASSERT_EQ(unread(4), 4);
    poll();  // reported with no reader: the reactor would try a read now
    char tmp[64];
    InqRead r = recv_inq(server_.native_handle(), tmp, sizeof tmp);
    ASSERT_EQ(r.n, 4);
    ASSERT_TRUE(r.empty);
    note_drained(server_);
    std::optional<error_code> waited;
    async_wait_readable(server_, false, [&](const error_code& ec) { waited = ec; });
    poll();
    EXPECT_FALSE(waited) << "a wait ended with nothing to read";
    if (fin) {
      client_.shutdown(tcp::socket::shutdown_send);
    } else {
      send("more");
    }
    wait_for([&] { return waited.has_value(); });
    ASSERT_TRUE(waited) << (fin ? "the FIN" : "the bytes") << " never ended the wait";
    EXPECT_FALSE(*waited);
    if (!fin) {
      ASSERT_EQ(recv_inq(server_.native_handle(), tmp, sizeof tmp).n, 4);
    }
  }
}

// recv_inq counts a FIN as something left, and says nothing without TCP_INQ.
TEST_F(RecvOpTest, RecvInqCountsTheEndAsSomethingLeft) {
  char tmp[64];
  send("ab");
  client_.shutdown(tcp::socket::shutdown_send);
  ASSERT_EQ(unread(2), 2);
  InqRead r = recv_inq(server_.native_handle(), tmp, sizeof tmp);
  EXPECT_EQ(r.n, 2);
  EXPECT_FALSE(r.empty) << "the FIN is still to be read";
  r = recv_inq(server_.native_handle(), tmp, sizeof tmp);
  EXPECT_EQ(r.n, 0);
}

TEST_F(RecvOpTest, AWaitIsEndedByCancel) {
  std::optional<error_code> waited;
  async_wait_readable(server_, true, [&](const error_code& ec) { waited = ec; });
  poll();
  ASSERT_FALSE(waited);
  server_.cancel();
  poll();
  ASSERT_TRUE(waited);
  EXPECT_EQ(*waited, asio::error::operation_aborted);
}

// Whether an epoll set of this process holds the socket that `fd` named
// (epoll keys a registration on the descriptor number and the file).
bool in_an_epoll_set(int fd, ino_t ino) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    if (std::filesystem::read_symlink(entry.path(), ec).string() != "anon_inode:[eventpoll]") {
      continue;
    }
    std::ifstream info("/proc/self/fdinfo/" + entry.path().filename().string());
    std::string line;
    while (std::getline(info, line)) {
      int tfd = -1;
      unsigned long long inode = 0;
      const char* ino_at = std::strstr(line.c_str(), "ino:");
      if (std::sscanf(line.c_str(), "tfd: %d", &tfd) == 1 && ino_at != nullptr &&
          std::sscanf(ino_at, "ino:%llx", &inode) == 1 && tfd == fd && inode == ino) {
        return true;
      }
    }
  }
  return false;
}

ino_t inode_of(int fd) {
  struct stat st {};
  EXPECT_EQ(::fstat(fd, &st), 0);
  return st.st_ino;
}

// An accepted socket holds the only descriptor of its socket, and ward says
// so (note_sole_descriptor): its close then leaves the removal from epoll to
// close(2) instead of an epoll_ctl(2) first. Made visible with a dup kept
// open, the one case the mark must never be used for: the registration then
// outlives the close until the dup goes too. Without the mark Asio removes
// it at the close.
TEST_F(RecvOpTest, ASoleDescriptorIsClosedWithoutAnEpollCtl) {
  if (!WARD_RECV_OP) {
    GTEST_SKIP() << "Asio's own socket state: Boost 1.81's epoll reactor only";
  }
  const int fd = server_.native_handle();
  const ino_t ino = inode_of(fd);
  ASSERT_TRUE(in_an_epoll_set(fd, ino));
  const int dup_fd = ::dup(fd);
  ASSERT_GE(dup_fd, 0);
  note_sole_descriptor(server_);
  server_.close();
  EXPECT_TRUE(in_an_epoll_set(fd, ino)) << "Asio deregistered it itself";
  ::close(dup_fd);
  EXPECT_FALSE(in_an_epoll_set(fd, ino)) << "the last descriptor's close removes it";

  // The same without the mark: Asio's epoll_ctl removes it at the close.
  tcp::acceptor acceptor(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket client(io_);
  tcp::socket server(io_);
  client.connect(acceptor.local_endpoint());
  acceptor.accept(server);
  const int fd2 = server.native_handle();
  const ino_t ino2 = inode_of(fd2);
  ASSERT_TRUE(in_an_epoll_set(fd2, ino2));
  const int dup2_fd = ::dup(fd2);
  server.close();
  EXPECT_FALSE(in_an_epoll_set(fd2, ino2));
  ::close(dup2_fd);
}

// A worker's teardown destroys its io_context with reads pending: the
// handlers (and what they own) go, unrun.
TEST(RecvOpTeardown, PendingReadsAreDestroyedWithTheirContext) {
  auto owned = std::make_shared<int>(0);
  std::weak_ptr<int> watch = owned;
  bool ran = false;
  std::array<char, 64> buf{};
  {
    asio::io_context io;
    tcp::socket server(io);
    tcp::socket client(io);
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    client.connect(acceptor.local_endpoint());
    acceptor.accept(server);
    async_recv(server, asio::buffer(buf),
               [&ran, o = std::move(owned)](const error_code&, size_t) { ran = true; });
    io.poll();
    ASSERT_FALSE(ran);
    ASSERT_FALSE(watch.expired());
    // The sockets close first (their destructors cancel the read, which
    // is then queued), then the context destroys what is queued.
  }
  EXPECT_FALSE(ran);
  EXPECT_TRUE(watch.expired());
}

}  // namespace
}  // namespace ward::util
