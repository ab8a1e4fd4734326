#include "proxy/server/listen_socket.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

// Sessions do not set TCP_NODELAY themselves: they rely on the accepted
// socket inheriting it from the listening socket. If that ever stops (a
// change here, or a kernel that does not copy it), small responses would
// wait on the client's delayed ACK; this test is what notices.

namespace ward::server {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

TEST(ListenSocket, AcceptedConnectionsHaveNoDelay) {
  asio::io_context io;
  tcp::acceptor acc = open_listen_socket(io, {asio::ip::make_address("127.0.0.1"), 0}, false);
  tcp::socket client(io);
  client.connect(acc.local_endpoint());
  tcp::endpoint peer;
  tcp::socket accepted = acc.accept(peer);

  tcp::no_delay nd;
  accepted.get_option(nd);
  EXPECT_TRUE(nd.value());
  // The peer's address from accept(2) is the client's own.
  EXPECT_EQ(peer, client.local_endpoint());
}

// The same for TCP_INQ, which util::async_recv and the TLS BIO rely on to
// tell the reactor a read emptied the socket (without it they fall back to
// Asio's extra recv per read).
TEST(ListenSocket, AcceptedConnectionsCountWhatIsLeftToRead) {
  asio::io_context io;
  tcp::acceptor acc = open_listen_socket(io, {asio::ip::make_address("127.0.0.1"), 0}, false);
  tcp::socket client(io);
  client.connect(acc.local_endpoint());
  tcp::socket accepted = acc.accept();
  int inq = 0;
  socklen_t len = sizeof inq;
  ASSERT_EQ(::getsockopt(accepted.native_handle(), IPPROTO_TCP, TCP_INQ, &inq, &len), 0);
  EXPECT_EQ(inq, 1);
}

TEST(ListenSocket, ReusePortLetsTwoBindTheSameAddress) {
  asio::io_context io;
  tcp::acceptor first = open_listen_socket(io, {asio::ip::make_address("127.0.0.1"), 0}, true);
  tcp::acceptor second = open_listen_socket(io, first.local_endpoint(), true);
  EXPECT_EQ(first.local_endpoint(), second.local_endpoint());
  // Without SO_REUSEPORT the same bind fails.
  EXPECT_THROW(open_listen_socket(io, first.local_endpoint(), false), boost::system::system_error);
}

}  // namespace
}  // namespace ward::server
