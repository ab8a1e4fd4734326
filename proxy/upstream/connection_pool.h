#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <unordered_map>
#include <vector>

#include "proxy/tls/openssl_ptr.h"
#include "proxy/upstream/host_set.h"
#include "proxy/upstream/upstream_connection.h"

namespace ward::upstream {

// The idle keep-alive connections of one worker, per server (Envoy's
// thread-local pools): no lock, no sharing. Which one is reused (kSpreadIdle
// says why): the one idle longest among those idle less than kSpreadIdle, so
// a busy pool goes round all its connections; when none is that fresh, the
// one idle shortest, so that in a quiet pool the others age out. Reuse comes
// after a non-blocking peek shows the server has not closed it nor sent
// anything unexpected (skipped for fresh ones when the request can be
// replayed: see kTrustIdle); stale ones are dropped on the way.
class ConnectionPool {
 public:
  // An idle, live connection to `host`, or null. `replayable`: the caller
  // can send its request again should the connection prove dead (an
  // idempotent request without a body), so one pooled less than kTrustIdle
  // ago is taken without the peek.
  std::unique_ptr<UpstreamConnection> take(const HostStats* host, bool replayable);
  // Keeps `conn` for reuse, up to `keepalive` idle connections per server;
  // beyond that (or keepalive 0) it is closed.
  void put(std::unique_ptr<UpstreamConnection> conn, uint32_t keepalive);
  // Closes every idle connection (drain, shutdown).
  void clear() { idle_.clear(); }
  size_t idle_count() const;
  // Closes the idle connections past kMaxIdle and those the server has
  // closed (a peek, skipped for ones pooled less than kTrustIdle ago), and
  // forgets sessions past their lifetime, for every server. take() only
  // looks at the server it is asked for: without this, connections to a
  // server no request goes to any more (one a reload or a DNS answer took
  // away, a pod that is gone) stayed open for good, in CLOSE_WAIT once the
  // server closed them, up to `keepalive` descriptors per server and
  // worker. The worker calls it every kSweepInterval. Returns how many
  // connections it closed.
  size_t sweep();
  static constexpr std::chrono::seconds kSweepInterval{5};

  // TLS session resumption towards the servers: the newest resumable
  // session seen per server, valid only with the client context that made
  // it (another tls_ca or tls_server_name must verify afresh). A resumed
  // handshake skips the certificate chain and its verification.
  // An SSL_SESSION to pass to SSL_set_session, or null; the pool keeps it.
  SSL_SESSION* session(const HostStats* host, const tls::ClientContext* context) const;
  // Remembers the session of `conn` when it is resumable and new (TLS 1.2:
  // after the handshake; TLS 1.3: once a ticket arrived, which is before
  // the first response). Plain connections: nothing.
  void keep_session(const UpstreamConnection& conn);

  // Idle connections older than this are closed instead of reused: servers
  // commonly drop idle keep-alive connections after 60 s or more, and a
  // connection they are about to close is a wasted request and a retry.
  static constexpr std::chrono::seconds kMaxIdle{30};
  // A connection back in the pool for less than this is reused without the
  // peek for a replayable request. Under load connections rest for
  // microseconds to milliseconds, and the peek was one recv() per request
  // (of six syscalls in all). Servers close idle keep-alive connections
  // after seconds (gunicorn 2 s, Node.js and Apache 5 s, nginx 75 s), so a
  // connection this fresh is open unless the server crashed, restarted or
  // closed without saying so; and if it was not, the request is sent again
  // on a new connection (RequestHandler::proxy's keep-alive race retry).
  // Requests that cannot be replayed always get the peek.
  static constexpr std::chrono::milliseconds kTrustIdle{1000};
  // Why not always the warmest (LIFO, as nginx does): each connection is
  // served by one thread or process of the server (the one whose
  // SO_REUSEPORT listener took it, a gunicorn or Node.js cluster worker),
  // and a pool that keeps reusing its few warmest connections piles its
  // requests on the few workers holding them while the others idle. Going
  // round the pool spreads them as the server's kernel spread the
  // connections. h1-2workers (bench/, whose upstream runs two threads), 2026-12-05:
  // ward's p99 went from 3.1-4.5 ms to 1.9-2.7 ms, now below HAProxy's
  // (2.2-3.0 ms) and half nginx's (4.0-5.1 ms; nginx reuses LIFO). Only
  // while connections come back within kSpreadIdle: one idle longer is
  // better left to age out (kMaxIdle) than to be the next one reused.
  static constexpr std::chrono::milliseconds kSpreadIdle{1000};

 private:
  struct Session {
    std::shared_ptr<const tls::ClientContext> context;
    tls::SslSessionPtr session;
    std::shared_ptr<const HostStats> host;  // keeps the key's address from reuse
  };
  // One server's idle connections, by idle_since, oldest first.
  using Idle = std::deque<std::unique_ptr<UpstreamConnection>>;
  // Closes those of `idle` past kMaxIdle (take() and sweep()).
  static void drop_aged(Idle& idle, std::chrono::steady_clock::time_point now);

  // Keyed by address: each key is alive while its entry is (pooled
  // connections and sessions own their HostStats), so no other server's
  // stats can take the address meanwhile (UpstreamState::prune_stats).
  std::unordered_map<const HostStats*, Idle> idle_;
  std::unordered_map<const HostStats*, Session> sessions_;
};

}  // namespace ward::upstream
