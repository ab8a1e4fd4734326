#pragma once

// Name lookups with the system resolver (getaddrinfo: /etc/hosts,
// resolv.conf and their timeouts), for DNS upstream servers and a Redis
// store named by host name.
//
// Why not Asio's tcp::resolver: it runs getaddrinfo on a thread of Asio's
// and completes through the io_context's locks. A worker's io_context runs
// without them (BOOST_ASIO_CONCURRENCY_HINT_UNSAFE), where it fails with
// "Operation not supported"; and destroying an io_context joins that
// thread, so a lookup hanging on an unreachable name server held up ward's
// exit for as long as resolv.conf's timeouts (30 s and more). Here each
// lookup runs on a detached thread of its own that wakes the waiting loop
// through an eventfd: nothing waits for it at exit, and a caller that gave
// up leaves it nothing freed to touch.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <string>
#include <vector>

namespace ward::upstream {

// One lookup's answer: addresses, or why there are none.
struct Resolution {
  std::vector<boost::asio::ip::address> addresses;  // sorted, each once
  std::string error;                                // "" when the lookup succeeded
};

// Looks `name` up (A and AAAA records). `wait` is a closed descriptor of
// the caller's on the awaiting loop: closing it meanwhile (a timeout, a
// stop) ends the wait at once with the error "lookup cancelled", and the
// thread's late answer is dropped. An answer without addresses is the
// error "no addresses".
boost::asio::awaitable<Resolution> look_up_name(boost::asio::posix::stream_descriptor& wait,
                                                std::string name);

}  // namespace ward::upstream
