// Session tickets: the key ring's rotation on an injected clock, and
// resumption across two context sets sharing the ring (two "workers").

#include "proxy/tls/ticket_key_ring.h"

#include <gtest/gtest.h>

#include "tests/unit/tls/tls_test_support.h"

namespace ward::tls {
namespace {

using namespace std::chrono_literals;
using namespace testing;

// An arbitrary steady-clock origin: the tests never read the real clock.
const TicketKeyRing::Clock::time_point t0 = TicketKeyRing::Clock::time_point{} + 1000h;

// ---------------------------------------------------------------------------
// Rotation alone

TEST(TicketKeyRingTest, StartsWithOneKeyAndRotatesHourly) {
  TicketKeyRing ring(t0);
  EXPECT_EQ(ring.size(), 1u);
  EXPECT_EQ(ring.next_rotation(), t0 + 1h);
  EXPECT_FALSE(ring.rotate(t0 + 59min));
  EXPECT_EQ(ring.size(), 1u);
  EXPECT_TRUE(ring.rotate(t0 + 1h));
  EXPECT_EQ(ring.size(), 2u);
  EXPECT_EQ(ring.next_rotation(), t0 + 2h);
}

TEST(TicketKeyRingTest, HoldsAtMostThreeKeysWithDefaultTiming) {
  TicketKeyRing ring(t0);
  for (int hour = 1; hour <= 10; ++hour) {
    ring.rotate(t0 + hour * 1h);
    EXPECT_LE(ring.size(), 3u) << hour;
  }
  EXPECT_EQ(ring.size(), 3u);
}

TEST(TicketKeyRingTest, RetiredKeyIsDroppedTicketLifetimeAfterRetirement) {
  TicketKeyRing ring(t0, {.rotation_period = 1h, .ticket_lifetime = 2h});
  ring.rotate(t0 + 1h);  // key 1 retires at t0+1h
  EXPECT_EQ(ring.size(), 2u);
  // Next event: key 2's rotation at t0+2h comes before key 1's drop at t0+3h.
  EXPECT_EQ(ring.next_rotation(), t0 + 2h);
  ring.rotate(t0 + 2h);  // key 2 retires; key 1 still kept
  EXPECT_EQ(ring.size(), 3u);
  EXPECT_EQ(ring.next_rotation(), t0 + 3h);
  ring.rotate(t0 + 3h);  // key 1 dropped, key 3 retires, key 4 current
  EXPECT_EQ(ring.size(), 3u);
}

TEST(TicketKeyRingTest, ALongPauseDropsEveryOldKeyAndStartsOneNewKey) {
  TicketKeyRing ring(t0);
  ring.rotate(t0 + 1h);
  ring.rotate(t0 + 2h);
  EXPECT_TRUE(ring.rotate(t0 + 100h));
  EXPECT_EQ(ring.size(), 2u);  // the key retired just now, and the new one
}

TEST(TicketKeyRingTest, UnknownKeyNameIsAFullHandshakeNotAnError) {
  TicketKeyRing ring(t0);
  unsigned char name[16] = {};
  unsigned char iv[EVP_MAX_IV_LENGTH] = {};
  EVP_CIPHER_CTX* cipher = EVP_CIPHER_CTX_new();
  EVP_MAC* hmac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  EVP_MAC_CTX* mac = EVP_MAC_CTX_new(hmac);
  EXPECT_EQ(ring.decrypt_ticket(name, iv, cipher, mac), 0);
  // A name the ring issued decrypts as current (1), then as retired (2).
  ASSERT_EQ(ring.encrypt_ticket(name, iv, cipher, mac), 1);
  EXPECT_EQ(ring.decrypt_ticket(name, iv, cipher, mac), 1);
  ring.rotate(t0 + 1h);
  EXPECT_EQ(ring.decrypt_ticket(name, iv, cipher, mac), 2);
  ring.rotate(t0 + 3h);
  EXPECT_EQ(ring.decrypt_ticket(name, iv, cipher, mac), 0);
  EVP_MAC_CTX_free(mac);
  EVP_MAC_free(hmac);
  EVP_CIPHER_CTX_free(cipher);
}

// ---------------------------------------------------------------------------
// Resumption through handshakes

struct Versions {
  int version;
  const char* name;
};

class ResumptionTest : public ::testing::TestWithParam<Versions> {
 protected:
  ResumptionTest() : ring_(std::make_shared<TicketKeyRing>(t0)) {}

  ClientOptions client(SSL_SESSION* session = nullptr) {
    ClientOptions o;
    o.sni = "default.example.com";
    o.min_version = o.max_version = GetParam().version;
    o.session = session;
    return o;
  }

