#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace ward::server {

// Binds and listens one acceptor of a listener. reuse_port sets SO_REUSEPORT,
// so that every worker binds the same address and the kernel spreads
// connections over them. An unspecified IPv6 address is dual-stack.
//
// The listening socket carries TCP_NODELAY, which Linux copies to every
// accepted connection: a proxy's small writes (a response head, the last
// bytes of a body) must not wait for the peer's delayed ACK, and the copy
// spares a setsockopt(2) per connection. So does TCP_INQ (util::enable_inq),
// which lets a read tell the reactor it emptied the socket.
boost::asio::ip::tcp::acceptor open_listen_socket(boost::asio::io_context& io,
                                                  const boost::asio::ip::tcp::endpoint& ep,
                                                  bool reuse_port);

}  // namespace ward::server
