#include "proxy/upstream/name_lookup.h"

#include <netdb.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>

// Style note: GCC 12 miscompiles some coroutine shapes (a co_await inside a
// condition or a ternary, `co_return co_await`). Every co_await here is a
// plain statement or initializes a variable.

namespace ward::upstream {

namespace asio = boost::asio;

namespace {

// Shared by the lookup thread and the waiter; the thread keeps it alive
// until it has written its answer and signalled fd.
struct Pending {
  Pending() : fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}
  ~Pending() {
    if (fd >= 0) {
      ::close(fd);
    }
  }
  Pending(const Pending&) = delete;
  Pending& operator=(const Pending&) = delete;

  const int fd;
  std::mutex mu;  // the thread writes `answer`, then signals fd
  Resolution answer;
};

Resolution system_lookup(const std::string& name) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;  // one entry per address, not one per socket type
  addrinfo* found = nullptr;
  Resolution r;
  int rc = ::getaddrinfo(name.c_str(), nullptr, &hints, &found);
  if (rc != 0) {
    r.error = rc == EAI_SYSTEM ? std::string(std::strerror(errno)) : ::gai_strerror(rc);
    return r;
  }
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    asio::ip::tcp::endpoint e;
    if (a->ai_addrlen <= e.capacity()) {
      std::memcpy(e.data(), a->ai_addr, a->ai_addrlen);
      e.resize(a->ai_addrlen);
      r.addresses.push_back(e.address());
    }
  }
  ::freeaddrinfo(found);
  std::sort(r.addresses.begin(), r.addresses.end());
  r.addresses.erase(std::unique(r.addresses.begin(), r.addresses.end()), r.addresses.end());
  if (r.addresses.empty()) {
    r.error = "no addresses";
  }
  return r;
}

}  // namespace

asio::awaitable<Resolution> look_up_name(asio::posix::stream_descriptor& wait, std::string name) {
  auto pending = std::make_shared<Pending>();
  // The descriptor gets a dup: closing it (a cancel) must not close the fd
  // the thread is about to write to.
  int fd = pending->fd < 0 ? -1 : ::dup(pending->fd);
  if (fd < 0) {
    co_return Resolution{{}, std::string("cannot start a lookup: ") + std::strerror(errno)};
  }
  boost::system::error_code ec;
  wait.assign(fd, ec);
  if (ec) {
    ::close(fd);
    co_return Resolution{{}, "cannot start a lookup: " + ec.message()};
  }
  std::thread([pending, name] {
    Resolution r = system_lookup(name);
    {
      std::lock_guard lock(pending->mu);
      pending->answer = std::move(r);
    }
    uint64_t one = 1;
    ssize_t n = ::write(pending->fd, &one, sizeof one);
    (void)n;  // an eventfd write of 1 cannot fail short of overflow
  }).detach();
  auto [wec] = co_await wait.async_wait(asio::posix::stream_descriptor::wait_read,
                                        asio::as_tuple(asio::use_awaitable));
  const bool cancelled = wec || !wait.is_open();
  boost::system::error_code ignored;
  wait.close(ignored);
  if (cancelled) {
    co_return Resolution{{}, "lookup cancelled"};
  }
  std::lock_guard lock(pending->mu);
  co_return std::move(pending->answer);
}

}  // namespace ward::upstream
