#pragma once

// Plain-socket writes that usually need no wait. A response or a request
// head almost always fits the socket's send buffer whole; sending it here,
// with one non-blocking sendmsg(2), spares the trip through Asio's
// scheduler that an async write makes even when it completes at once (a
// coroutine suspension and resumption, and a non-blocking epoll_wait). Only
// what the kernel did not take goes on to an async write.

#include <boost/asio/buffer.hpp>
#include <boost/system/error_code.hpp>
#include <cstddef>
#include <span>
#include <vector>

namespace ward::util {

// Sends what the kernel takes of `pieces` at once, MSG_NOSIGNAL. Returns the
// bytes taken. ec: would_block when the send buffer was full (nothing
// taken); another error when the connection failed; clear otherwise, even
// if only part was taken. More than 64 pieces: nothing is sent
// (would_block), the caller's async write does it all.
size_t send_now(int fd, std::span<const boost::asio::const_buffer> pieces,
                boost::system::error_code& ec);

// Drops the first n bytes of `pieces` (what send_now took), keeping the rest
// in order.
void drop_front(std::vector<boost::asio::const_buffer>& pieces, size_t n);

}  // namespace ward::util