  // A full handshake with `worker`; the session it leaves the client. The
  // server side ends as a session would when the client just goes away.
  SessionPtr first_visit(const ServerContexts& worker, bool quiet_end = true) {
    Connection c = handshake(worker.new_ssl(), make_client(client()));
    EXPECT_TRUE(c.ok());
    EXPECT_FALSE(c.resumed());
    SessionPtr session(take_session(c));
    if (quiet_end) {
      end_without_close_notify(c.server.get());
    }
    return session;
  }

  bool resumes_on(const ServerContexts& worker, SSL_SESSION* session) {
    Connection c = handshake(worker.new_ssl(), make_client(client(session)));
    EXPECT_TRUE(c.ok());  // a refused ticket is a full handshake, never a failure
    return c.resumed();
  }

  std::shared_ptr<TicketKeyRing> ring_;
};

INSTANTIATE_TEST_SUITE_P(Tls, ResumptionTest,
                         ::testing::Values(Versions{TLS1_2_VERSION, "TLS12"},
                                           Versions{TLS1_3_VERSION, "TLS13"}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST_P(ResumptionTest, TicketFromOneWorkerResumesOnAnother) {
  auto worker_a = build_ok(listener({"default"}), ring_);
  auto worker_b = build_ok(listener({"default"}), ring_);
  SessionPtr session = first_visit(*worker_a);
  EXPECT_TRUE(resumes_on(*worker_b, session.get()));
}

TEST_P(ResumptionTest, WorkersWithSeparateRingsCannotResume) {
  auto worker_a = build_ok(listener({"default"}), ring_);
  auto worker_b = build_ok(listener({"default"}), std::make_shared<TicketKeyRing>(t0));
  SessionPtr session = first_visit(*worker_a);
  EXPECT_FALSE(resumes_on(*worker_b, session.get()));
}

TEST_P(ResumptionTest, TicketStillResumesAfterOneRotation) {
  auto worker_a = build_ok(listener({"default"}), ring_);
  auto worker_b = build_ok(listener({"default"}), ring_);
  SessionPtr session = first_visit(*worker_a);
  ASSERT_TRUE(ring_->rotate(t0 + 1h));
  EXPECT_TRUE(resumes_on(*worker_b, session.get()));
}

TEST_P(ResumptionTest, TicketFailsOnceItsKeyAgedOut) {
  auto worker_a = build_ok(listener({"default"}), ring_);
  auto worker_b = build_ok(listener({"default"}), ring_);
  SessionPtr session = first_visit(*worker_a);
  ring_->rotate(t0 + 1h);
  ring_->rotate(t0 + 3h);  // retired at t0+1h, dropped two hours later
  EXPECT_FALSE(resumes_on(*worker_b, session.get()));
}

TEST_P(ResumptionTest, TicketSurvivesAReloadOfTheContexts) {
  auto before = build_ok(listener({"default"}), ring_);
  SessionPtr session = first_visit(*before);
  auto after = build_ok(listener({"default"}), ring_);  // what a SIGHUP builds
  EXPECT_TRUE(resumes_on(*after, session.get()));
}

TEST_P(ResumptionTest, TicketFromAnotherListenerDoesNotResume) {
  auto web = build_ok(listener({"default"}, "", "web"), ring_);
  auto admin = build_ok(listener({"default"}, "", "other"), ring_);
  SessionPtr session = first_visit(*web);
  EXPECT_FALSE(resumes_on(*admin, session.get()));
}

TEST_P(ResumptionTest, TicketsOffResumesOnlyOnTheSameWorker) {
  auto off = listener({"default"}, "      session_tickets: false\n");
  auto worker_a = build_ok(off, nullptr);
  auto worker_b = build_ok(off, nullptr);
  EXPECT_FALSE(worker_a->session_tickets());
  SessionPtr session = first_visit(*worker_a);
  EXPECT_FALSE(resumes_on(*worker_b, session.get()));
  EXPECT_TRUE(resumes_on(*worker_a, session.get()));  // its own session cache
}

TEST_P(ResumptionTest, CachedSessionIsLostWhenTheServerSslIsFreedWithoutAnEnd) {
  // Why end_without_close_notify exists: without it OpenSSL treats the
  // session of a connection that ended abruptly as suspect.
  auto off = listener({"default"}, "      session_tickets: false\n");
  auto worker = build_ok(off, nullptr);
  SessionPtr session = first_visit(*worker, /*quiet_end=*/false);
  EXPECT_FALSE(resumes_on(*worker, session.get()));
}

TEST_P(ResumptionTest, TicketsDoNotDependOnHowTheConnectionEnded) {
  auto worker_a = build_ok(listener({"default"}), ring_);
  auto worker_b = build_ok(listener({"default"}), ring_);
  SessionPtr session = first_visit(*worker_a, /*quiet_end=*/false);
  EXPECT_TRUE(resumes_on(*worker_b, session.get()));
}

}  // namespace
}  // namespace ward::tls
