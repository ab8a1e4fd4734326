// ConnectionPool's choice of idle connection, on real loopback connections
// (the pool peeks at a connection that rested kTrustIdle or more). What a
// user relies on: a busy pool spreads requests over all its connections,
// and so over the server's threads or processes that hold them; a quiet one
// keeps reusing its warmest and lets the rest age out; nothing past kMaxIdle
// or closed by the server is handed out.

#include "proxy/upstream/connection_pool.h"

#include <gtest/gtest.h>
#include <poll.h>

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <ctime>
#include <memory>
#include <vector>

#include "proxy/tls/client_context.h"
#include "proxy/util/clock.h"

namespace ward::upstream {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

class ConnectionPoolTest : public ::testing::Test {
 protected:
  static constexpr uint32_t kKeepalive = 8;

  // A connected upstream connection to host_, pooled; its server end is
  // kept in servers_. Returns it for identity checks (the pool owns it).
  UpstreamConnection* pool_one(uint32_t keepalive = kKeepalive,
                               std::shared_ptr<HostStats> host = nullptr) {
    auto conn = connected(host);
    UpstreamConnection* raw = conn.get();
    pool_.put(std::move(conn), keepalive);
    return raw;
  }

  // A connected upstream connection to `host` (host_ by default), not pooled.
  std::unique_ptr<UpstreamConnection> connected(std::shared_ptr<HostStats> host = nullptr) {
    auto conn = std::make_unique<UpstreamConnection>(io_.get_executor(), 4096);
    conn->socket.connect(acceptor_.local_endpoint());
    servers_.emplace_back(io_);
    acceptor_.accept(servers_.back());
    conn->host = host != nullptr ? host : host_;
    return conn;
  }

  // True once the server end `i` reads the end of the stream: the pool
  // closed that connection.
  bool closed_by_pool(size_t i) {
    pollfd readable{servers_[i].native_handle(), POLLIN, 0};
    char byte;
    return ::poll(&readable, 1, 2000) == 1 &&
           ::recv(servers_[i].native_handle(), &byte, 1, MSG_DONTWAIT) == 0;
  }

  // Keeps, for `host`, a resumable TLS session made `age` ago that lasts
  // `lifetime`, as a connection that completed a handshake would.
  void keep_session(std::shared_ptr<HostStats> host, std::chrono::seconds age,
                    std::chrono::seconds lifetime) {
    auto conn = connected(host);
    tls::SslPtr ssl(SSL_new(client_ctx_.get()));
    tls::SslSessionPtr session(SSL_SESSION_new());
    const unsigned char id[] = {1, 2, 3, 4};
    ASSERT_EQ(SSL_SESSION_set1_id(session.get(), id, sizeof id), 1);  // resumable
    ASSERT_NE(SSL_SESSION_set_time(session.get(), std::time(nullptr) - age.count()), 0);
    ASSERT_EQ(SSL_SESSION_set_timeout(session.get(), lifetime.count()), 1);
    ASSERT_EQ(SSL_set_session(ssl.get(), session.get()), 1);
    conn->tls_stream = std::make_unique<tls::TlsStream>(conn->socket, std::move(ssl));
    conn->tls_context = client_context_;
    pool_.keep_session(*conn);
  }

  // Three of them, pooled in this order (the first is the coldest).
  std::array<UpstreamConnection*, 3> pool_three() { return {pool_one(), pool_one(), pool_one()}; }

  // As if `c` had gone back to the pool `ago` before now.
  static void rested(UpstreamConnection* c, std::chrono::milliseconds ago) {
    c->idle_since = util::coarse_now() - ago;
  }

  // Takes one connection for a request that can be replayed and hands it
  // back at once, as a request that completed does; returns which it was.
  UpstreamConnection* use_one() {
    auto conn = pool_.take(host_.get(), true);
    UpstreamConnection* raw = conn.get();
    if (conn) {
      pool_.put(std::move(conn), kKeepalive);
    }
    return raw;
  }

