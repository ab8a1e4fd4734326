#include "proxy/server/listen_socket.h"

#include <sys/socket.h>

#include <boost/asio/ip/v6_only.hpp>

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
  acc.bind(ep);
  acc.listen(asio::socket_base::max_listen_connections);
  return acc;
}

}  // namespace ward::server
