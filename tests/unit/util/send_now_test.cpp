#include "proxy/util/send_now.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/error.hpp>
#include <string>
#include <vector>

// send_now on a real socket pair: what a user relies on is that a response
// goes out whole and in order when it fits, that a full socket reports
// would_block (never blocks the worker), that a closed peer reports an error,
// and that drop_front leaves exactly the bytes not yet sent.

namespace ward::util {
namespace {

using boost::asio::const_buffer;

class SendNowTest : public ::testing::Test {
 protected:
  SendNowTest() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds_), 0); }
  ~SendNowTest() override {
    for (int fd : fds_) {
      if (fd >= 0) {
        ::close(fd);
      }
    }
  }

  std::string receive_all_available() {
    std::string out;
    char buf[65536];
    for (;;) {
      ssize_t n = ::recv(fds_[1], buf, sizeof buf, MSG_DONTWAIT);
      if (n <= 0) {
        return out;
      }
      out.append(buf, static_cast<size_t>(n));
    }
  }

  int fds_[2] = {-1, -1};
};

TEST_F(SendNowTest, PiecesThatFitGoOutWholeAndInOrder) {
  std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
  std::vector<const_buffer> pieces{boost::asio::buffer(head), const_buffer(nullptr, 0),
                                   boost::asio::buffer("hello", 5)};
  SentNow sent = send_now(fds_[0], pieces);
  EXPECT_FALSE(sent.ec) << sent.ec.message();
  EXPECT_EQ(sent.bytes, head.size() + 5);
  EXPECT_TRUE(sent.done());
  EXPECT_EQ(receive_all_available(), head + "hello");
}

// Up to kCoalesceMax bytes the pieces are copied together and sent as one;
// above it they go as they are. Either way the bytes arrive in order.
TEST_F(SendNowTest, SmallAndLargeGathersArriveInOrder) {
  for (size_t total :
       {size_t{2}, kCoalesceMax - 1, kCoalesceMax, kCoalesceMax + 1, 3 * kCoalesceMax}) {
    std::string a(total / 3, 'a');
    std::string b(total / 3, 'b');
    std::string c(total - a.size() - b.size(), 'c');
    for (size_t i = 0; i < c.size(); ++i) {
      c[i] = static_cast<char>('0' + i % 10);
    }
    std::vector<const_buffer> pieces{boost::asio::buffer(a), boost::asio::buffer(b),
                                     boost::asio::buffer(c)};
    SentNow sent = send_now(fds_[0], pieces);
    EXPECT_FALSE(sent.ec) << sent.ec.message();
    EXPECT_EQ(sent.bytes, total);
    EXPECT_TRUE(sent.done());
    EXPECT_EQ(receive_all_available(), a + b + c) << total;
  }
}

TEST_F(SendNowTest, AFullSocketReportsWouldBlockInsteadOfWaiting) {
  int small = 4096;
  ASSERT_EQ(::setsockopt(fds_[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
  std::string big(1 << 20, 'x');
  SentNow sent;
  size_t total = 0;
  // Fill the socket: each call takes a part, or nothing once it is full.
  for (int i = 0; i < 1000 && !sent.ec; ++i) {
    std::vector<const_buffer> pieces{boost::asio::buffer(big)};
    sent = send_now(fds_[0], pieces);
    EXPECT_FALSE(sent.done()) << "a part is left for the async write";
    total += sent.bytes;
  }
  EXPECT_EQ(sent.ec, boost::asio::error::would_block);
  EXPECT_GT(total, 0u);
  EXPECT_LT(total, big.size() * 1000);
}

TEST_F(SendNowTest, AClosedPeerIsAnErrorNotWouldBlock) {
  ::close(fds_[1]);
  fds_[1] = -1;
  std::vector<const_buffer> pieces{boost::asio::buffer("x", 1)};
  SentNow sent = send_now(fds_[0], pieces);
  EXPECT_EQ(sent.bytes, 0u);
  EXPECT_TRUE(sent.ec);
  EXPECT_NE(sent.ec, boost::asio::error::would_block);
  EXPECT_TRUE(sent.done()) << "a failed connection is not retried asynchronously";
}

TEST_F(SendNowTest, TooManyPiecesAreLeftToTheAsyncWrite) {
  std::vector<const_buffer> pieces(65, boost::asio::buffer("ab", 2));
  SentNow sent = send_now(fds_[0], pieces);
  EXPECT_EQ(sent.bytes, 0u);
  EXPECT_EQ(sent.ec, boost::asio::error::would_block);
  EXPECT_FALSE(sent.done());
  EXPECT_EQ(receive_all_available(), "");
}

std::string joined(const std::vector<const_buffer>& pieces) {
  std::string out;
  for (const auto& p : pieces) {
    out.append(static_cast<const char*>(p.data()), p.size());
  }
  return out;
}

TEST(DropFrontTest, LeavesExactlyTheBytesAfterN) {
  const std::string a = "abc", b = "", c = "defg", d = "h";
  const std::string all = a + b + c + d;
  for (size_t n = 0; n <= all.size(); ++n) {
    std::vector<const_buffer> pieces{boost::asio::buffer(a), boost::asio::buffer(b),
                                     boost::asio::buffer(c), boost::asio::buffer(d)};
    drop_front(pieces, n);
    EXPECT_EQ(joined(pieces), all.substr(n)) << n;
    if (n > 0 && n < all.size()) {
      EXPECT_GT(pieces.front().size(), 0u) << "no empty piece in front after a cut: " << n;
    }
  }
}

}  // namespace
}  // namespace ward::util