  asio::io_context io_;
  tcp::acceptor acceptor_{io_, tcp::endpoint(asio::ip::address_v4::loopback(), 0)};
  std::vector<tcp::socket> servers_;
  std::shared_ptr<HostStats> host_ = std::make_shared<HostStats>();
  std::shared_ptr<HostStats> other_ = std::make_shared<HostStats>();
  tls::SslCtxPtr client_ctx_{SSL_CTX_new(TLS_client_method())};
  std::shared_ptr<const tls::ClientContext> client_context_ =
      std::make_shared<tls::ClientContext>(tls::ClientContext::Private{});
  ConnectionPool pool_;
};

TEST_F(ConnectionPoolTest, ABusyPoolGoesRoundAllItsConnections) {
  auto [a, b, c] = pool_three();
  // Each one back in the pool goes behind the others (LIFO would hand out
  // `a` every time and leave `b` and `c` idle).
  EXPECT_EQ(use_one(), a);
  EXPECT_EQ(use_one(), b);
  EXPECT_EQ(use_one(), c);
  EXPECT_EQ(use_one(), a);
  EXPECT_EQ(pool_.idle_count(), 3u);
}

TEST_F(ConnectionPoolTest, AQuietPoolReusesItsWarmestAndTheRestAgeOut) {
  auto [a, b, c] = pool_three();
  rested(a, 20s);
  rested(b, 10s);
  rested(c, 5s);
  // None rested less than kSpreadIdle: the warmest, after its peek (it
  // rested more than kTrustIdle), again and again.
  auto conn = pool_.take(host_.get(), false);
  EXPECT_EQ(conn.get(), c);
  pool_.put(std::move(conn), kKeepalive);
  EXPECT_EQ(use_one(), c);
  EXPECT_EQ(use_one(), c);
  // The others, left alone, pass kMaxIdle and are closed.
  rested(a, ConnectionPool::kMaxIdle + 1s);
  rested(b, ConnectionPool::kMaxIdle + 1s);
  EXPECT_EQ(use_one(), c);
  EXPECT_EQ(pool_.idle_count(), 1u);
}

TEST_F(ConnectionPoolTest, TheColdestFreshConnectionComesBeforeOlderOnes) {
  auto [old, b, c] = pool_three();
  rested(old, 5s);  // from before a quiet spell
  auto first = pool_.take(host_.get(), true);
  auto second = pool_.take(host_.get(), true);
  auto third = pool_.take(host_.get(), true);
  EXPECT_EQ(first.get(), b);
  EXPECT_EQ(second.get(), c);
  EXPECT_EQ(third.get(), old);  // no fresh one left: the warmest there is
  EXPECT_FALSE(pool_.take(host_.get(), true));
}

TEST_F(ConnectionPoolTest, AConnectionTheServerClosedIsDroppedNotHandedOut) {
  UpstreamConnection* a = pool_one();
  UpstreamConnection* b = pool_one();
  rested(a, 10s);
  rested(b, 5s);
  servers_[1].close();  // b's server end: a FIN waits on b
  pollfd readable{b->socket.native_handle(), POLLIN, 0};
  ASSERT_EQ(::poll(&readable, 1, 2000), 1) << "the FIN did not arrive";
  // b is the warmest; its peek sees the FIN, so the next is tried.
  auto conn = pool_.take(host_.get(), false);
  EXPECT_EQ(conn.get(), a);
  EXPECT_EQ(pool_.idle_count(), 0u);
}

TEST_F(ConnectionPoolTest, AFullPoolDropsItsColdestConnection) {
  pool_one(2);
  UpstreamConnection* b = pool_one(2);
  UpstreamConnection* c = pool_one(2);
  EXPECT_EQ(pool_.idle_count(), 2u);
  auto first = pool_.take(host_.get(), true);
  auto second = pool_.take(host_.get(), true);
  EXPECT_EQ(first.get(), b);
  EXPECT_EQ(second.get(), c);
}

TEST_F(ConnectionPoolTest, KeepaliveZeroPoolsNothing) {
  pool_one(0);
  EXPECT_EQ(pool_.idle_count(), 0u);
  EXPECT_FALSE(pool_.take(host_.get(), true));
}

TEST_F(ConnectionPoolTest, TheSweepClosesIdleConnectionsOfServersNoRequestAsksFor) {
  // other_ gets no more requests (a reload or a DNS answer took it away):
  // take() never looks at its connections again.
  UpstreamConnection* aged = pool_one(kKeepalive, other_);
  UpstreamConnection* dead = pool_one(kKeepalive, other_);
  UpstreamConnection* live = pool_one(kKeepalive, other_);
  UpstreamConnection* fresh = pool_one();
  rested(aged, ConnectionPool::kMaxIdle + 1s);
  rested(dead, 5s);
  rested(live, 5s);
  servers_[1].close();  // dead's server end: a FIN waits on it (CLOSE_WAIT)
  pollfd readable{dead->socket.native_handle(), POLLIN, 0};
  ASSERT_EQ(::poll(&readable, 1, 2000), 1) << "the FIN did not arrive";

  EXPECT_EQ(pool_.sweep(), 2u);
  EXPECT_TRUE(closed_by_pool(0));  // aged: its descriptor is closed, not just unlisted
  EXPECT_EQ(pool_.idle_count(), 2u);
  EXPECT_EQ(pool_.take(other_.get(), false).get(), live);
  EXPECT_EQ(pool_.take(host_.get(), true).get(), fresh);
  EXPECT_EQ(pool_.sweep(), 0u);
}

TEST_F(ConnectionPoolTest, TheSweepForgetsSessionsPastTheirLifetime) {
  keep_session(host_, 10s, 300s);
  keep_session(other_, 600s, 300s);  // a server gone ten minutes ago
  ASSERT_NE(pool_.session(host_.get(), client_context_.get()), nullptr);
  ASSERT_NE(pool_.session(other_.get(), client_context_.get()), nullptr);
  pool_.sweep();
  EXPECT_NE(pool_.session(host_.get(), client_context_.get()), nullptr);
  EXPECT_EQ(pool_.session(other_.get(), client_context_.get()), nullptr);
}

// The pool keys by HostStats address. While a connection or a session of a
// server is in the pool, that server's stats must stay alive: freed, their
// address could go to a new server's stats, which would then be handed the
// old server's connection (UpstreamState::prune_stats frees unheld stats).
TEST_F(ConnectionPoolTest, PooledConnectionsAndSessionsKeepTheirServersStatsAlive) {
  auto departed = std::make_shared<HostStats>();
  std::weak_ptr<HostStats> watch = departed;
  pool_one(kKeepalive, departed);
  keep_session(departed, 600s, 300s);  // past its lifetime: the next sweep drops it
  departed.reset();
  EXPECT_FALSE(watch.expired());
  pool_.clear();  // the connection goes, the session stays
  EXPECT_FALSE(watch.expired());
  pool_.sweep();
  EXPECT_TRUE(watch.expired());
}

}  // namespace
}  // namespace ward::upstream
