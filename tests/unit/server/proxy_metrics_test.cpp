#include "proxy/server/proxy_metrics.h"

#include <gtest/gtest.h>

namespace ward::server {
namespace {

class DepartedServersTest : public ::testing::Test {
 protected:
  observe::Registry registry_{2};
  ProxyMetrics m_{registry_};
};

TEST_F(DepartedServersTest, AWorkersPerServerCountersOfServersThatLeftGo) {
  // Worker 1 counted requests to three servers of `app` and one of `api`.
  m_.upstream_requests.inc(1, {"app", "10.0.0.1:80", "200"});
  m_.upstream_requests.inc(1, {"app", "10.0.0.2:80", "200"}, 5);
  m_.upstream_requests.inc(1, {"app", "10.0.0.2:80", "error"});
  m_.upstream_connect_failures.inc(1, {"app", "10.0.0.2:80"});
  m_.ejections.inc(1, {"app", "10.0.0.2:80"});
  m_.upstream_requests.inc(1, {"api", "10.0.0.2:80", "200"}, 7);  // same address, other upstream
  m_.upstream_requests.inc(0, {"app", "10.0.0.2:80", "200"}, 2);  // worker 0's shard
  m_.upstream_reused.inc(1, {"app"});

  // 10.0.0.2 left `app` (a reload, a DNS answer); `api` keeps it.
  ServerNames now = {{"app", "10.0.0.1:80"}, {"api", "10.0.0.2:80"}};
  EXPECT_EQ(drop_departed_servers(m_, 1, now), 4u);

  EXPECT_EQ(m_.upstream_requests.value({"app", "10.0.0.1:80", "200"}), 1u);
  EXPECT_EQ(m_.upstream_requests.value({"api", "10.0.0.2:80", "200"}), 7u);
  EXPECT_EQ(m_.upstream_connect_failures.value({"app", "10.0.0.2:80"}), 0u);
  EXPECT_EQ(m_.ejections.value({"app", "10.0.0.2:80"}), 0u);
  EXPECT_EQ(m_.upstream_requests.value({"app", "10.0.0.2:80", "error"}), 0u);
  // Worker 0 has not swept its own shard yet; per-upstream series stay.
  EXPECT_EQ(m_.upstream_requests.value({"app", "10.0.0.2:80", "200"}), 2u);
  EXPECT_EQ(m_.upstream_reused.value({"app"}), 1u);
  EXPECT_EQ(drop_departed_servers(m_, 0, now), 1u);
  EXPECT_EQ(registry_.render().find("app\",server=\"10.0.0.2:80\""), std::string::npos);
}

TEST_F(DepartedServersTest, HealthCheckCountersOfServersThatLeftGo) {
  m_.health_checks.inc(0, {"app", "10.0.0.1:80", "pass"});
  m_.health_checks.inc(0, {"app", "10.0.0.2:80", "pass"});
  m_.health_checks.inc(0, {"app", "10.0.0.2:80", "fail"});
  EXPECT_EQ(drop_departed_health_checks(m_, {{"app", "10.0.0.1:80"}}), 2u);
  EXPECT_EQ(m_.health_checks.value({"app", "10.0.0.1:80", "pass"}), 1u);
  EXPECT_EQ(m_.health_checks.value({"app", "10.0.0.2:80", "fail"}), 0u);
  // An empty server list (every upstream gone) leaves nothing.
  EXPECT_EQ(drop_departed_health_checks(m_, {}), 1u);
}

}  // namespace
}  // namespace ward::server
