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

TEST(UpstreamStateTest, HostsKeepTheConfiguredHostForTls) {
  config::Upstream u;
  u.name = "secure";
  u.servers = {server("10.0.0.5", 443, "10.0.0.5:443"), server("::1", 8443, "[::1]:8443")};
  UpstreamRegistry registry;
  registry.apply_static(u);
  auto hosts = registry.get_or_create("secure")->hosts();
  ASSERT_EQ(hosts->hosts.size(), 2u);
  EXPECT_EQ(hosts->hosts[0].name, "10.0.0.5:443");
  EXPECT_EQ(hosts->hosts[0].host, "10.0.0.5");
  EXPECT_EQ(hosts->hosts[1].name, "[::1]:8443");
  EXPECT_EQ(hosts->hosts[1].host, "::1");
  EXPECT_EQ(hosts->hosts[1].endpoint.port(), 8443);
}

}  // namespace
}  // namespace ward::upstream
