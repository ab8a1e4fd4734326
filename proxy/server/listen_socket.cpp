#include "proxy/server/listen_socket.h"

#include <sys/socket.h>

#include <boost/asio/ip/v6_only.hpp>

#include "proxy/util/recv_op.h"

namespace ward::server {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {
using ReusePort = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;
}  // namespace

tcp::acceptor open_listen_socket(asio::io_context& io, const tcp::endpoint& ep, bool reuse_port) {
  tcp::acceptor acc(io);
  acc.open(ep.protocol());
  acc.set_option(asio::socket_base::reuse_address(true));
  if (ep.address().is_v6() && ep.address().is_unspecified()) {
    acc.set_option(asio::ip::v6_only(false));
  }
  if (reuse_port) {
    acc.set_option(ReusePort(true));
  }
  acc.set_option(tcp::no_delay(true));
  // Inherited too: reads learn whether they emptied the socket
  // (util/recv_op.h). A kernel without it (before 4.18) refuses; reads
  // then work as Asio's do.
  util::enable_inq(acc.native_handle());
  acc.bind(ep);
  acc.listen(asio::socket_base::max_listen_connections);
  return acc;
}

}  // namespace ward::server
