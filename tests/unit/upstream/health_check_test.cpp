// Active health checks: the pass/fail counting, the judging of a check's
// response, and the checker itself against loopback servers that answer
// well, answer badly, refuse, or never answer. What a user relies on: a
// server leaves service after unhealthy_threshold failed checks in a row
// and returns after healthy_threshold passes; a check that hangs fails at
// its timeout; stopping the checker ends every loop.

#include "proxy/upstream/health_check.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tests/unit/upstream/fake_http_server.h"

namespace ward::upstream {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using testing::FakeServer;
using namespace std::chrono_literals;
using State = ProbeVerdict::State;

config::HealthCheck check(int min = 200, int max = 399) {
  config::HealthCheck hc;
  hc.expect_status_min = min;
  hc.expect_status_max = max;
  return hc;
}

// --- HealthVerdict

TEST(HealthVerdict, LeavesServiceOnlyAfterTheThresholdOfFailuresInARow) {
  HealthVerdict v(true, 2, 3);
  EXPECT_FALSE(v.record(false));
  EXPECT_FALSE(v.record(false));
  EXPECT_TRUE(v.healthy());
  EXPECT_TRUE(v.record(false));  // the third in a row flips it
  EXPECT_FALSE(v.healthy());
  EXPECT_EQ(v.streak(), 0u);
}

TEST(HealthVerdict, APassBetweenFailuresStartsTheCountAgain) {
  HealthVerdict v(true, 2, 3);
  v.record(false);
  v.record(false);
  EXPECT_FALSE(v.record(true));
  EXPECT_EQ(v.streak(), 0u);
  EXPECT_FALSE(v.record(false));
  EXPECT_FALSE(v.record(false));
  EXPECT_TRUE(v.healthy());
}

TEST(HealthVerdict, ReturnsAfterTheThresholdOfPassesInARow) {
  HealthVerdict v(false, 2, 3);
  EXPECT_FALSE(v.record(true));
  EXPECT_EQ(v.streak(), 1u);
  EXPECT_FALSE(v.record(false));  // not two in a row
  EXPECT_FALSE(v.record(true));
  EXPECT_TRUE(v.record(true));
  EXPECT_TRUE(v.healthy());
}

TEST(HealthVerdict, ThresholdsOfOneFlipOnEveryChange) {
  HealthVerdict v(true, 1, 1);
  EXPECT_TRUE(v.record(false));
  EXPECT_FALSE(v.record(false));
  EXPECT_TRUE(v.record(true));
}

// --- judge_response

TEST(JudgeResponse, StatusInTheExpectedRangePasses) {
  auto v = judge_response("HTTP/1.1 204 No Content\r\n\r\n", check());
  EXPECT_EQ(v.state, State::passed);
  EXPECT_EQ(v.detail, "status 204");
}

TEST(JudgeResponse, StatusOutsideTheRangeFailsAndSaysWhatWasExpected) {
  auto v = judge_response("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", check());
  EXPECT_EQ(v.state, State::failed);
  EXPECT_EQ(v.detail, "status 503 (expected 200-399)");
  v = judge_response("HTTP/1.1 200 OK\r\n\r\n", check(204, 204));
  EXPECT_EQ(v.detail, "status 200 (expected 204)");
}

TEST(JudgeResponse, AnUnfinishedHeadIsUndecidedAtEveryLength) {
  std::string whole = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  size_t head_end = whole.find("\r\n\r\n") + 4;
  for (size_t n = 0; n < head_end; ++n) {
    EXPECT_EQ(judge_response(whole.substr(0, n), check()).state, State::incomplete) << n;
  }
  EXPECT_EQ(judge_response(whole.substr(0, head_end), check()).state, State::passed);
}

TEST(JudgeResponse, InterimResponsesAreSkipped) {
  auto v = judge_response(
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
      "HTTP/1.1 500 Oops\r\n\r\n",
      check());
  EXPECT_EQ(v.detail, "status 500 (expected 200-399)");
  EXPECT_EQ(judge_response("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2", check()).state,
            State::incomplete);
}

TEST(JudgeResponse, ASwitchNobodyAskedForIsAnAnswerAndFails) {
  EXPECT_EQ(judge_response("HTTP/1.1 101 Switching Protocols\r\n\r\n", check()).state,
            State::failed);
}

TEST(JudgeResponse, BytesThatAreNotHttpFail) {
  auto v = judge_response("SSH-2.0-OpenSSH_9.2\r\n\r\n", check());
  EXPECT_EQ(v.state, State::failed);
  EXPECT_NE(v.detail.find("not a valid HTTP response"), std::string::npos) << v.detail;
}

TEST(JudgeResponse, AnEndlessHeadFailsInsteadOfGrowing) {
  std::string head = "HTTP/1.1 200 OK\r\n";
  while (head.size() <= 17 * 1024) {
    head += "X-Pad: " + std::string(100, 'a') + "\r\n";
  }
  auto v = judge_response(head, check());
  EXPECT_EQ(v.state, State::failed);
  EXPECT_EQ(v.detail, "response head over 16 KiB");
}

TEST(JudgeResponse, EndlessInterimResponsesFailPast64KiB) {
  std::string many;
  while (many.size() <= 64 * 1024) {
    many += "HTTP/1.1 100 Continue\r\n\r\n";
  }
  EXPECT_EQ(judge_response(many, check()).state, State::failed);
}

TEST(ProbeRequest, IsAClosingGetWithTheServersAddressAsHost) {
  config::HealthCheck hc;
  hc.path = "/ready?full=1";
  EXPECT_EQ(probe_request(hc, "app:8000"),
            "GET /ready?full=1 HTTP/1.1\r\nHost: app:8000\r\nUser-Agent: ward-health-check\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n");
}

// --- HealthChecker on loopback

// Upstream "app" of the one server at `ep`.
config::Upstream app_upstream(tcp::endpoint ep) {
  config::Upstream u;
  u.name = "app";
  config::ServerConfig server;
  server.address.host = ep.address().to_string();
  server.address.port = ep.port();
  server.address.host_is_ip = true;
  server.address.text = server.address.host + ":" + std::to_string(ep.port());
  u.servers.push_back(server);
  return u;
}

struct Event {
  bool passed;
  std::string detail;
};

class HealthCheckerTest : public ::testing::Test {
 protected:
  // An upstream "app" of one server at `ep`, checked every 20 ms.
  void watch(tcp::endpoint ep, uint32_t healthy_threshold, uint32_t unhealthy_threshold,
             std::chrono::milliseconds timeout = 1000ms) {
    config::HealthCheck hc;
    hc.interval = 20ms;
    hc.timeout = timeout;
    hc.healthy_threshold = healthy_threshold;
    hc.unhealthy_threshold = unhealthy_threshold;
    config::Upstream u = app_upstream(ep);
    u.health_check = hc;
    registry_.apply_static(u);
    state_ = registry_.find("app");
    stats_ = state_->hosts()->hosts.at(0).stats;
    checker_->sync(u, state_, nullptr, false);
  }

