#pragma once

// Plain-socket writes that usually need no wait. A response or a request
// head almost always fits the socket's send buffer whole; sending it here,
// with one non-blocking send, spares the trip through Asio's scheduler that
// an async write makes even when it completes at once (a coroutine
// suspension and resumption, and a non-blocking epoll_wait). Only what the
// kernel did not take goes on to an async write.
//
// One piece goes out with send(2); several with sendmsg(2), unless they add
// up to kCoalesceMax bytes or less: then they are copied together and go
// out with send(2). sendmsg copies in a msghdr and an iovec array that
// send does not: a 2-piece sendmsg of a head and a small body measured
// ~300 ns more on loopback TCP here than copying the two and one send,
// ~2% of a small proxied request.

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/system/error_code.hpp>
#include <cstddef>
#include <span>
#include <vector>

namespace ward::util {

inline constexpr size_t kCoalesceMax = 1024;

struct SentNow {
  size_t bytes = 0;              // what the kernel took
  boost::system::error_code ec;  // would_block: the send buffer was full
  size_t total = 0;              // the bytes of all the pieces
  // The write is over: all of it went, or the connection failed. Otherwise
  // the rest (drop_front(pieces, bytes)) is for an async write.
  bool done() const { return bytes == total || (ec && ec != boost::asio::error::would_block); }
};

// Sends what the kernel takes of `pieces` at once, MSG_NOSIGNAL. ec:
// would_block when the send buffer was full (nothing taken); another error
// when the connection failed; clear otherwise, even if only part was taken.
// More than 64 pieces: nothing is sent (would_block), the caller's async
// write does it all.
SentNow send_now(int fd, std::span<const boost::asio::const_buffer> pieces);

// Drops the first n bytes of `pieces` (what send_now took), keeping the rest
// in order.
void drop_front(std::vector<boost::asio::const_buffer>& pieces, size_t n);

}  // namespace ward::util
