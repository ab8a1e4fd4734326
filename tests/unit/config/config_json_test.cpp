#include "proxy/config/config_json.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

// Header-only Boost.JSON, to check the output is real JSON and read it back.
#include <boost/json/src.hpp>

#include "proxy/config/loader.h"

namespace ward::config {
namespace {

namespace json = boost::json;
using ::testing::HasSubstr;
using ::testing::Not;

class ConfigJsonTest : public ::testing::Test {
 protected:
  ConfigJsonTest() {
    options_.features.tls = true;
    options_.features.health_checks = true;
    options_.features.passive = true;
    options_.features.dns = true;
    options_.features.filters = {"rate_limit", "api_key", "headers", "request_id", "cors"};
    options_.cpu_count = 4;
    options_.env = [](std::string_view name) -> std::optional<std::string> {
      if (name == "API_KEY") {
        return "s3cret-from-env";
      }
      return std::nullopt;
    };
  }

  std::shared_ptr<const Config> load(std::string_view yaml) {
    if (!yaml.empty() && yaml.front() == '\n') {
      yaml.remove_prefix(1);
    }
    auto result = load_string(yaml, "ward.yaml", options_);
    for (const auto& e : result.errors) {
      ADD_FAILURE() << e.to_string();
    }
    return result.config;
  }

  // The JSON text of a config, parsed back; fails the test if it is not JSON.
  json::object render(std::string_view yaml, uint64_t generation = 1) {
    auto config = load(yaml);
    if (!config) {
      return {};
    }
    text_ = to_json(*config, generation);
    boost::system::error_code ec;
    json::value v = json::parse(text_, ec);
    EXPECT_FALSE(ec) << ec.message() << "\n" << text_;
    EXPECT_TRUE(v.is_object()) << text_;
    return v.is_object() ? v.as_object() : json::object{};
  }