  template <typename Pred>
  bool run_until(Pred done) {
    return testing::run_until(io_, done, 5ms);
  }

  asio::io_context io_;
  std::vector<Event> checks_;
  std::vector<bool> changes_;
  std::unique_ptr<HealthChecker> checker_ = std::make_unique<HealthChecker>(io_, [this] {
    HealthEvents e;
    e.checked = [this](const std::string&, const Host&, bool passed, const std::string& detail) {
      checks_.push_back({passed, detail});
    };
    e.changed = [this](const std::string&, const Host&, bool healthy, uint32_t,
                       const std::string&) { changes_.push_back(healthy); };
    return e;
  }());
  UpstreamRegistry registry_;
  std::shared_ptr<UpstreamState> state_;
  std::shared_ptr<HostStats> stats_;
};

TEST_F(HealthCheckerTest, AHealthyServerStaysInServiceAndGetsTheConfiguredRequest) {
  FakeServer server(io_, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  watch(server.endpoint(), 1, 1);
  ASSERT_TRUE(run_until([&] { return checks_.size() >= 3; }));
  for (const auto& c : checks_) {
    EXPECT_TRUE(c.passed) << c.detail;
  }
  EXPECT_TRUE(changes_.empty());
  EXPECT_TRUE(stats_->healthy.load());
  EXPECT_EQ(server.last_request().rfind("GET /health HTTP/1.1\r\nHost: 127.0.0.1:", 0), 0u)
      << server.last_request();
}

TEST_F(HealthCheckerTest, AFailingServerLeavesAfterTheThresholdAndNotBefore) {
  FakeServer server(io_, "HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n");
  watch(server.endpoint(), 1, 3);
  ASSERT_TRUE(run_until([&] { return checks_.size() >= 2; }));
  EXPECT_TRUE(stats_->healthy.load()) << "out after 2 failures, threshold 3";
  ASSERT_TRUE(run_until([&] { return !changes_.empty(); }));
  EXPECT_FALSE(stats_->healthy.load());
  EXPECT_EQ(checks_.size(), 3u);
  EXPECT_EQ(checks_.back().detail, "status 503 (expected 200-399)");
}

TEST_F(HealthCheckerTest, ARefusingServerFailsItsChecks) {
  tcp::endpoint gone;
  {
    tcp::acceptor bound(io_, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    gone = bound.local_endpoint();
  }  // closed without listening again: its port refuses now
  watch(gone, 1, 1);
  ASSERT_TRUE(run_until([&] { return !changes_.empty(); }));
  EXPECT_FALSE(stats_->healthy.load());
  EXPECT_EQ(checks_.at(0).detail.rfind("connect failed: ", 0), 0u) << checks_.at(0).detail;
}

TEST_F(HealthCheckerTest, AServerThatNeverAnswersFailsAtTheTimeout) {
  FakeServer server(io_, "");
  auto start = std::chrono::steady_clock::now();
  watch(server.endpoint(), 1, 1, 150ms);
  ASSERT_TRUE(run_until([&] { return !checks_.empty(); }));
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_FALSE(checks_[0].passed);
  EXPECT_EQ(checks_[0].detail, "timed out after 150 ms");
  EXPECT_GE(took, 150ms);
  EXPECT_FALSE(stats_->healthy.load());
}

TEST_F(HealthCheckerTest, AnUnhealthyServerReturnsAfterEnoughPasses) {
  FakeServer server(io_, "HTTP/1.1 200 OK\r\n\r\n");
  auto ep = server.endpoint();
  // Out of service when the checks start (as after a failed run of checks).
  registry_.apply_static(app_upstream(ep));
  registry_.find("app")->hosts()->hosts.at(0).stats->healthy.store(false);
  watch(ep, 3, 1);
  ASSERT_TRUE(run_until([&] { return !changes_.empty(); }));
  EXPECT_EQ(changes_, std::vector<bool>{true});
  EXPECT_EQ(checks_.size(), 3u);
  EXPECT_TRUE(stats_->healthy.load());
}

// The first check of each server in service falls at a random point of its
// first interval, so a large upstream is not probed all at once (and, each
// loop keeping its phase, not every interval after); a server that joins
// is checked at once, since it takes no traffic until it passes.
class HealthCheckSpreadTest : public ::testing::Test {
 protected:
  using Clock = std::chrono::steady_clock;

  // Checks 8 servers every `interval` and returns how long after sync()
  // each one's first check ended.
  std::vector<Clock::duration> first_checks(std::chrono::milliseconds interval, bool joining) {
    std::vector<std::unique_ptr<FakeServer>> servers;
    config::Upstream u;
    for (int i = 0; i < 8; ++i) {
      servers.push_back(
          std::make_unique<FakeServer>(io_, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
      config::Upstream one = app_upstream(servers.back()->endpoint());
      u.name = one.name;
      u.servers.push_back(one.servers.at(0));
    }
    config::HealthCheck hc;
    hc.interval = interval;
    hc.timeout = 1000ms;
    u.health_check = hc;
    UpstreamRegistry registry;
    registry.apply_static(u);
    std::map<std::string, Clock::duration> first;
    HealthEvents events;
    const auto start = Clock::now();
    events.checked = [&](const std::string&, const Host& h, bool, const std::string&) {
      first.try_emplace(h.name, Clock::now() - start);
    };
    HealthChecker checker(io_, std::move(events));
    checker.sync(u, registry.find("app"), nullptr, joining);
    EXPECT_TRUE(testing::run_until(
        io_, [&] { return first.size() == 8; }, 5ms));
    checker.stop();
    std::vector<Clock::duration> out;
    for (const auto& [name, at] : first) {
      out.push_back(at);
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  asio::io_context io_;
};

TEST_F(HealthCheckSpreadTest, FirstChecksOfServersInServiceSpreadOverTheInterval) {
  auto at = first_checks(400ms, false);
  ASSERT_EQ(at.size(), 8u);
  // 8 uniform draws over 400 ms all within 20 ms of each other: about 1 in 10^8.
  EXPECT_GE(at.back() - at.front(), 20ms);
  EXPECT_LT(at.back(), 400ms + 1s);  // within the interval, with room for a slow machine
}

TEST_F(HealthCheckSpreadTest, JoiningServersAreCheckedAtOnce) {
  auto at = first_checks(10s, true);
  ASSERT_EQ(at.size(), 8u);
  // Spread over the 1 s cap, all 8 would land under 300 ms about once in 15,000.
  EXPECT_LT(at.back(), 300ms);
}

TEST_F(HealthCheckerTest, StopEndsEveryLoopEvenMidCheck) {
  FakeServer server(io_, "");  // every check hangs
  watch(server.endpoint(), 1, 1, 10s);
  ASSERT_TRUE(run_until([&] { return server.accepted() >= 1; }));
  checker_->stop();
  server.close();
  // Nothing is left to run: the check in flight was cancelled, no timer is armed.
  auto start = std::chrono::steady_clock::now();
  io_.restart();
  io_.run_for(5s);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_TRUE(checks_.empty());
}

}  // namespace
}  // namespace ward::upstream
