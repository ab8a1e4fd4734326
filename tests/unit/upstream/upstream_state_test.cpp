// The static server list of an upstream becomes its HostSet: each Host keeps
// the configured host without port or brackets, the name upstream TLS
// verifies and sends as SNI.

#include "proxy/upstream/upstream_state.h"

#include <gtest/gtest.h>

namespace ward::upstream {
namespace {

config::ServerConfig server(const std::string& host, uint16_t port, const std::string& text) {
  config::ServerConfig s;
  s.address.host = host;
  s.address.port = port;
  s.address.host_is_ip = true;
  s.address.text = text;
  return s;
}

config::Upstream upstream(const std::string& name, std::vector<config::ServerConfig> servers) {
  config::Upstream u;
  u.name = name;
  u.servers = std::move(servers);
  return u;
}

TEST(UpstreamStateTest, HostsKeepTheConfiguredHostForTls) {
  UpstreamRegistry registry;
  registry.apply_static(upstream(
      "secure", {server("10.0.0.5", 443, "10.0.0.5:443"), server("::1", 8443, "[::1]:8443")}));
  auto hosts = registry.get_or_create("secure")->hosts();
  ASSERT_EQ(hosts->hosts.size(), 2u);
  EXPECT_EQ(hosts->hosts[0].name, "10.0.0.5:443");
  EXPECT_EQ(hosts->hosts[0].host, "10.0.0.5");
  EXPECT_EQ(hosts->hosts[1].name, "[::1]:8443");
  EXPECT_EQ(hosts->hosts[1].host, "::1");
  EXPECT_EQ(hosts->hosts[1].endpoint.port(), 8443);
}

// Servers that left (a reload, a pod gone from a DNS answer) must not keep
// their stats for the process's life; those of servers still listed, or
// still used by a connection or an old server list, must stay.
TEST(UpstreamStateTest, PruneStatsForgetsOnlyStatsNothingElseHolds) {
  config::Upstream u = upstream(
      "app", {server("10.0.0.5", 80, "10.0.0.5:80"), server("10.0.0.6", 80, "10.0.0.6:80")});
  UpstreamRegistry registry;
  registry.apply_static(u);
  auto state = registry.get_or_create("app");
  std::shared_ptr<HostStats> departed = state->hosts()->hosts[1].stats;
  departed->failures.store(3);
  u.servers.pop_back();  // 10.0.0.6 leaves
  registry.apply_static(u);
  ASSERT_EQ(state->hosts()->hosts.size(), 1u);

  // Still held (here: a connection to it, or a worker's old server list).
  EXPECT_EQ(registry.prune_stats(), 0u);
  EXPECT_EQ(state->stats_count(), 2u);
  EXPECT_EQ(state->stats_for("10.0.0.6:80"), departed);

  std::weak_ptr<HostStats> watch = departed;
  departed.reset();
  EXPECT_EQ(registry.prune_stats(), 1u);
  EXPECT_TRUE(watch.expired()) << "the departed server's stats are still alive";
  EXPECT_EQ(state->stats_count(), 1u);
  // The server still listed keeps its stats, the same object.
  auto kept = state->hosts()->hosts[0].stats;
  EXPECT_EQ(state->stats_for("10.0.0.5:80"), kept);
  // One that comes back starts afresh.
  EXPECT_EQ(state->stats_for("10.0.0.6:80")->failures.load(), 0u);
}

// A reload that removes or renames upstreams must not leave their states and
// DNS answers for the process's life; one still in use (a worker's view, an
// older snapshot) stays until that lets go, and the configured ones stay.
TEST(UpstreamStateTest, ForgetUnconfiguredDropsOnlyRemovedUpstreamsNothingElseHolds) {
  UpstreamRegistry registry;
  config::Upstream kept = upstream("kept", {server("10.0.0.5", 80, "10.0.0.5:80")});
  config::ServerConfig by_name;
  by_name.address.host = "app.internal";
  by_name.address.port = 80;
  by_name.address.text = "app.internal:80";
  kept.servers.push_back(by_name);
  registry.resolved_names["app.internal"] = {boost::asio::ip::make_address("10.0.0.7")};
  registry.resolved_names["gone.internal"] = {boost::asio::ip::make_address("10.0.0.8")};
  registry.apply_static(kept);
  registry.apply_static(upstream("removed", {server("10.0.0.6", 80, "10.0.0.6:80")}));
  auto kept_state = registry.find("kept");
  auto removed_state = registry.find("removed");
  ASSERT_TRUE(kept_state && removed_state);

  std::vector<config::Upstream> configured{kept};
  EXPECT_EQ(registry.forget_unconfigured(configured), 0u) << "forgot a state still held";
  EXPECT_EQ(registry.find("removed"), removed_state);
  EXPECT_EQ(registry.resolved_names.count("app.internal"), 1u);
  EXPECT_EQ(registry.resolved_names.count("gone.internal"), 0u);

  std::weak_ptr<UpstreamState> watch = removed_state;
  removed_state.reset();
  kept_state.reset();
  EXPECT_EQ(registry.forget_unconfigured(configured), 1u);
  EXPECT_TRUE(watch.expired()) << "the removed upstream's state is still alive";
  EXPECT_EQ(registry.find("removed"), nullptr);
  ASSERT_NE(registry.find("kept"), nullptr) << "a configured upstream was forgotten";
  // The name still configured kept its answer: a reload that keeps it keeps
  // its servers until the next lookup.
  registry.apply_static(kept);
  EXPECT_EQ(registry.find("kept")->hosts()->hosts.size(), 2u);
}

}  // namespace
}  // namespace ward::upstream
