#include "proxy/upstream/connection_pool.h"

#include <algorithm>
#include <ctime>
#include <iterator>

#include "proxy/util/clock.h"

namespace ward::upstream {

void ConnectionPool::drop_aged(Idle& idle, std::chrono::steady_clock::time_point now) {
  while (!idle.empty() && now - idle.front()->idle_since >= kMaxIdle) {
    idle.pop_front();
  }
}

std::unique_ptr<UpstreamConnection> ConnectionPool::take(const HostStats* host, bool replayable) {
  auto it = idle_.find(host);
  if (it == idle_.end()) {
    return nullptr;
  }
  auto& idle = it->second;        // by idle_since, oldest first
  auto now = util::coarse_now();  // idle times are seconds: ms off are nothing
  drop_aged(idle, now);
  while (!idle.empty()) {
    // The coldest of those that rested less than kSpreadIdle: a busy pool
    // goes round all its connections. None so fresh: the warmest, and the
    // others age out.
    auto fresh = std::partition_point(idle.begin(), idle.end(), [&](const auto& c) {
      return now - c->idle_since >= kSpreadIdle;
    });
    if (fresh == idle.end()) {
      fresh = std::prev(idle.end());
    }
    std::unique_ptr<UpstreamConnection> conn = std::move(*fresh);
    idle.erase(fresh);
    if ((replayable && now - conn->idle_since < kTrustIdle) || conn->still_idle()) {
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
  auto& idle = idle_[conn->host.get()];
  if (idle.size() >= keepalive) {
    idle.pop_front();  // drop the coldest
  }
  conn->idle_since = util::coarse_now();
  conn->deadline.clear();
  idle.push_back(std::move(conn));
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
  SSL* ssl = conn.tls_stream->native_handle();
  SSL_SESSION* current = SSL_get0_session(ssl);
  if (current == nullptr || SSL_SESSION_is_resumable(current) != 1) {
    return;
  }
  // A slot only for a session kept: each slot owns its key (slot.host).
  auto& slot = sessions_[conn.host.get()];
  if (current == slot.session.get()) {
    return;
  }
  slot.session.reset(SSL_get1_session(ssl));
  slot.context = conn.tls_context;
  slot.host = conn.host;
}

size_t ConnectionPool::sweep() {
  auto now = util::coarse_now();
  size_t closed = 0;
  for (auto it = idle_.begin(); it != idle_.end();) {
    auto& idle = it->second;  // by idle_since, oldest first
    size_t before = idle.size();
    drop_aged(idle, now);
    std::erase_if(idle, [&](const std::unique_ptr<UpstreamConnection>& c) {
      return now - c->idle_since >= kTrustIdle && !c->still_idle();
    });
    closed += before - idle.size();
    it = idle.empty() ? idle_.erase(it) : std::next(it);
  }
  const long wall = static_cast<long>(std::time(nullptr));
  std::erase_if(sessions_, [&](const auto& entry) {
    const SSL_SESSION* s = entry.second.session.get();
    return SSL_SESSION_get_time(s) + SSL_SESSION_get_timeout(s) <= wall;
  });
  return closed;
}

size_t ConnectionPool::idle_count() const {
  size_t n = 0;
  for (const auto& [host, stack] : idle_) {
    n += stack.size();
  }
  return n;
}

}  // namespace ward::upstream
