// Workers handshaking on shared contexts while the main thread rotates ticket
// keys and reloads: the sharing the design relies on (run under TSan).

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "proxy/tls/server_contexts.h"
#include "tests/unit/tls/tls_test_support.h"

namespace ward::tls {
namespace {

using namespace std::chrono_literals;
using namespace testing;

TEST(ConcurrencyTest, WorkersHandshakeAndResumeWhileKeysRotateAndContextsReload) {
  const auto t0 = TicketKeyRing::Clock::time_point{};
  auto ring = std::make_shared<TicketKeyRing>(t0);
  config::Listener l = listener({"default", "api"});
  ServerContextsSlot slot(build_ok(l, ring), ring);
  // Building a client loads the PKI: do it before the threads start.
  ASSERT_NE(make_client(ClientOptions{}), nullptr);

  constexpr int kWorkers = 2;
  constexpr int kRounds = 20;
  std::atomic<int> failures{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      SessionPtr session;
      for (int i = 0; i < kRounds; ++i) {
        ClientOptions o;
        o.sni = (i + w) % 2 ? "api.example.com" : "default.example.com";
        o.session = (i % 2 == 1 && session) ? session.get() : nullptr;
        Connection c = handshake(slot.current()->new_ssl(), make_client(o));
        if (!c.ok() || !echo(c, "x")) {
          ++failures;
          continue;
        }
        SSL_shutdown(c.client.get());
        session.reset(SSL_get1_session(c.client.get()));
      }
    });
  }
  for (int i = 1; i <= kRounds; ++i) {
    ring->rotate(t0 + i * 1h);
    auto r = slot.reload(l, std::chrono::system_clock::now());
    EXPECT_TRUE(r.ok());
  }
  for (auto& t : workers) {
    t.join();
  }
  // Whether a given attempt resumes depends on how the threads interleave
  // with rotation (a ticket can age out between two rounds), so only
  // failures are counted: a refused ticket must still be a full handshake.
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace ward::tls
