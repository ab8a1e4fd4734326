#include "proxy/util/send_now.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <boost/asio/error.hpp>
#include <cerrno>

namespace ward::util {

size_t send_now(int fd, std::span<const boost::asio::const_buffer> pieces,
                boost::system::error_code& ec) {
  ec.clear();
  std::array<iovec, 64> iov;
  if (pieces.size() > iov.size()) {
    ec = boost::asio::error::would_block;
    return 0;
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
    return 0;
  }
  msghdr msg{};
  msg.msg_iov = iov.data();
  msg.msg_iovlen = count;
  for (;;) {
    ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) {
      return static_cast<size_t>(n);
    }
    if (errno == EINTR) {
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      ec = boost::asio::error::would_block;
    } else {
      ec = boost::system::error_code(errno, boost::asio::error::get_system_category());
    }
    return 0;
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
