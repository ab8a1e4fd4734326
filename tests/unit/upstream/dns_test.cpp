// DNS upstream servers, with a scripted resolver: what a user relies on is
// that the servers follow the name (docker compose --scale, a headless
// Service), that a DNS failure keeps the servers that were working, and
// that with health checks a server that appears later serves only after
// its first passing check.

#include "proxy/upstream/dns.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "proxy/upstream/health_check.h"
#include "tests/unit/upstream/fake_http_server.h"

namespace ward::upstream {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

using Answers = std::map<std::string, Resolution>;

asio::awaitable<Resolution> scripted(const Answers* answers, std::string name) {
  auto it = answers->find(name);
  co_return it == answers->end() ? Resolution{{}, "Host not found"} : it->second;
}

Resolution ips(std::initializer_list<const char*> list) {
  Resolution r;
  for (const char* ip : list) {
    r.addresses.push_back(asio::ip::make_address(ip));
  }
  return r;
}

config::ServerConfig server(const std::string& host, uint16_t port, bool is_ip,
                            uint32_t weight = 1) {
  config::ServerConfig s;
  s.address.host = host;
  s.address.port = port;
  s.address.host_is_ip = is_ip;
  s.address.text = host + ":" + std::to_string(port);
  s.weight = weight;
  return s;
}

std::vector<std::string> names(const HostSet& set) {
  std::vector<std::string> out;
  for (const auto& h : set.hosts) {
    out.push_back(h.name);
  }
  return out;
}

TEST(BuildHostSet, IpServersThenEachNamesAddressesInFileOrderOnceEach) {
  config::Upstream u;
  u.name = "app";
  u.servers = {server("10.0.0.1", 80, true), server("app", 8000, false, 3),
               server("10.0.0.7", 8000, true)};
  UpstreamState state("app");
  ResolvedNames resolved{
      {"app", {asio::ip::make_address("10.0.0.7"), asio::ip::make_address("fd00::5")}}};
  auto set = build_host_set(u, resolved, state);
  // 10.0.0.7:8000 comes from the name first; the literal entry adds nothing.
  EXPECT_EQ(names(*set),
            (std::vector<std::string>{"10.0.0.1:80", "10.0.0.7:8000", "[fd00::5]:8000"}));
  EXPECT_EQ(set->hosts[1].host, "app");  // what upstream TLS verifies
  EXPECT_EQ(set->hosts[1].weight, 3u);
  EXPECT_EQ(set->hosts[2].endpoint.port(), 8000);
  // Stats are the state's: the same server keeps them in the next set.
  auto again = build_host_set(u, resolved, state);
  EXPECT_EQ(again->hosts[2].stats, set->hosts[2].stats);
}

class DnsTest : public ::testing::Test {
 protected:
  DnsTest() {
    upstream_.name = "app";
    upstream_.dns_refresh = 10ms;
    upstream_.servers = {server("app", 8000, false)};
    registry_.apply_static(upstream_);
    state_ = registry_.find("app");
  }

  void start(ResolvedNames* cache = nullptr, bool at_start = true) {
    DnsEvents events;
    events.failed = [this](const std::string&, const std::string& name, const std::string& error,
                           size_t kept) {
      failures_.push_back(name + ": " + error + " kept " + std::to_string(kept));
    };
    events.published = [this](const config::Upstream& u, bool first) {
      published_.push_back(first);
      if (checker_) {
        checker_->sync(u, state_, nullptr, !first);
      }
      std::map<std::string, bool> health;
      for (const auto& h : state_->hosts()->hosts) {
        health[h.name] = h.stats->healthy.load();
      }
      health_at_publish_.push_back(health);
    };
    dns_ = std::make_unique<DnsDiscovery>(
        io_, [answers = &answers_](std::string name) { return scripted(answers, std::move(name)); },
        std::move(events), cache);
    dns_->watch(upstream_, state_, at_start);
  }

  template <typename Pred>
  bool run_until(Pred done) {
    return testing::run_until(io_, done, 2ms);
  }

  // Lets at least `rounds` more rounds of lookups run.
  void rounds(int n) {
    auto until = std::chrono::steady_clock::now() + n * upstream_.dns_refresh + 5ms;
    run_until([&] { return std::chrono::steady_clock::now() >= until; });
  }

