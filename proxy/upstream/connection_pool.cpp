#include "proxy/upstream/connection_pool.h"

#include <sys/socket.h>

#include <cerrno>

namespace ward::upstream {

namespace {

// True when the server has neither closed the connection nor sent bytes we did
// not ask for: recv(MSG_PEEK|MSG_DONTWAIT) must say "would block".
bool still_idle(UpstreamConnection& conn) {
  char byte;
  ssize_t n = ::recv(conn.socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

}  // namespace

std::unique_ptr<UpstreamConnection> ConnectionPool::take(const HostStats* host) {
  auto it = idle_.find(host);
  if (it == idle_.end()) {
    return nullptr;
  }
  auto& stack = it->second;
  auto now = std::chrono::steady_clock::now();
  while (!stack.empty()) {
    auto conn = std::move(stack.back());
    stack.pop_back();
    if (now - conn->idle_since < kMaxIdle && still_idle(*conn)) {
      return conn;
    }
  }
  return nullptr;
}

void ConnectionPool::put(std::unique_ptr<UpstreamConnection> conn, uint32_t keepalive) {
  if (keepalive == 0 || !conn->buffer.empty()) {
    return;  // unread bytes after a response: the connection's framing is not trustworthy
  }
  auto& stack = idle_[conn->host];
  if (stack.size() >= keepalive) {
    stack.erase(stack.begin());  // drop the coldest
  }
  conn->idle_since = std::chrono::steady_clock::now();
  conn->deadline.clear();
  stack.push_back(std::move(conn));
}

size_t ConnectionPool::idle_count() const {
  size_t n = 0;
  for (const auto& [host, stack] : idle_) {
    n += stack.size();
  }
  return n;
}

}  // namespace ward::upstream
