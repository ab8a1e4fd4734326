#include "proxy/upstream/connection_pool.h"

#include "proxy/util/clock.h"

namespace ward::upstream {

std::unique_ptr<UpstreamConnection> ConnectionPool::take(const HostStats* host, bool replayable) {
  auto it = idle_.find(host);
  if (it == idle_.end()) {
    return nullptr;
  }
  auto& stack = it->second;
  auto now = util::coarse_now();  // idle times are seconds: ms off are nothing
  while (!stack.empty()) {
    auto conn = std::move(stack.back());
    stack.pop_back();
    auto idle = now - conn->idle_since;
    if (idle >= kMaxIdle) {
      continue;
    }
    if ((replayable && idle < kTrustIdle) || conn->still_idle()) {
      return conn;
    }
  }
  return nullptr;
}

void ConnectionPool::put(std::unique_ptr<UpstreamConnection> conn, uint32_t keepalive) {
  if (keepalive == 0 || !conn->buffer.empty()) {
    return;  // unread bytes after a response: the connection's framing is not trustworthy
  }
  // An idle pooled connection holds no buffers: its 64 KiB read buffer goes
  // to the thread's spares (util/spare.h) for the next request to take,
  // instead of 128 pooled connections per server keeping 8 MiB.
  conn->buffer.release();
  if (conn->tls_stream) {
    conn->tls_stream->release_buffers();  // an idle TLS connection holds no record buffers
  }
  auto& stack = idle_[conn->host];
  if (stack.size() >= keepalive) {
    stack.erase(stack.begin());  // drop the coldest
  }
  conn->idle_since = util::coarse_now();
  conn->deadline.clear();
  stack.push_back(std::move(conn));
}

SSL_SESSION* ConnectionPool::session(const HostStats* host,
                                     const tls::ClientContext* context) const {
  auto it = sessions_.find(host);
  if (it == sessions_.end() || it->second.context.get() != context) {
    return nullptr;
  }
  return it->second.session.get();
}

void ConnectionPool::keep_session(const UpstreamConnection& conn) {
  if (!conn.tls_stream || !conn.tls_context) {
    return;
  }
  auto& slot = sessions_[conn.host];
  SSL* ssl = conn.tls_stream->native_handle();
  SSL_SESSION* current = SSL_get0_session(ssl);
  if (current == nullptr || current == slot.session.get() ||
      SSL_SESSION_is_resumable(current) != 1) {
    return;
  }
  slot.session.reset(SSL_get1_session(ssl));
  slot.context = conn.tls_context;
}

size_t ConnectionPool::idle_count() const {
  size_t n = 0;
  for (const auto& [host, stack] : idle_) {
    n += stack.size();
  }
  return n;
}

}  // namespace ward::upstream