  asio::io_context io_;
  Answers answers_;
  config::Upstream upstream_;
  UpstreamRegistry registry_;
  std::shared_ptr<UpstreamState> state_;
  std::vector<bool> published_;
  std::vector<std::string> failures_;
  std::vector<std::map<std::string, bool>> health_at_publish_;  // as each set went out
  std::unique_ptr<HealthChecker> checker_;
  std::unique_ptr<DnsDiscovery> dns_;
};

TEST_F(DnsTest, TheServersFollowTheName) {
  answers_["app"] = ips({"10.0.0.2", "10.0.0.1"});
  start();
  ASSERT_TRUE(run_until([&] { return published_.size() == 1; }));
  EXPECT_EQ(names(*state_->hosts()), (std::vector<std::string>{"10.0.0.1:8000", "10.0.0.2:8000"}));
  EXPECT_EQ(published_, std::vector<bool>{true});

  rounds(3);  // the same answer: nothing new to publish
  uint64_t version = state_->version();
  EXPECT_EQ(published_.size(), 1u);

  answers_["app"] = ips({"10.0.0.3", "10.0.0.2"});  // scaled: one replaced
  ASSERT_TRUE(run_until([&] { return state_->version() != version; }));
  EXPECT_EQ(names(*state_->hosts()), (std::vector<std::string>{"10.0.0.2:8000", "10.0.0.3:8000"}));
  EXPECT_EQ(published_, (std::vector<bool>{true, false}));
}

TEST_F(DnsTest, AFailingLookupKeepsTheServersThatWereWorking) {
  answers_["app"] = ips({"10.0.0.1"});
  start();
  ASSERT_TRUE(run_until([&] { return published_.size() == 1; }));
  answers_["app"] = Resolution{{}, "Temporary failure in name resolution"};
  rounds(4);
  EXPECT_EQ(names(*state_->hosts()), std::vector<std::string>{"10.0.0.1:8000"});
  // Said once, not once a round.
  EXPECT_EQ(failures_,
            std::vector<std::string>{"app: Temporary failure in name resolution kept 1"});
  answers_["app"] = Resolution{};  // an empty answer is a failure too
  rounds(2);
  EXPECT_EQ(names(*state_->hosts()), std::vector<std::string>{"10.0.0.1:8000"});
  EXPECT_EQ(failures_.back(), "app: no addresses kept 1");
}

TEST_F(DnsTest, ANameThatNeverResolvedLeavesTheUpstreamWithItsIpServersOnly) {
  upstream_.servers.insert(upstream_.servers.begin(), server("10.9.9.9", 80, true));
  registry_.apply_static(upstream_);
  start();
  rounds(2);
  EXPECT_EQ(names(*state_->hosts()), std::vector<std::string>{"10.9.9.9:80"});
  EXPECT_EQ(failures_, std::vector<std::string>{"app: Host not found kept 0"});
}

TEST_F(DnsTest, WithHealthChecksALaterServerServesOnlyAfterItsFirstPassingCheck) {
  testing::FakeServer ok(io_, "HTTP/1.1 200 OK\r\n\r\n");  // on 127.0.0.1 only
  const uint16_t port = ok.endpoint().port();
  config::HealthCheck hc;
  hc.interval = 20ms;
  hc.healthy_threshold = 2;
  hc.unhealthy_threshold = 3;
  upstream_.health_check = hc;
  upstream_.servers = {server("app", port, false)};
  int passes = 0;
  HealthEvents events;
  events.checked = [&](const std::string&, const Host& h, bool passed, const std::string&) {
    passes += passed && h.name == "127.0.0.1:" + std::to_string(port);
  };
  checker_ = std::make_unique<HealthChecker>(io_, std::move(events));

  // First answer: 127.0.0.2, where nothing listens. Known at start, it
  // serves until 3 checks in a row fail.
  answers_["app"] = ips({"127.0.0.2"});
  start();
  ASSERT_TRUE(run_until([&] { return published_.size() == 1; }));
  EXPECT_EQ(health_at_publish_.back(),
            (std::map<std::string, bool>{{"127.0.0.2:" + std::to_string(port), true}}));
  EXPECT_EQ(checker_->size(), 1u);

  // 127.0.0.1 appears: out of service until one check passes (not two).
  answers_["app"] = ips({"127.0.0.1", "127.0.0.2"});
  ASSERT_TRUE(run_until([&] { return published_.size() == 2; }));
  const Host& later = state_->hosts()->hosts.at(0);
  ASSERT_EQ(later.name, "127.0.0.1:" + std::to_string(port));
  EXPECT_EQ(health_at_publish_.back(),
            (std::map<std::string, bool>{{later.name, false},
                                         {"127.0.0.2:" + std::to_string(port), true}}));
  EXPECT_EQ(checker_->size(), 2u);
  ASSERT_TRUE(run_until([&] { return later.stats->healthy.load(); }));
  EXPECT_EQ(passes, 1);
  // Asked by its name, as a virtual host behind it would expect.
  EXPECT_NE(ok.last_request().find("\r\nHost: app:" + std::to_string(port) + "\r\n"),
            std::string::npos)
      << ok.last_request();

  // 127.0.0.2 is gone from the answer: its loop ends.
  answers_["app"] = ips({"127.0.0.1"});
  ASSERT_TRUE(run_until([&] { return published_.size() == 3; }));
  EXPECT_EQ(checker_->size(), 1u);
}

TEST_F(DnsTest, ALoopStartedAgainBeginsFromTheLastAnswers) {
  // What a reload does: the registry publishes the names' last answers at
  // once, and the new loop starts from them, so a failing lookup right
  // after the reload does not empty the upstream.
  registry_.resolved_names["app"] = {asio::ip::make_address("10.0.0.1")};
  registry_.apply_static(upstream_);
  EXPECT_EQ(names(*state_->hosts()), std::vector<std::string>{"10.0.0.1:8000"});
  answers_["app"] = Resolution{{}, "Temporary failure in name resolution"};
  start(&registry_.resolved_names, false);
  rounds(3);
  EXPECT_EQ(names(*state_->hosts()), std::vector<std::string>{"10.0.0.1:8000"});
  EXPECT_EQ(failures_,
            std::vector<std::string>{"app: Temporary failure in name resolution kept 1"});
  // A new answer reaches the cache too.
  answers_["app"] = ips({"10.0.0.2"});
  ASSERT_TRUE(run_until([&] { return !published_.empty(); }));
  EXPECT_EQ(published_, std::vector<bool>{false});
  EXPECT_EQ(registry_.resolved_names["app"],
            std::vector<asio::ip::address>{asio::ip::make_address("10.0.0.2")});
}

TEST_F(DnsTest, StopEndsTheLoops) {
  answers_["app"] = ips({"10.0.0.1"});
  start();
  ASSERT_TRUE(run_until([&] { return published_.size() == 1; }));
  dns_->stop();
  auto start = std::chrono::steady_clock::now();
  io_.restart();
  io_.run_for(5s);  // returns at once when nothing is left to run
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

}  // namespace
}  // namespace ward::upstream