  LoadOptions options_;
  std::string text_;
};

constexpr std::string_view kMinimal = R"(
listeners:
  - name: web
    address: 127.0.0.1:0
routes:
  - upstream: app
upstreams:
  app:
    servers: [127.0.0.1:9001]
)";

TEST_F(ConfigJsonTest, RendersEveryFieldWithDefaultsFilledIn) {
  json::object o = render(kMinimal, 7);
  EXPECT_EQ(o.at("generation"), 7);
  EXPECT_EQ(o.at("source"), "ward.yaml");
  EXPECT_EQ(o.at("workers"), 4);
  EXPECT_EQ(o.at("admin").at("address"), "127.0.0.1:9901");

  const auto& logging = o.at("logging");
  EXPECT_EQ(logging.at("level"), "info");
  EXPECT_EQ(logging.at("error_log"), "stderr");
  EXPECT_EQ(logging.at("access_log").at("path"), "stdout");
  EXPECT_EQ(logging.at("access_log").at("format"), "json");
  EXPECT_EQ(logging.at("access_log").at("max_size"), 10 * 1024 * 1024);
  EXPECT_EQ(logging.at("access_log").at("max_files"), 5);

  const auto& limits = o.at("limits");
  EXPECT_EQ(limits.at("header_timeout"), "10s");
  EXPECT_EQ(limits.at("idle_timeout"), "1m");
  EXPECT_EQ(limits.at("drain_timeout"), "30s");
  EXPECT_EQ(limits.at("max_header_size"), 16384);
  EXPECT_EQ(limits.at("max_uri_size"), 8192);
  EXPECT_EQ(limits.at("max_body_size"), 10485760);
  EXPECT_EQ(limits.at("max_connections"), 20000);
  EXPECT_EQ(limits.at("max_concurrent_streams"), 128);

  const auto& listener = o.at("listeners").at(0);
  EXPECT_EQ(listener.at("name"), "web");
  EXPECT_EQ(listener.at("address"), "127.0.0.1:0");
  EXPECT_TRUE(listener.at("redirect_https").is_null());
  EXPECT_EQ(listener.at("proxy_protocol"), false);
  EXPECT_TRUE(listener.at("tls").is_null());

  EXPECT_TRUE(o.at("trusted_proxies").as_array().empty());
  EXPECT_TRUE(o.at("filters").as_array().empty());

  const auto& route = o.at("routes").at(0);
  EXPECT_EQ(route.at("name"), "route0");
  EXPECT_TRUE(route.at("match").at("host").is_null());
  EXPECT_EQ(route.at("match").at("path_prefix"), "/");
  EXPECT_TRUE(route.at("match").at("methods").as_array().empty());
  EXPECT_EQ(route.at("upstream"), "app");
  EXPECT_EQ(route.at("strip_prefix"), false);

  const auto& app = o.at("upstreams").at("app");
  EXPECT_EQ(app.at("balance"), "round_robin");
  EXPECT_EQ(app.at("servers").at(0).at("address"), "127.0.0.1:9001");
  EXPECT_EQ(app.at("servers").at(0).at("weight"), 1);
  EXPECT_EQ(app.at("dns_refresh"), "5s");
  EXPECT_EQ(app.at("connect_timeout"), "2s");
  EXPECT_EQ(app.at("keepalive"), 64);
  EXPECT_EQ(app.at("retries"), 1);
  EXPECT_EQ(app.at("tls"), false);
  EXPECT_TRUE(app.at("tls_ca").is_null());
  EXPECT_TRUE(app.at("health_check").is_null());
  EXPECT_TRUE(app.at("passive").is_null());
}

TEST_F(ConfigJsonTest, DurationsUseTheLargestExactUnit) {
  json::object o = render(std::string(kMinimal) + R"(limits:
  header_timeout: 250ms
  idle_timeout: 90s
  request_timeout: 120m
  body_timeout: 1500ms
  drain_timeout: 0s
)");
  const auto& limits = o.at("limits");
  EXPECT_EQ(limits.at("header_timeout"), "250ms");
  EXPECT_EQ(limits.at("idle_timeout"), "90s");
  EXPECT_EQ(limits.at("request_timeout"), "2h");
  EXPECT_EQ(limits.at("body_timeout"), "1500ms");
  EXPECT_EQ(limits.at("drain_timeout"), "0s");
}

TEST_F(ConfigJsonTest, ApiKeysAreRedacted) {
  json::object o = render(R"(
listeners: [{name: web, address: ":0"}]
routes:
  - upstream: app
    filters:
      - api_key:
          header: X-API-Key
          keys: ["${API_KEY}", literal-key]
upstreams: {app: {servers: ["127.0.0.1:1"]}}
)");
  EXPECT_THAT(text_, Not(HasSubstr("s3cret-from-env")));
  EXPECT_THAT(text_, Not(HasSubstr("literal-key")));
  const auto& options = o.at("routes").at(0).at("filters").at(0).at("api_key");
  EXPECT_EQ(options.at("keys"), "<redacted>");
  EXPECT_EQ(options.at("header"), "X-API-Key");
}

TEST_F(ConfigJsonTest, SecretLookingOptionsAreRedactedAtAnyDepth) {
  json::object o = render(std::string(kMinimal) + R"(filters:
  - headers:
      request_set:
        Authorization: Bearer abc
        X-Upstream-Token: tok
        X-Trace: visible
      client_secret: hush
      PassWord: hunter2
      keys_file: /etc/ward/keys
)");
  EXPECT_THAT(text_, Not(HasSubstr("abc")));
  EXPECT_THAT(text_, Not(HasSubstr("tok\"")));
  EXPECT_THAT(text_, Not(HasSubstr("hush")));
  EXPECT_THAT(text_, Not(HasSubstr("hunter2")));
  const auto& options = o.at("filters").at(0).at("headers");
  EXPECT_EQ(options.at("request_set").at("X-Trace"), "visible");
  EXPECT_EQ(options.at("request_set").at("Authorization"), "<redacted>");
  EXPECT_EQ(options.at("keys_file"), "<redacted>");
}

TEST_F(ConfigJsonTest, TlsKeyPathsAreShownButNeverTheirContents) {
  char cert[] = "/tmp/ward_json_cert_XXXXXX";
  char key[] = "/tmp/ward_json_key_XXXXXX";
  int cert_fd = ::mkstemp(cert);
  int key_fd = ::mkstemp(key);
  ASSERT_GE(cert_fd, 0);
  ASSERT_GE(key_fd, 0);
  constexpr std::string_view kKeyPem = "-----BEGIN PRIVATE KEY-----\nsecret\n";
  ASSERT_EQ(::write(key_fd, kKeyPem.data(), kKeyPem.size()), ssize_t(kKeyPem.size()));
  ::close(cert_fd);
  ::close(key_fd);
  json::object o = render(std::string(R"(
listeners:
  - name: websecure
    address: ":0"
    tls:
      certificates: [{cert: )") +
                          cert + ", key: " + key + R"(}]
routes: []
upstreams: {}
)");
  ::unlink(cert);
  ::unlink(key);
  const auto& tls = o.at("listeners").at(0).at("tls");
  EXPECT_EQ(tls.at("certificates").at(0).at("cert"), cert);
  EXPECT_EQ(tls.at("certificates").at(0).at("key"), key);
  EXPECT_EQ(tls.at("min_version"), "1.2");
  EXPECT_EQ(tls.at("alpn").at(1), "http/1.1");
  EXPECT_EQ(tls.at("session_tickets"), true);
  EXPECT_TRUE(tls.at("client_ca").is_null());
  EXPECT_THAT(text_, Not(HasSubstr("PRIVATE KEY")));
}

TEST_F(ConfigJsonTest, FilterOptionScalarsKeepTheirTypes) {
  json::object o = render(std::string(kMinimal) + R"(filters:
  - rate_limit:
      rate: 30/minute
      burst: 10
      status: "429"
      dry_run: true
      share: ~
      weight: 0.5
      padded: 007
  - request_id:
)");
  const auto& rl = o.at("filters").at(0).at("rate_limit");
  EXPECT_EQ(rl.at("rate"), "30/minute");
  EXPECT_EQ(rl.at("burst"), 10);
  EXPECT_EQ(rl.at("status"), "429");  // quoted in YAML: a string
  EXPECT_EQ(rl.at("dry_run"), true);
  EXPECT_TRUE(rl.at("share").is_null());
  EXPECT_EQ(rl.at("weight"), 0.5);
  EXPECT_EQ(rl.at("padded"), "007");  // not a JSON number
  EXPECT_TRUE(o.at("filters").at(1).at("request_id").as_object().empty());
}

TEST_F(ConfigJsonTest, EveryOptionalSectionIsRendered) {
  json::object o = render(R"(
listeners: [{name: web, address: ":0", redirect_https: 443}]
trusted_proxies: [10.0.0.0/8]
routes:
  - name: api
    match: {host: "*.example.com", methods: [get]}
    upstream: app
    strip_prefix: true
upstreams:
  app:
    balance: least_conn
    servers: [{address: "app:8000", weight: 3}]
    health_check: {path: /up, interval: 10s, expect_status: 204}
    passive: {consecutive_failures: 2, ejection_time: 5m}
)");
  EXPECT_EQ(o.at("listeners").at(0).at("redirect_https"), 443);
  EXPECT_EQ(o.at("trusted_proxies").at(0), "10.0.0.0/8");
  const auto& route = o.at("routes").at(0);
  EXPECT_EQ(route.at("match").at("host"), "*.example.com");
  EXPECT_EQ(route.at("match").at("methods").at(0), "GET");
  EXPECT_EQ(route.at("strip_prefix"), true);
  const auto& app = o.at("upstreams").at("app");
  EXPECT_EQ(app.at("balance"), "least_conn");
  EXPECT_EQ(app.at("servers").at(0).at("address"), "app:8000");
  EXPECT_EQ(app.at("servers").at(0).at("weight"), 3);
  EXPECT_EQ(app.at("health_check").at("path"), "/up");
  EXPECT_EQ(app.at("health_check").at("interval"), "10s");
  EXPECT_EQ(app.at("health_check").at("expect_status"), "204");
  EXPECT_EQ(app.at("health_check").at("healthy_threshold"), 2);
  EXPECT_EQ(app.at("passive").at("consecutive_failures"), 2);
  EXPECT_EQ(app.at("passive").at("ejection_time"), "5m");
}

TEST_F(ConfigJsonTest, UpstreamsKeepFileOrder) {
  json::object o = render(R"(
listeners: [{name: web, address: ":0"}]
routes: []
upstreams:
  zeta: {servers: ["127.0.0.1:1"]}
  alpha: {servers: ["127.0.0.1:2"]}
)");
  const auto& upstreams = o.at("upstreams").as_object();
  ASSERT_EQ(upstreams.size(), 2u);
  EXPECT_EQ(upstreams.begin()->key(), "zeta");
  EXPECT_EQ(std::next(upstreams.begin())->key(), "alpha");
}

TEST_F(ConfigJsonTest, HostileStringsStayInsideTheirJsonStrings) {
  json::object o = render(std::string(R"(
listeners: [{name: "we\"b\n\u0001", address: ":0"}]
routes: []
upstreams: {}
logging: {error_log: "bad )") +
                          "\xff\xfe" + R"("}
)");
  EXPECT_EQ(o.at("listeners").at(0).at("name"), "we\"b\n\x01");
  EXPECT_EQ(o.at("logging").at("error_log"), "bad \xEF\xBF\xBD\xEF\xBF\xBD");
}

}  // namespace
}  // namespace ward::config
