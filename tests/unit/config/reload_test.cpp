// What a reload may not change: a user who edits a listener's address or
// the worker count and sends SIGHUP must be told to restart, not have the
// edit silently ignored; every other edit must be accepted.

#include "proxy/config/reload.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "proxy/config/loader.h"

namespace ward::config {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr const char* kBase = R"(workers: 2
admin: {address: 127.0.0.1:9901}
logging: {level: info, access_log: {path: stdout, format: json}}
listeners:
  - {name: web, address: 0.0.0.0:8080}
  - {name: other, address: 0.0.0.0:8081, redirect_https: 8443}
routes:
  - {match: {path_prefix: /}, upstream: app}
upstreams:
  app: {servers: [127.0.0.1:9001]}
)";

std::shared_ptr<const Config> load(const std::string& yaml) {
  LoadOptions options;
  options.env = [](std::string_view) -> std::optional<std::string> { return std::nullopt; };
  options.features.proxy_protocol = true;
  auto result = load_string(yaml, "ward.yaml", options);
  for (const auto& e : result.errors) {
    ADD_FAILURE() << e.to_string();
  }
  return result.config;
}

// kBase with `from` replaced by `to`.
std::shared_ptr<const Config> edited(const std::string& from, const std::string& to) {
  std::string yaml = kBase;
  auto at = yaml.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  yaml.replace(at, from.size(), to);
  return load(yaml);
}

TEST(RestartChanges, RoutesUpstreamsLimitsAndLevelAreReloadable) {
  auto base = load(kBase);
  ASSERT_TRUE(base);
  auto next = load(std::string(kBase) +
                   "limits: {request_timeout: 5s}\n"
                   "trusted_proxies: [10.0.0.0/8]\n");
  ASSERT_TRUE(next);
  EXPECT_THAT(restart_changes(*base, *next), IsEmpty());
  EXPECT_THAT(restart_changes(*base, *edited("127.0.0.1:9001", "127.0.0.1:9002")), IsEmpty());
  EXPECT_THAT(restart_changes(*base, *edited("level: info", "level: debug")), IsEmpty());
}

TEST(RestartChanges, WhatIsBoundAtStartIsNamed) {
  auto base = load(kBase);
  ASSERT_TRUE(base);
  EXPECT_THAT(restart_changes(*base, *edited("workers: 2", "workers: 3")),
              ElementsAre("workers: 2 -> 3"));
  EXPECT_THAT(restart_changes(*base, *edited("0.0.0.0:8081", "0.0.0.0:9081")),
              ElementsAre("listeners[1].address: 0.0.0.0:8081 -> 0.0.0.0:9081"));
  EXPECT_THAT(restart_changes(*base, *edited(", redirect_https: 8443", "")),
              ElementsAre("listeners[1].redirect_https: 8443 -> none"));
  EXPECT_THAT(restart_changes(*base, *edited("127.0.0.1:9901", "127.0.0.1:9902")),
              ElementsAre("admin.address: 127.0.0.1:9901 -> 127.0.0.1:9902"));
  EXPECT_THAT(restart_changes(*base, *edited("format: json", "format: combined")),
              ElementsAre("logging.access_log.format: json -> combined"));
  EXPECT_THAT(restart_changes(*base, *edited("  - {name: other, address: 0.0.0.0:8081, "
                                             "redirect_https: 8443}\n",
                                             "")),
              ElementsAre("listeners (count): 2 -> 1"));
  EXPECT_THAT(restart_changes(*base, *edited("{name: web, address: 0.0.0.0:8080}",
                                             "{name: web, address: 0.0.0.0:8080, "
                                             "proxy_protocol: true}")),
              ElementsAre("listeners[0].proxy_protocol: false -> true"));
}

}  // namespace
}  // namespace ward::config
