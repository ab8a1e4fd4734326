#include "proxy/util/send_now.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <cerrno>
#include <cstring>

namespace ward::util {

SentNow send_now(int fd, std::span<const boost::asio::const_buffer> pieces) {
  SentNow out;
  out.total = boost::asio::buffer_size(pieces);
  std::array<iovec, 64> iov;
  if (pieces.size() > iov.size()) {
    out.ec = boost::asio::error::would_block;
    return out;
  }
  size_t count = 0;
  for (const auto& p : pieces) {
    if (p.size() > 0) {
      iov[count].iov_base = const_cast<void*>(p.data());
      iov[count].iov_len = p.size();
      ++count;
    }
  }
  if (count == 0) {
    return out;
  }
  std::array<char, kCoalesceMax> joined;
  const void* one = iov[0].iov_base;
  if (count > 1 && out.total <= kCoalesceMax) {
    size_t at = 0;
    for (size_t k = 0; k < count; ++k) {
      std::memcpy(joined.data() + at, iov[k].iov_base, iov[k].iov_len);
      at += iov[k].iov_len;
    }
    one = joined.data();
    count = 1;
  }
  msghdr msg{};
  msg.msg_iov = iov.data();
  msg.msg_iovlen = count;
  for (;;) {
    ssize_t n = count == 1 ? ::send(fd, one, out.total, MSG_NOSIGNAL | MSG_DONTWAIT)
                           : ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) {
      out.bytes = static_cast<size_t>(n);
      return out;
    }
    if (errno == EINTR) {
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      out.ec = boost::asio::error::would_block;
    } else {
      out.ec = boost::system::error_code(errno, boost::asio::error::get_system_category());
    }
    return out;
  }
}

void drop_front(std::vector<boost::asio::const_buffer>& pieces, size_t n) {
  size_t whole = 0;
  while (whole < pieces.size() && n >= pieces[whole].size()) {
    n -= pieces[whole].size();
    ++whole;
  }
  pieces.erase(pieces.begin(), pieces.begin() + static_cast<std::ptrdiff_t>(whole));
  if (n > 0 && !pieces.empty()) {
    pieces.front() += n;
  }
}

}  // namespace ward::util
