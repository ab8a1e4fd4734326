#include "proxy/config/loader.h"
#include "proxy/config/reader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>

namespace ward::config {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using ::testing::StartsWith;

// The YAML block of CONFIG.md, verbatim: the contract's own example must load.
constexpr std::string_view kConfigMdExample =
    R"yaml(workers: auto            # worker threads; auto = one per CPU core; or a number

admin:                   # operator endpoints, plain HTTP; keep it private
  address: 127.0.0.1:9901
  # GET /healthz   liveness: 200 {"status":"healthy","version":"..."}
  # GET /readyz    readiness: 200 when serving; 503 while draining or while any
  #                route's upstream has no healthy server
  # GET /metrics   Prometheus text exposition format 0.0.4
  # GET /upstreams JSON: every upstream and server with health, active
  #                requests, counters
  # GET /config    the effective config as JSON, secrets redacted, with
  #                "generation": N (1 at start, +1 per successful reload)

logging:
  level: info            # trace | debug | info | warn | error
  error_log: stderr      # stderr | stdout | a file path
  access_log:
    path: stdout         # stdout | stderr | off | a file path
    format: json         # json (one object per line) | combined (Apache/nginx style)
                         # json keys: time (RFC 3339 UTC), client_ip, method, host,
                         # path, query, protocol, status, bytes_in, bytes_out,
                         # duration_ms, route, upstream, upstream_server,
                         # upstream_duration_ms, request_id, user_agent, tls_version
    max_size: 10MiB      # rotate a file log at this size ...
    max_files: 5         # ... keeping this many old files

limits:                  # protection for every downstream connection
  header_timeout: 10s    # whole request head must arrive within this (slowloris)
  idle_timeout: 60s      # keep-alive idle time before close
  request_timeout: 60s   # time for the upstream to send its response head
  body_timeout: 60s      # max gap between body bytes, either direction
  drain_timeout: 30s     # on SIGTERM, wait this long for in-flight requests
  max_header_size: 16KiB # request line + headers; over it: 431
  max_uri_size: 8KiB     # over it: 414
  max_body_size: 10MiB   # request body; over it: 413 (0 = unlimited)
  max_connections: 20000 # per process; over it new connections wait in the backlog
  max_concurrent_streams: 128  # per HTTP/2 connection

listeners:               # required, at least one
  - name: web            # required, unique
    address: 0.0.0.0:8080          # required
    redirect_https: 8443           # optional: answer every request with 308 to
                                   # https://<host>:8443<uri> (443 omits the port)
    proxy_protocol: false          # true: expect a PROXY v1/v2 header first
                                   # (behind a cloud load balancer)
  - name: websecure
    address: 0.0.0.0:8443
    tls:                           # present = this listener terminates TLS
      certificates:                # required, at least one; the first is the
        - cert: certs/dev.crt      # default for unknown/missing SNI; the others
          key: certs/dev.key       # are chosen by SNI against each cert's
                                   # SAN DNS names (wildcards allowed)
      min_version: "1.2"           # "1.2" | "1.3"; nothing older is possible
      ciphers: default             # default = ECDHE with AES-GCM/ChaCha20 only
      alpn: [h2, http/1.1]         # h2 enables HTTP/2
      session_tickets: true
      client_ca: null              # a CA file: require client certs (mTLS)

trusted_proxies: []      # CIDRs whose X-Forwarded-For / PROXY header is believed
                         # when deciding the client IP; others: the socket peer

filters:                 # the global chain: runs for every request, routed or
  - request_id: {}       # not (a 404 gets it too), before the route's own filters
  - security_headers: {} # defaults below

routes:                  # required; first match wins, in file order
  - name: api                      # optional, used in metrics and logs
    match:
      host: api.example.com        # optional; exact or *.example.com; port ignored
      path_prefix: /api/           # optional; default "/"; a plain string prefix
                                   # (/api matches /apix; write /api/ for a segment)
      methods: [GET, POST]         # optional
    upstream: backend              # required: a key of upstreams
    strip_prefix: false            # true: /api/x is sent upstream as /x; an empty
                                   # result becomes "/"
    filters:
      - rate_limit:
          key: client_ip           # client_ip | header:NAME | cookie:NAME
          rate: 30/minute          # token bucket refill rate
          burst: 10                # bucket size; a new client starts full
      - api_key:
          header: X-API-Key
          keys: ["${API_KEY}"]     # or keys_file: a file with one key per line
  - match: { path_prefix: / }
    upstream: frontend

upstreams:               # required
  backend:
    balance: round_robin # round_robin (smooth weighted) | least_conn |
                         # random_two (power of two choices) | ip_hash
                         # (consistent hash of client IP: adding or removing a
                         # server moves only ~1/n of clients)
    servers:             # required, at least one
      - 127.0.0.1:9001                   # short form
      - address: 127.0.0.1:9002
        weight: 2                        # default 1
      - address: app:8000                # a DNS name is re-resolved every
                                         # dns_refresh; every A/AAAA record is
                                         # a server (docker compose --scale,
                                         # Kubernetes headless services)
    dns_refresh: 5s
    connect_timeout: 2s
    keepalive: 64        # idle pooled connections kept per worker
    retries: 1           # extra attempts on another server when connecting
                         # fails, or when the request is idempotent and the
                         # upstream closed before any response byte
    tls: false           # true: talk TLS to the servers (verify against system
                         # CAs, or tls_ca: FILE; tls_server_name: NAME)
    health_check:        # optional; without it all servers count healthy.
                         # One checker per process (not per worker). Servers
                         # known at start count healthy until checks say
                         # otherwise; servers added later (DNS) join after
                         # their first passing check.
      path: /health      # active check: GET this on each server
      interval: 5s
      timeout: 2s
      healthy_threshold: 2     # consecutive passes to return to service
      unhealthy_threshold: 3   # consecutive failures to leave it
      expect_status: 200-399
    passive:                   # optional: outlier ejection from live traffic,
                               # off unless this section is present
      consecutive_failures: 5  # connect errors, resets, 502/503/504 in a row
      ejection_time: 30s       # doubled on each repeat ejection, max 5m
  frontend:
    servers: [127.0.0.1:3000]
)yaml";

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

Features all_features() {
  Features f;
  f.tls = true;
  f.upstream_tls = true;
  f.proxy_protocol = true;
  f.health_checks = true;
  f.passive = true;
  f.dns = true;
  f.filters = {"rate_limit", "security_headers", "cors",     "ip_access",
               "api_key",    "request_id",       "compress", "headers"};
  return f;
}

// A file that exists for the duration of a test (certificates, keys, CAs).
class TempFile {
 public:
  explicit TempFile(const std::string& content = "-----BEGIN TEST-----\n") {
    char name[] = "/tmp/ward_config_test_XXXXXX";
    int fd = ::mkstemp(name);
    EXPECT_GE(fd, 0);
    path_ = name;
    EXPECT_EQ(::write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
    ::close(fd);
  }
  ~TempFile() { std::filesystem::remove(path_); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string replace_all(std::string s, std::string_view from, std::string_view to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) {
    s.replace(at, from.size(), to);
  }
  return s;
}

class LoaderTest : public ::testing::Test {
 protected:
  LoaderTest() {
    options_.features = all_features();
    options_.cpu_count = 8;
    options_.env = [this](std::string_view name) -> std::optional<std::string> {
      auto it = env_.find(std::string(name));
      if (it == env_.end()) {
        return std::nullopt;
      }
      return it->second;
    };
  }

  // Inline YAML starts on the line after R"( so that line 1 is the first line
  // written.
  LoadResult load(std::string_view yaml) {
    if (!yaml.empty() && yaml.front() == '\n') {
      yaml.remove_prefix(1);
    }
    return load_string(yaml, "ward.yaml", options_);
  }

  // The loaded config; fails the test with every error if there were any.
  std::shared_ptr<const Config> load_ok(std::string_view yaml) {
    auto result = load(yaml);
    for (const auto& e : result.errors) {
      ADD_FAILURE() << e.to_string();
    }
    return result.config;
  }

  std::vector<std::string> errors(std::string_view yaml) {
    auto result = load(yaml);
    EXPECT_EQ(result.config, nullptr);
    std::vector<std::string> out;
    for (const auto& e : result.errors) {
      out.push_back(e.to_string());
    }
    return out;
  }

  LoadOptions options_;
  std::map<std::string, std::string> env_;
};

// --- valid configs and defaults ---------------------------------------------

TEST_F(LoaderTest, MinimalConfigGetsEveryDefault) {
  auto c = load_ok(kMinimal);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->source_path, "ward.yaml");
  EXPECT_EQ(c->workers, 8u);  // auto = cpu_count
  EXPECT_EQ(c->admin.address.text, "127.0.0.1:9901");
  EXPECT_EQ(c->admin.address.host, "127.0.0.1");
  EXPECT_EQ(c->admin.address.port, 9901);

  EXPECT_EQ(c->logging.level, "info");
  EXPECT_EQ(c->logging.error_log, "stderr");
  EXPECT_EQ(c->logging.access_log.path, "stdout");
  EXPECT_EQ(c->logging.access_log.format, AccessLogFormat::json);
  EXPECT_EQ(c->logging.access_log.max_size, 10 * kMiB);
  EXPECT_EQ(c->logging.access_log.max_files, 5u);

  const Limits& l = c->limits;
  EXPECT_EQ(l.header_timeout, 10s);
  EXPECT_EQ(l.idle_timeout, 60s);
  EXPECT_EQ(l.request_timeout, 60s);
  EXPECT_EQ(l.body_timeout, 60s);
  EXPECT_EQ(l.drain_timeout, 30s);
  EXPECT_EQ(l.max_header_size, 16 * kKiB);
  EXPECT_EQ(l.max_uri_size, 8 * kKiB);
  EXPECT_EQ(l.max_body_size, 10 * kMiB);
  EXPECT_EQ(l.max_connections, 20000u);
  EXPECT_EQ(l.max_concurrent_streams, 128u);

  ASSERT_THAT(c->listeners, SizeIs(1));
  const Listener& web = c->listeners[0];
  EXPECT_EQ(web.name, "web");
  EXPECT_EQ(web.address.host, "127.0.0.1");
  EXPECT_EQ(web.address.port, 0);
  EXPECT_FALSE(web.redirect_https);
  EXPECT_FALSE(web.proxy_protocol);
  EXPECT_FALSE(web.tls);
  EXPECT_EQ(web.mark.file, "ward.yaml");
  EXPECT_EQ(web.mark.line, 2);
  EXPECT_EQ(web.mark.column, 5);

  EXPECT_THAT(c->trusted_proxies, IsEmpty());
  EXPECT_THAT(c->filters, IsEmpty());

  ASSERT_THAT(c->routes, SizeIs(1));
  const Route& r = c->routes[0];
  EXPECT_EQ(r.name, "route0");
  EXPECT_EQ(r.match.host, "");
  EXPECT_EQ(r.match.path_prefix, "/");
  EXPECT_THAT(r.match.methods, IsEmpty());
  EXPECT_EQ(r.upstream, "app");
  EXPECT_FALSE(r.strip_prefix);
  EXPECT_THAT(r.filters, IsEmpty());

  ASSERT_THAT(c->upstreams, SizeIs(1));
  const Upstream& u = c->upstreams[0];
  EXPECT_EQ(u.name, "app");
  EXPECT_EQ(c->find_upstream("app"), &u);
  EXPECT_EQ(u.balance, Balance::round_robin);
  ASSERT_THAT(u.servers, SizeIs(1));
  EXPECT_EQ(u.servers[0].address.text, "127.0.0.1:9001");
  EXPECT_EQ(u.servers[0].weight, 1u);
  EXPECT_EQ(u.dns_refresh, 5s);
  EXPECT_EQ(u.connect_timeout, 2s);
  EXPECT_EQ(u.keepalive, 64u);
  EXPECT_EQ(u.retries, 1u);
  EXPECT_FALSE(u.tls);
  EXPECT_EQ(u.tls_ca, "");
  EXPECT_EQ(u.tls_server_name, "");
  EXPECT_FALSE(u.health_check);
  EXPECT_FALSE(u.passive);
}

TEST_F(LoaderTest, ConfigMdExampleLoadsWithEveryValue) {
  TempFile cert;
  TempFile key;
  env_["API_KEY"] = "s3cret";
  std::string yaml = replace_all(std::string(kConfigMdExample), "certs/dev.crt", cert.path());
  yaml = replace_all(yaml, "certs/dev.key", key.path());
  auto c = load_ok(yaml);
  ASSERT_TRUE(c);

  EXPECT_EQ(c->workers, 8u);
  EXPECT_EQ(c->admin.address.text, "127.0.0.1:9901");
  EXPECT_EQ(c->logging.level, "info");
  EXPECT_EQ(c->logging.error_log, "stderr");
  EXPECT_EQ(c->logging.access_log.path, "stdout");
  EXPECT_EQ(c->logging.access_log.format, AccessLogFormat::json);
  EXPECT_EQ(c->logging.access_log.max_size, 10 * kMiB);
  EXPECT_EQ(c->logging.access_log.max_files, 5u);
  EXPECT_EQ(c->limits.header_timeout, 10s);
  EXPECT_EQ(c->limits.idle_timeout, 60s);
  EXPECT_EQ(c->limits.request_timeout, 60s);
  EXPECT_EQ(c->limits.body_timeout, 60s);
  EXPECT_EQ(c->limits.drain_timeout, 30s);
  EXPECT_EQ(c->limits.max_header_size, 16 * kKiB);
  EXPECT_EQ(c->limits.max_uri_size, 8 * kKiB);
  EXPECT_EQ(c->limits.max_body_size, 10 * kMiB);
  EXPECT_EQ(c->limits.max_connections, 20000u);
  EXPECT_EQ(c->limits.max_concurrent_streams, 128u);

  ASSERT_THAT(c->listeners, SizeIs(2));
  const Listener& web = c->listeners[0];
  EXPECT_EQ(web.name, "web");
  EXPECT_EQ(web.address.text, "0.0.0.0:8080");
  EXPECT_EQ(web.redirect_https, 8443);
  EXPECT_FALSE(web.proxy_protocol);
  EXPECT_FALSE(web.tls);
  const Listener& secure = c->listeners[1];
  EXPECT_EQ(secure.name, "websecure");
  EXPECT_EQ(secure.address.port, 8443);
  EXPECT_FALSE(secure.redirect_https);
  ASSERT_TRUE(secure.tls);
  ASSERT_THAT(secure.tls->certificates, SizeIs(1));
  EXPECT_EQ(secure.tls->certificates[0].cert, cert.path());
  EXPECT_EQ(secure.tls->certificates[0].key, key.path());
  EXPECT_EQ(secure.tls->min_version, "1.2");
  EXPECT_EQ(secure.tls->ciphers, "default");
  EXPECT_THAT(secure.tls->alpn, ElementsAre("h2", "http/1.1"));
  EXPECT_TRUE(secure.tls->session_tickets);
  EXPECT_EQ(secure.tls->client_ca, "");

  EXPECT_THAT(c->trusted_proxies, IsEmpty());
  ASSERT_THAT(c->filters, SizeIs(2));
  EXPECT_EQ(c->filters[0].name, "request_id");
  EXPECT_TRUE(c->filters[0].options.IsMap());
  EXPECT_EQ(c->filters[0].options.size(), 0u);
  EXPECT_EQ(c->filters[1].name, "security_headers");

  ASSERT_THAT(c->routes, SizeIs(2));
  const Route& api = c->routes[0];
  EXPECT_EQ(api.name, "api");
  EXPECT_EQ(api.match.host, "api.example.com");
  EXPECT_EQ(api.match.path_prefix, "/api/");
  EXPECT_THAT(api.match.methods, ElementsAre("GET", "POST"));
  EXPECT_EQ(api.upstream, "backend");
  EXPECT_FALSE(api.strip_prefix);
  ASSERT_THAT(api.filters, SizeIs(2));
  EXPECT_EQ(api.filters[0].name, "rate_limit");
  EXPECT_EQ(api.filters[0].options["rate"].Scalar(), "30/minute");
  EXPECT_EQ(api.filters[0].options["burst"].Scalar(), "10");
  EXPECT_EQ(api.filters[1].name, "api_key");
  EXPECT_EQ(api.filters[1].options["keys"][0].Scalar(), "s3cret");  // ${API_KEY}
  const Route& fallback = c->routes[1];
  EXPECT_EQ(fallback.name, "route1");
  EXPECT_EQ(fallback.match.path_prefix, "/");
  EXPECT_EQ(fallback.upstream, "frontend");

  ASSERT_THAT(c->upstreams, SizeIs(2));
  const Upstream& backend = c->upstreams[0];
  EXPECT_EQ(backend.name, "backend");
  EXPECT_EQ(backend.balance, Balance::round_robin);
  ASSERT_THAT(backend.servers, SizeIs(3));
  EXPECT_EQ(backend.servers[0].address.text, "127.0.0.1:9001");
  EXPECT_EQ(backend.servers[0].weight, 1u);
  EXPECT_EQ(backend.servers[1].address.text, "127.0.0.1:9002");
  EXPECT_EQ(backend.servers[1].weight, 2u);
  EXPECT_EQ(backend.servers[2].address.host, "app");
  EXPECT_FALSE(backend.servers[2].address.host_is_ip);
  EXPECT_EQ(backend.dns_refresh, 5s);
  EXPECT_EQ(backend.connect_timeout, 2s);
  EXPECT_EQ(backend.keepalive, 64u);
  EXPECT_EQ(backend.retries, 1u);
  EXPECT_FALSE(backend.tls);
  ASSERT_TRUE(backend.health_check);
  EXPECT_EQ(backend.health_check->path, "/health");
  EXPECT_EQ(backend.health_check->interval, 5s);
  EXPECT_EQ(backend.health_check->timeout, 2s);
  EXPECT_EQ(backend.health_check->healthy_threshold, 2u);
  EXPECT_EQ(backend.health_check->unhealthy_threshold, 3u);
  EXPECT_EQ(backend.health_check->expect_status_min, 200);
  EXPECT_EQ(backend.health_check->expect_status_max, 399);
  ASSERT_TRUE(backend.passive);
  EXPECT_EQ(backend.passive->consecutive_failures, 5u);
  EXPECT_EQ(backend.passive->ejection_time, 30s);
  const Upstream& frontend = c->upstreams[1];
  EXPECT_EQ(frontend.name, "frontend");
  ASSERT_THAT(frontend.servers, SizeIs(1));
  EXPECT_EQ(frontend.servers[0].address.text, "127.0.0.1:3000");
  EXPECT_FALSE(frontend.health_check);
  EXPECT_FALSE(frontend.passive);
}

TEST_F(LoaderTest, EveryOptionalValueCanBeSet) {
  TempFile ca;
  std::string yaml = R"(
workers: 3
admin:
  address: "[::1]:9000"
logging:
  level: debug
  error_log: /var/log/ward/error.log
  access_log: {path: "off", format: combined, max_size: 1GiB, max_files: 0}
limits:
  header_timeout: 250ms
  idle_timeout: 5m
  request_timeout: 1h
  body_timeout: 1s
  drain_timeout: 0s
  max_header_size: 512
  max_uri_size: 1KiB
  max_body_size: 0
  max_connections: 7
  max_concurrent_streams: 1
listeners:
  - name: web
    address: :8080
    proxy_protocol: true
trusted_proxies: [10.0.0.0/8, "::1/128", 192.168.1.1]
routes:
  - match: {host: "*.Example.COM", path_prefix: /x, methods: [get, Delete]}
    upstream: app
    strip_prefix: true
upstreams:
  app:
    balance: ip_hash
    servers:
      - address: "[::1]:1"
        weight: 1000000
    dns_refresh: 1m
    connect_timeout: 100ms
    keepalive: 0
    retries: 0
    tls: true
    tls_ca: CA
    tls_server_name: internal.example
    health_check: {expect_status: 204}
    passive: {consecutive_failures: 1, ejection_time: 1s}
)";
  auto c = load_ok(replace_all(yaml, "CA", ca.path()));
  ASSERT_TRUE(c);
  EXPECT_EQ(c->workers, 3u);
  EXPECT_EQ(c->admin.address.host, "::1");
  EXPECT_EQ(c->admin.address.port, 9000);
  EXPECT_EQ(c->logging.level, "debug");
  EXPECT_EQ(c->logging.error_log, "/var/log/ward/error.log");
  EXPECT_EQ(c->logging.access_log.path, "off");
  EXPECT_EQ(c->logging.access_log.format, AccessLogFormat::combined);
  EXPECT_EQ(c->logging.access_log.max_size, kGiB);
  EXPECT_EQ(c->logging.access_log.max_files, 0u);
  EXPECT_EQ(c->limits.header_timeout, 250ms);
  EXPECT_EQ(c->limits.idle_timeout, 5min);
  EXPECT_EQ(c->limits.request_timeout, 1h);
  EXPECT_EQ(c->limits.body_timeout, 1s);
  EXPECT_EQ(c->limits.drain_timeout, 0s);
  EXPECT_EQ(c->limits.max_header_size, 512u);
  EXPECT_EQ(c->limits.max_uri_size, kKiB);
  EXPECT_EQ(c->limits.max_body_size, 0u);
  EXPECT_EQ(c->limits.max_connections, 7u);
  EXPECT_EQ(c->limits.max_concurrent_streams, 1u);
  EXPECT_EQ(c->listeners[0].address.host, "");
  EXPECT_EQ(c->listeners[0].address.port, 8080);
  EXPECT_TRUE(c->listeners[0].proxy_protocol);
  ASSERT_THAT(c->trusted_proxies, SizeIs(3));
  EXPECT_EQ(c->trusted_proxies[0].to_string(), "10.0.0.0/8");
  EXPECT_TRUE(c->trusted_proxies[2].contains(*util::IpAddress::parse("192.168.1.1")));
  EXPECT_EQ(c->routes[0].match.host, "*.example.com");
  EXPECT_EQ(c->routes[0].match.path_prefix, "/x");
  EXPECT_THAT(c->routes[0].match.methods, ElementsAre("GET", "DELETE"));
  EXPECT_TRUE(c->routes[0].strip_prefix);
  const Upstream& u = c->upstreams[0];
  EXPECT_EQ(u.balance, Balance::ip_hash);
  EXPECT_EQ(u.servers[0].address.host, "::1");
  EXPECT_EQ(u.servers[0].weight, 1'000'000u);
  EXPECT_EQ(u.dns_refresh, 1min);
  EXPECT_EQ(u.connect_timeout, 100ms);
  EXPECT_EQ(u.keepalive, 0u);
  EXPECT_EQ(u.retries, 0u);
  EXPECT_TRUE(u.tls);
  EXPECT_EQ(u.tls_ca, ca.path());
  EXPECT_EQ(u.tls_server_name, "internal.example");
  ASSERT_TRUE(u.health_check);
  EXPECT_EQ(u.health_check->expect_status_min, 204);
  EXPECT_EQ(u.health_check->expect_status_max, 204);
  EXPECT_EQ(u.health_check->path, "/health");
  ASSERT_TRUE(u.passive);
  EXPECT_EQ(u.passive->consecutive_failures, 1u);
  EXPECT_EQ(u.passive->ejection_time, 1s);
}

TEST_F(LoaderTest, EveryBalanceNameIsAccepted) {
  for (auto [name, balance] : {std::pair{"round_robin", Balance::round_robin},
                               {"least_conn", Balance::least_conn},
                               {"random_two", Balance::random_two},
                               {"ip_hash", Balance::ip_hash}}) {
    auto c = load_ok(std::string(kMinimal) + "    balance: " + name + "\n");
    ASSERT_TRUE(c) << name;
    EXPECT_EQ(c->upstreams[0].balance, balance) << name;
  }
}

TEST_F(LoaderTest, EveryLogLevelIsAccepted) {
  for (const char* level : {"trace", "debug", "info", "warn", "error"}) {
    auto c = load_ok(std::string(kMinimal) + "logging: {level: " + level + "}\n");
    ASSERT_TRUE(c) << level;
    EXPECT_EQ(c->logging.level, level);
  }
}

TEST_F(LoaderTest, WorkersAutoUsesTheCpuCount) {
  options_.cpu_count = 3;
  EXPECT_EQ(load_ok(std::string(kMinimal) + "workers: auto\n")->workers, 3u);
  options_.cpu_count = 0;  // ask the machine
  uint32_t expected = std::max(1u, std::thread::hardware_concurrency());
  EXPECT_EQ(load_ok(std::string(kMinimal) + "workers: auto\n")->workers, expected);
  options_.cpu_count = 5000;  // capped like an explicit number
  EXPECT_EQ(load_ok(std::string(kMinimal) + "workers: auto\n")->workers, 1024u);
}

TEST_F(LoaderTest, WorkersMustBeAutoOrANumberFromOneTo1024) {
  EXPECT_EQ(load_ok(std::string(kMinimal) + "workers: 1024\n")->workers, 1024u);
  for (const char* bad : {"0", "1025", "-1", "many", "[1]", "1.5"}) {
    auto errs = errors(std::string(kMinimal) + "workers: " + bad + "\n");
    ASSERT_THAT(errs, SizeIs(1)) << bad;
    EXPECT_THAT(errs[0], StartsWith("ward.yaml:9:10: workers: expected ")) << bad;
  }
}

TEST_F(LoaderTest, HostIsLowerCasedAndMethodsUpperCased) {
  auto c = load_ok(R"(
listeners: [{name: web, address: ":0"}]
routes:
  - match: {host: API.Example.com., methods: [get, pOsT]}
    upstream: app
upstreams: {app: {servers: ["127.0.0.1:1"]}}
)");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->routes[0].match.host, "api.example.com");
  EXPECT_THAT(c->routes[0].match.methods, ElementsAre("GET", "POST"));
}

TEST_F(LoaderTest, RouteNamesDefaultToTheirIndex) {
  auto c = load_ok(R"(
listeners: [{name: web, address: ":0"}]
routes:
  - {name: first, upstream: app}
  - {upstream: app}
  - {upstream: app}
upstreams: {app: {servers: ["127.0.0.1:1"]}}
)");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->routes[0].name, "first");
  EXPECT_EQ(c->routes[1].name, "route1");
  EXPECT_EQ(c->routes[2].name, "route2");
}

TEST_F(LoaderTest, UpstreamsKeepFileOrder) {
  auto c = load_ok(R"(
listeners: [{name: web, address: ":0"}]
routes: [{upstream: zeta}]
upstreams:
  zeta: {servers: ["127.0.0.1:1"]}
  alpha: {servers: ["127.0.0.1:2"]}
  mid: {servers: ["127.0.0.1:3"]}
)");
  ASSERT_TRUE(c);
  ASSERT_THAT(c->upstreams, SizeIs(3));
  EXPECT_EQ(c->upstreams[0].name, "zeta");
  EXPECT_EQ(c->upstreams[1].name, "alpha");
  EXPECT_EQ(c->upstreams[2].name, "mid");
  EXPECT_EQ(c->upstreams[1].mark.line, 5);
}

TEST_F(LoaderTest, EmptyValuesMeanDefaults) {
  auto c = load_ok(std::string(kMinimal) + R"(logging:
limits:
trusted_proxies:
filters:
admin:
)");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->logging.level, "info");
  EXPECT_EQ(c->limits.max_connections, 20000u);
  EXPECT_EQ(c->admin.address.text, "127.0.0.1:9901");
}

TEST_F(LoaderTest, EmptyRouteAndUpstreamListsAreAllowed) {
  auto c = load_ok(R"(
listeners: [{name: web, address: ":0", redirect_https: 443}]
routes: []
upstreams: {}
)");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->listeners[0].redirect_https, 443);
}

TEST_F(LoaderTest, ListenersOnPortZeroAreNeverDuplicates) {
  auto c = load_ok(R"(
admin: {address: "127.0.0.1:0"}
listeners:
  - {name: a, address: "127.0.0.1:0"}
  - {name: b, address: "127.0.0.1:0"}
routes: []
upstreams: {}
)");
  ASSERT_TRUE(c);
  EXPECT_THAT(c->listeners, SizeIs(2));
}

TEST_F(LoaderTest, ListenerTlsFalseMeansPlainText) {
  options_.features.tls = false;
  auto c = load_ok(R"(
listeners: [{name: web, address: ":0", tls: false}]
routes: []
upstreams: {}
)");
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->listeners[0].tls);
}

TEST_F(LoaderTest, AnchorsAndAliasesWork) {
  auto c = load_ok(R"(
listeners: [{name: web, address: ":0"}]
routes: [{upstream: a}, {upstream: b}]
upstreams:
  a: &shape {servers: ["127.0.0.1:1"], retries: 3}
  b: *shape
)");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->upstreams[1].retries, 3u);
}

// --- errors, each with its position -------------------------------------------

TEST_F(LoaderTest, UnknownKeyIsReportedWithItsPosition) {
  EXPECT_THAT(errors(R"(
listeners:
  - name: web
    adress: 127.0.0.1:0
routes: []
upstreams: {}
)"),
              ElementsAre("ward.yaml:2:5: missing required key 'address' in listeners[0]",
                          "ward.yaml:3:5: unknown key 'adress' in listeners[0] (did you mean "
                          "'address'?)"));
}

TEST_F(LoaderTest, UnknownTopLevelKeySuggestsTheClosestKey) {
  EXPECT_THAT(errors(std::string(kMinimal) + "wokers: 2\nzzz: 1\n"),
              ElementsAre("ward.yaml:9:1: unknown key 'wokers' (did you mean 'workers'?)",
                          "ward.yaml:10:1: unknown key 'zzz'"));
}

TEST_F(LoaderTest, UnknownKeysAreFoundInEverySection) {
  auto errs = errors(R"(
admin: {adress: x}
logging: {levle: x, access_log: {fromat: x}}
limits: {header_timout: 1s}
listeners:
  - name: web
    address: ":0"
    tls: {certificate: [], min_versoin: "1.3"}
routes:
  - upstream: app
    match: {prefix: /}
upstreams:
  app:
    servers: [{address: "127.0.0.1:1", wieght: 2}]
    health_check: {intervall: 1s}
    passive: {ejection: 1s}
    balanse: x
)");
  EXPECT_THAT(
      errs,
      ElementsAre(
          "ward.yaml:1:9: unknown key 'adress' in admin (did you mean 'address'?)",
          "ward.yaml:2:11: unknown key 'levle' in logging (did you mean 'level'?)",
          "ward.yaml:2:34: unknown key 'fromat' in logging.access_log (did you mean 'format'?)",
          "ward.yaml:3:10: unknown key 'header_timout' in limits (did you mean 'header_timeout'?)",
          "ward.yaml:7:10: missing required key 'certificates' in listeners[0].tls",
          "ward.yaml:7:11: unknown key 'certificate' in listeners[0].tls (did you mean "
          "'certificates'?)",
          "ward.yaml:7:28: unknown key 'min_versoin' in listeners[0].tls (did you mean "
          "'min_version'?)",
          "ward.yaml:10:13: unknown key 'prefix' in routes[0].match",
          "ward.yaml:13:40: unknown key 'wieght' in upstreams.app.servers[0] (did you mean "
          "'weight'?)",
          "ward.yaml:14:20: unknown key 'intervall' in upstreams.app.health_check (did you mean "
          "'interval'?)",
          "ward.yaml:15:15: unknown key 'ejection' in upstreams.app.passive",
          "ward.yaml:16:5: unknown key 'balanse' in upstreams.app (did you mean 'balance'?)"));
}

TEST_F(LoaderTest, WrongTypesAreReported) {
  EXPECT_THAT(errors(R"(
listeners:
  - name: [web]
    address: {host: x}
    proxy_protocol: maybe
routes:
  upstream: app
upstreams:
  app:
    servers: 127.0.0.1:1
    keepalive: lots
limits: 5
)"),
              ElementsAre("ward.yaml:2:11: listeners[0].name: expected a string, got a list",
                          "ward.yaml:3:14: listeners[0].address: expected a string, got a map",
                          "ward.yaml:4:21: listeners[0].proxy_protocol: expected true or false, "
                          "got 'maybe'",
                          "ward.yaml:6:3: routes: expected a list, got a map",
                          "ward.yaml:9:14: upstreams.app.servers: expected a list, got "
                          "'127.0.0.1:1'",
                          "ward.yaml:10:16: upstreams.app.keepalive: expected a whole number "
                          "from 0 to 100000, got 'lots'",
                          "ward.yaml:11:9: limits: expected a map, got '5'"));
}

TEST_F(LoaderTest, BadUnitsAreReported) {
  EXPECT_THAT(errors(std::string(kMinimal) + R"(limits:
  header_timeout: 10
  idle_timeout: 1.5s
  drain_timeout: -1s
  max_header_size: 16KB
  max_body_size: big
)"),
              ElementsAre("ward.yaml:10:19: limits.header_timeout: expected a duration such as "
                          "250ms, 10s, 5m or 1h, got '10'",
                          "ward.yaml:11:17: limits.idle_timeout: expected a duration such as "
                          "250ms, 10s, 5m or 1h, got '1.5s'",
                          "ward.yaml:12:18: limits.drain_timeout: expected a duration such as "
                          "250ms, 10s, 5m or 1h, got '-1s'",
                          "ward.yaml:13:20: limits.max_header_size: expected a size such as "
                          "512, 16KiB, 10MiB or 1GiB, got '16KB'",
                          "ward.yaml:14:18: limits.max_body_size: expected a size such as 512, "
                          "16KiB, 10MiB or 1GiB, got 'big'"));
}

TEST_F(LoaderTest, ZeroTimeoutsAndSizesAreRejectedWhereTheyMakeNoSense) {
  EXPECT_THAT(errors(std::string(kMinimal) + R"(limits:
  header_timeout: 0s
  max_uri_size: 0
  max_connections: 0
)"),
              ElementsAre("ward.yaml:10:19: limits.header_timeout: must be greater than 0",
                          "ward.yaml:11:17: limits.max_uri_size: must be at least 1",
                          "ward.yaml:12:20: limits.max_connections: expected a whole number "
                          "from 1 to 10000000, got '0'"));
}

TEST_F(LoaderTest, MissingRequiredKeysAreReportedWhereTheyBelong) {
  EXPECT_THAT(errors(R"(
workers: 2
)"),
              ElementsAre("ward.yaml:1:1: missing required key 'listeners'",
                          "ward.yaml:1:1: missing required key 'upstreams'",
                          "ward.yaml:1:1: missing required key 'routes'"));
  EXPECT_THAT(errors(R"(
listeners:
  - address: ":0"
routes:
  - name: r
upstreams:
  app:
    balance: least_conn
  web:
)"),
              ElementsAre("ward.yaml:2:5: missing required key 'name' in listeners[0]",
                          "ward.yaml:4:5: missing required key 'upstream' in routes[0]",
                          "ward.yaml:7:5: missing required key 'servers' in upstreams.app",
                          "ward.yaml:8:3: missing required key 'servers' in upstreams.web"));
}

TEST_F(LoaderTest, AnEmptyFileReportsTheRequiredKeys) {
  EXPECT_THAT(errors(""), ElementsAre("ward.yaml:1:1: missing required key 'listeners'",
                                      "ward.yaml:1:1: missing required key 'upstreams'",
                                      "ward.yaml:1:1: missing required key 'routes'"));
}

TEST_F(LoaderTest, TheRootMustBeAMap) {
  EXPECT_THAT(errors("- a\n- b\n"), ElementsAre("ward.yaml:1:1: expected a map, got a list",
                                                "ward.yaml:1:1: missing required key 'listeners'",
                                                "ward.yaml:1:1: missing required key 'upstreams'",
                                                "ward.yaml:1:1: missing required key 'routes'"));
}

TEST_F(LoaderTest, ListenersMustNotBeEmpty) {
  EXPECT_THAT(errors("listeners: []\nroutes: []\nupstreams: {}\n"),
              ElementsAre("ward.yaml:1:12: listeners: at least one listener is required"));
}

TEST_F(LoaderTest, RouteNamingAnUndefinedUpstreamIsReported) {
  EXPECT_THAT(errors(R"(
listeners: [{name: web, address: ":0"}]
routes:
  - upstream: backnd
  - upstream: nowhere
upstreams:
  backend: {servers: ["127.0.0.1:1"]}
)"),
              ElementsAre("ward.yaml:3:15: upstream 'backnd' is not defined in upstreams (did "
                          "you mean 'backend'?)",
                          "ward.yaml:4:15: upstream 'nowhere' is not defined in upstreams"));
}

TEST_F(LoaderTest, DuplicateListenerNameIsReported) {
  EXPECT_THAT(errors(R"(
listeners:
  - name: web
    address: ":8080"
  - name: web
    address: ":8081"
routes: []
upstreams: {}
)"),
              ElementsAre("ward.yaml:4:11: listeners[1].name: duplicate listener name 'web' "
                          "(first at line 2)"));
}

TEST_F(LoaderTest, DuplicateListenerAddressIsReportedWhateverItsSpelling) {
  EXPECT_THAT(errors(R"(
listeners:
  - {name: a, address: ":8080"}
  - {name: b, address: "0.0.0.0:8080"}
  - {name: c, address: "[::]:8080"}
  - {name: d, address: "127.0.0.1:8080"}
  - {name: e, address: "127.0.0.1:9901"}
  - {name: f, address: "[::1]:8080"}
  - {name: g, address: "[0:0:0:0:0:0:0:1]:8080"}
routes: []
upstreams: {}
)"),
              ElementsAre("ward.yaml:3:24: listeners[1].address: address '0.0.0.0:8080' is "
                          "already used by listener 'a'",
                          "ward.yaml:4:24: listeners[2].address: address '[::]:8080' is already "
                          "used by listener 'a'",
                          "ward.yaml:6:24: listeners[4].address: address '127.0.0.1:9901' is "
                          "already used by the admin address",
                          "ward.yaml:8:24: listeners[6].address: address '[0:0:0:0:0:0:0:1]:8080' "
                          "is already used by listener 'f'"));
}

TEST_F(LoaderTest, ListenerAddressMustBeAnIp) {
  EXPECT_THAT(errors(R"(
listeners: [{name: web, address: "localhost:8080"}]
routes: []
upstreams: {}
admin: {address: "nope"}
)"),
              ElementsAre("ward.yaml:1:34: listeners[0].address: a listening address must be an "
                          "IP address or ':PORT', got 'localhost:8080'",
                          "ward.yaml:4:18: admin.address: expected an address such as "
                          "127.0.0.1:8080, [::1]:8080 or :8080, got 'nope'"));
}

TEST_F(LoaderTest, DuplicateUpstreamServerIsReported) {
  EXPECT_THAT(errors(R"(
listeners: [{name: web, address: ":0"}]
routes: []
upstreams:
  app:
    servers:
      - 127.0.0.1:9001
      - address: 127.0.0.1:9001
      - "[::1]:80"
      - "[0::1]:80"
)"),
              ElementsAre("ward.yaml:7:9: upstreams.app.servers[1]: duplicate server "
                          "'127.0.0.1:9001' in upstream 'app'",
                          "ward.yaml:9:9: upstreams.app.servers[3]: duplicate server '[0::1]:80' "
                          "in upstream 'app'"));
}

TEST_F(LoaderTest, BadServerAddressesAreReported) {
  EXPECT_THAT(errors(R"(
listeners: [{name: web, address: ":0"}]
routes: []
upstreams:
  app:
    servers:
      - ":80"
      - 127.0.0.1:0
      - nope
      - [1]
)"),
              ElementsAre("ward.yaml:6:9: upstreams.app.servers[0]: a server address needs a "
                          "host and a port from 1 to 65535, got ':80'",
                          "ward.yaml:7:9: upstreams.app.servers[1]: a server address needs a "
                          "host and a port from 1 to 65535, got '127.0.0.1:0'",
                          "ward.yaml:8:9: upstreams.app.servers[2]: expected an address such as "
                          "127.0.0.1:8080, [::1]:8080 or :8080, got 'nope'",
                          "ward.yaml:9:9: upstreams.app.servers[3]: expected an address or a map "
                          "with 'address', got a list"));
}

TEST_F(LoaderTest, UnreadableCertificateIsReported) {
  TempFile cert;
  std::string yaml = R"(
listeners:
  - name: websecure
    address: ":0"
    tls:
      certificates:
        - cert: CERT
          key: /nonexistent/dev.key
        - cert: /tmp
          key: CERT
      client_ca: /nonexistent/ca.pem
routes: []
upstreams: {}
)";
  EXPECT_THAT(errors(replace_all(yaml, "CERT", cert.path())),
              ElementsAre("ward.yaml:7:16: listeners[0].tls.certificates[0].key: cannot read "
                          "'/nonexistent/dev.key': No such file or directory",
                          "ward.yaml:8:17: listeners[0].tls.certificates[1].cert: cannot read "
                          "'/tmp': Is a directory",
                          "ward.yaml:10:18: listeners[0].tls.client_ca: cannot read "
                          "'/nonexistent/ca.pem': No such file or directory"));
}

TEST_F(LoaderTest, TlsListenerNeedsAtLeastOneCertificateAndKnownSettings) {
  EXPECT_THAT(errors(R"(
listeners:
  - name: websecure
    address: ":0"
    tls:
      certificates: []
      min_version: "1.1"
      alpn: [h3]
routes: []
upstreams: {}
)"),
              ElementsAre("ward.yaml:5:21: listeners[0].tls.certificates: at least one "
                          "certificate is required",
                          "ward.yaml:6:20: listeners[0].tls.min_version: unknown value '1.1' "
                          "(expected 1.2 or 1.3; did you mean '1.2'?)",
                          "ward.yaml:7:14: listeners[0].tls.alpn[0]: unknown protocol 'h3' "
                          "(expected h2 or http/1.1)"));
}

TEST_F(LoaderTest, EmptyServerListIsReported) {
  EXPECT_THAT(errors(R"(
listeners: [{name: web, address: ":0"}]
routes: []
upstreams:
  app:
    servers: []
)"),
              ElementsAre("ward.yaml:5:14: upstreams.app.servers: at least one server is "
                          "required"));
}

TEST_F(LoaderTest, BadBalanceNameIsReportedWithASuggestion) {
  EXPECT_THAT(errors(std::string(kMinimal) + "    balance: least_con\n"),
              ElementsAre("ward.yaml:9:14: upstreams.app.balance: unknown value 'least_con' "
                          "(expected round_robin, least_conn, random_two or ip_hash; did you "
                          "mean 'least_conn'?)"));
}

TEST_F(LoaderTest, BadLogLevelIsReported) {
  EXPECT_THAT(errors(std::string(kMinimal) + "logging:\n  level: verbose\n"),
              ElementsAre("ward.yaml:10:10: logging.level: unknown value 'verbose' (expected "
                          "trace, debug, info, warn or error)"));
}

TEST_F(LoaderTest, BadAccessLogFormatIsReported) {
  EXPECT_THAT(errors(std::string(kMinimal) + "logging: {access_log: {format: jsno}}\n"),
              ElementsAre("ward.yaml:9:32: logging.access_log.format: unknown value 'jsno' "
                          "(expected json or combined; did you mean 'json'?)"));
}

TEST_F(LoaderTest, BadCidrInTrustedProxiesIsReported) {
  EXPECT_THAT(
      errors(std::string(kMinimal) + "trusted_proxies: [10.0.0.0/8, 10.0.0.0/33, bogus, {a: b}]\n"),
      ElementsAre("ward.yaml:9:31: trusted_proxies[1]: expected a CIDR such as "
                  "10.0.0.0/8 or ::1/128, got '10.0.0.0/33'",
                  "ward.yaml:9:44: trusted_proxies[2]: expected a CIDR such as "
                  "10.0.0.0/8 or ::1/128, got 'bogus'",
                  "ward.yaml:9:51: trusted_proxies[3]: expected a string, got a map"));
}

TEST_F(LoaderTest, WeightZeroIsReported) {
  EXPECT_THAT(errors(R"(
listeners: [{name: web, address: ":0"}]
routes: []
upstreams:
  app:
    servers:
      - address: 127.0.0.1:1
        weight: 0
)"),
              ElementsAre("ward.yaml:7:17: upstreams.app.servers[0].weight: expected a whole "
                          "number from 1 to 1000000, got '0'"));
}

TEST_F(LoaderTest, ExpectStatusTakesACodeOrARange) {
  for (auto [text, low, high] : {std::tuple{"200-399", 200, 399},
                                 {"200", 200, 200},
                                 {"\"204\"", 204, 204},
                                 {"100-599", 100, 599}}) {
    auto c = load_ok(std::string(kMinimal) + "    health_check: {expect_status: " + text + "}\n");
    ASSERT_TRUE(c) << text;
    EXPECT_EQ(c->upstreams[0].health_check->expect_status_min, low) << text;
    EXPECT_EQ(c->upstreams[0].health_check->expect_status_max, high) << text;
  }
  for (const char* bad :
       {"399-200", "99", "600", "200-", "-399", "2xx", "200-399-500", "[200]", "0200"}) {
    auto errs = errors(std::string(kMinimal) + "    health_check: {expect_status: " + bad + "}\n");
    ASSERT_THAT(errs, SizeIs(1)) << bad;
    EXPECT_THAT(errs[0], StartsWith("ward.yaml:9:35: upstreams.app.health_check.expect_status: "
                                    "expected a status such as 200 or a range such as 200-399"))
        << bad;
  }
}

TEST_F(LoaderTest, HealthCheckValuesAreValidated) {
  EXPECT_THAT(errors(std::string(kMinimal) + R"(    health_check:
      path: health
      interval: 0s
      healthy_threshold: 0
)"),
              ElementsAre("ward.yaml:10:13: upstreams.app.health_check.path: must start with "
                          "'/', got 'health'",
                          "ward.yaml:11:17: upstreams.app.health_check.interval: must be greater "
                          "than 0",
                          "ward.yaml:12:26: upstreams.app.health_check.healthy_threshold: "
                          "expected a whole number from 1 to 1000, got '0'"));
}

TEST_F(LoaderTest, HealthCheckPathCannotSplitTheRequestLine) {
  // It is sent as it is: a space or a line break would make another request.
  for (const char* bad : {"\"/a b\"", "\"/a\\r\\nX: y\"", "\"/a\\tb\""}) {
    auto errs = errors(std::string(kMinimal) + "    health_check: {path: " + bad + "}\n");
    ASSERT_THAT(errs, SizeIs(1)) << bad;
    EXPECT_THAT(errs[0], StartsWith("ward.yaml:9:26: upstreams.app.health_check.path: spaces and "
                                    "control bytes must be %-encoded, got "))
        << bad;
  }
  auto c = load_ok(std::string(kMinimal) + "    health_check: {path: \"/ready?x=%20y\"}\n");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->upstreams[0].health_check->path, "/ready?x=%20y");
}

TEST_F(LoaderTest, UpstreamTlsSettingsWithoutTlsAreReported) {
  EXPECT_THAT(errors(std::string(kMinimal) + "    tls_server_name: x\n"),
              ElementsAre("ward.yaml:9:5: upstreams.app.tls_server_name: has no effect without "
                          "'tls: true'"));
}

TEST_F(LoaderTest, RouteMatchValuesAreValidated) {
  EXPECT_THAT(errors(R"(
listeners: [{name: web, address: ":0"}]
routes:
  - match: {host: "api.example.com:8080", path_prefix: api, methods: ["GE T"]}
    upstream: app
  - match: {host: "a.*.com"}
    upstream: app
upstreams: {app: {servers: ["127.0.0.1:1"]}}
)"),
              ElementsAre("ward.yaml:3:19: routes[0].match.host: expected a host name such as "
                          "api.example.com or *.example.com (no port), got "
                          "'api.example.com:8080'",
                          "ward.yaml:3:56: routes[0].match.path_prefix: must start with '/', "
                          "got 'api'",
                          "ward.yaml:3:71: routes[0].match.methods[0]: not an HTTP method: 'GE "
                          "T'",
                          "ward.yaml:5:19: routes[1].match.host: expected a host name such as "
                          "api.example.com or *.example.com (no port), got 'a.*.com'"));
}

TEST_F(LoaderTest, DuplicateRouteNamesAreReported) {
  EXPECT_THAT(errors(R"(
listeners: [{name: web, address: ":0"}]
routes:
  - {name: api, upstream: app}
  - {name: api, upstream: app}
upstreams: {app: {servers: ["127.0.0.1:1"]}}
)"),
              ElementsAre("ward.yaml:4:5: routes[1]: duplicate route name 'api' (first at line "
                          "3)"));
}

TEST_F(LoaderTest, DuplicateKeysAreReported) {
  EXPECT_THAT(errors(R"(
listeners: [{name: web, address: ":0", name: other}]
routes: []
upstreams:
  app: {servers: ["127.0.0.1:1"]}
  app: {servers: ["127.0.0.1:2"]}
)"),
              ElementsAre("ward.yaml:1:40: duplicate key 'name' (first at line 1)",
                          "ward.yaml:5:3: duplicate key 'app' (first at line 4)"));
}

TEST_F(LoaderTest, NonStringKeysAreReported) {
  EXPECT_THAT(errors(std::string(kMinimal) + "? [a]\n: 1\n"),
              ElementsAre("ward.yaml:9:3: map keys must be strings"));
}

TEST_F(LoaderTest, YamlSyntaxErrorHasItsPosition) {
  auto errs = errors("listeners:\n  - name: web\n    address: [\":0\"\nroutes: []\n");
  EXPECT_THAT(errs, ElementsAre("ward.yaml:4:1: end of sequence flow not found"));
  errs = errors("a: b: c\n");
  ASSERT_THAT(errs, SizeIs(1));
  EXPECT_THAT(errs[0], StartsWith("ward.yaml:1:5: "));
}

TEST_F(LoaderTest, MoreThanOneDocumentIsAnError) {
  EXPECT_THAT(errors(std::string(kMinimal) + "---\nworkers: 1\n"),
              ElementsAre("ward.yaml:9:1: expected one YAML document, found 2"));
}

TEST_F(LoaderTest, AnEmptyFirstDocumentDoesNotHideTheSecond) {
  EXPECT_THAT(errors("---\n---\nworkers: 1\n"),
              ElementsAre("ward.yaml:2:1: expected one YAML document, found 2"));
}

TEST_F(LoaderTest, AnEmptyTrailingDocumentIsIgnored) {
  EXPECT_TRUE(load_ok(std::string(kMinimal) + "---\n"));
  EXPECT_TRUE(load_ok(std::string(kMinimal) + "...\n"));
}

// yaml-cpp 0.7's LoadAll never returns on these (jbeder/yaml-cpp#1040).
TEST_F(LoaderTest, AStrayCommaIsASyntaxErrorNotAHang) {
  EXPECT_THAT(errors(","), ElementsAre("ward.yaml:1:1: unexpected ','"));
  EXPECT_THAT(errors(",a\nb: c"), ElementsAre("ward.yaml:1:1: unexpected ','"));
  EXPECT_THAT(errors("a: 1\n---\n,\n"), ElementsAre("ward.yaml:3:1: unexpected ','"));
}

TEST_F(LoaderTest, EveryProblemIsReportedAtOnceInFileOrder) {
  auto errs = errors(R"(
workers: none
listeners:
  - name: web
    address: 127.0.0.1:99999
routes:
  - upstream: ghost
upstreams:
  app:
    balance: fastest
    servers: []
    connect_timeout: 5
logging: {level: loud}
)");
  EXPECT_THAT(errs, ElementsAre(StartsWith("ward.yaml:1:10: workers:"),
                                StartsWith("ward.yaml:4:14: listeners[0].address:"),
                                StartsWith("ward.yaml:6:15: upstream 'ghost' is not defined"),
                                StartsWith("ward.yaml:9:14: upstreams.app.balance:"),
                                StartsWith("ward.yaml:10:14: upstreams.app.servers:"),
                                StartsWith("ward.yaml:11:22: upstreams.app.connect_timeout:"),
                                StartsWith("ward.yaml:12:18: logging.level:")));
}

TEST_F(LoaderTest, RecursiveAliasIsRejectedNotFollowed) {
  auto errs = errors(std::string(kMinimal) + "filters: &loop [*loop]\n");
  ASSERT_THAT(errs, SizeIs(1));
  EXPECT_THAT(errs[0], HasSubstr("nests deeper than 64 levels"));
}

TEST_F(LoaderTest, AliasFanOutIsBounded) {
  std::string yaml(kMinimal);
  yaml += "x0: &a0 [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n";
  for (int i = 1; i < 8; ++i) {
    std::string prev = "*a" + std::to_string(i - 1);
    yaml += "x" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int j = 0; j < 10; ++j) {
      yaml += (j ? ", " : "") + prev;
    }
    yaml += "]\n";
  }
  auto errs = errors(yaml);
  ASSERT_THAT(errs, SizeIs(1));
  EXPECT_THAT(errs[0], HasSubstr("more than 100000 values"));
}

TEST_F(LoaderTest, NeverThrowsOnHostileInput) {
  for (const char* yaml : {"\t", "{", "]", "&a", "*a", "!!binary x", "? ? ?", "- [", "\"\\x",
                           "listeners: !!map {a: [}", "%YAML 9.9\n---\n", "\xff\xfe\x00",
                           "workers: 99999999999999999999999999"}) {
    EXPECT_NO_THROW(load(yaml)) << yaml;
  }
}

// --- ${NAME} substitution -------------------------------------------------------

TEST_F(LoaderTest, EnvironmentVariablesAreSubstitutedInEveryString) {
  env_["PORT"] = "8081";
  env_["HOST"] = "127.0.0.1";
  env_["KEY"] = "abc";
  env_["EMPTY"] = "";
  auto c = load_ok(R"(
listeners:
  - name: web-${PORT}
    address: ${HOST}:${PORT}
routes:
  - upstream: app
    filters:
      - api_key: {keys: ["${KEY}", "k-${MISSING:-fallback}", "${EMPTY:-was empty}"]}
upstreams:
  app:
    servers: ["${HOST}:9001"]
    retries: ${RETRIES:-3}
logging:
  error_log: "$${NOT_A_VAR} and $HOME and ${EMPTY}"
)");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->listeners[0].name, "web-8081");
  EXPECT_EQ(c->listeners[0].address.port, 8081);
  EXPECT_EQ(c->upstreams[0].servers[0].address.text, "127.0.0.1:9001");
  EXPECT_EQ(c->upstreams[0].retries, 3u);
  const YAML::Node& keys = c->routes[0].filters[0].options["keys"];
  EXPECT_EQ(keys[0].Scalar(), "abc");
  EXPECT_EQ(keys[1].Scalar(), "k-fallback");
  EXPECT_EQ(keys[2].Scalar(), "was empty");
  EXPECT_EQ(c->logging.error_log, "${NOT_A_VAR} and $HOME and ");
}

TEST_F(LoaderTest, AValueFromTheEnvironmentIsNotExpandedAgain) {
  env_["A"] = "${B}";
  env_["B"] = "nope";
  auto c = load_ok(std::string(kMinimal) + R"(logging:
  error_log: &log ${A}
  access_log: {path: *log}
)");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->logging.error_log, "${B}");
  EXPECT_EQ(c->logging.access_log.path, "${B}");
}

TEST_F(LoaderTest, UnsetVariableWithoutDefaultIsReportedOnceAtItsScalar) {
  EXPECT_THAT(errors(R"(
listeners:
  - name: web
    address: ${LISTEN}
routes: []
upstreams: {}
logging: {error_log: "${BAD-NAME}", access_log: {path: "${OPEN"}}
)"),
              ElementsAre("ward.yaml:3:14: environment variable 'LISTEN' is not set (write "
                          "${LISTEN:-default} to give a default)",
                          "ward.yaml:6:22: bad environment variable reference '${BAD-NAME}' (a "
                          "name is letters, digits and '_')",
                          "ward.yaml:6:56: '${' without a closing '}'"));
}

TEST_F(LoaderTest, KeysAreNotSubstituted) {
  env_["X"] = "workers";
  EXPECT_THAT(errors(std::string(kMinimal) + "${X}: 2\n"),
              ElementsAre("ward.yaml:9:1: unknown key '${X}'"));
}

TEST_F(LoaderTest, TheProcessEnvironmentIsTheDefaultLookup) {
  ::setenv("WARD_CONFIG_TEST_VAR", "from-env", 1);
  auto env = process_env();
  EXPECT_EQ(env("WARD_CONFIG_TEST_VAR"), "from-env");
  EXPECT_EQ(env("WARD_CONFIG_TEST_UNSET_VAR"), std::nullopt);
  ::unsetenv("WARD_CONFIG_TEST_VAR");
  LoadOptions defaults;
  ASSERT_TRUE(defaults.env);
  EXPECT_FALSE(defaults.features.tls);
  EXPECT_THAT(defaults.features.filters, IsEmpty());
}

// --- filters ----------------------------------------------------------------------

TEST_F(LoaderTest, FiltersAreSingleKeyMapsWithTheirOptionsAndPosition) {
  auto c = load_ok(std::string(kMinimal) + R"(filters:
  - request_id:
  - security_headers: {X-Frame-Options: DENY}
)");
  ASSERT_TRUE(c);
  ASSERT_THAT(c->filters, SizeIs(2));
  EXPECT_EQ(c->filters[0].name, "request_id");
  EXPECT_TRUE(c->filters[0].options.IsMap());  // null means {}
  EXPECT_EQ(c->filters[0].mark.line, 10);
  EXPECT_EQ(c->filters[0].mark.column, 5);
  EXPECT_EQ(c->filters[1].options["X-Frame-Options"].Scalar(), "DENY");
}

TEST_F(LoaderTest, MalformedFilterItemsAreReported) {
  EXPECT_THAT(
      errors(std::string(kMinimal) + R"(filters:
  - request_id
  - {request_id: {}, cors: {}}
  - cors: [a]
  - rate_limt: {}
  - magic: {}
)"),
      ElementsAre("ward.yaml:10:5: filters[0]: a filter is a map with one key, its name, such as "
                  "'- request_id: {}'; got 'request_id'",
                  "ward.yaml:11:5: filters[1]: a filter is a map with one key, its name, such as "
                  "'- request_id: {}'; got a map",
                  "ward.yaml:12:11: filters[2].cors: options must be a map, got a list",
                  "ward.yaml:13:5: filter 'rate_limt' is unknown (did you mean 'rate_limit'?)",
                  "ward.yaml:14:5: filter 'magic' is unknown"));
}

TEST_F(LoaderTest, FilterNotBuiltIsNotSupportedYet) {
  options_.features.filters = {"request_id"};
  EXPECT_THAT(errors(R"(
listeners: [{name: web, address: ":0"}]
routes:
  - upstream: app
    filters:
      - compress: {}
upstreams: {app: {servers: ["127.0.0.1:1"]}}
)"),
              ElementsAre("ward.yaml:5:9: filter 'compress' is not supported yet"));
}

TEST_F(LoaderTest, FilterOptionsAreCheckedByTheHookAndReportedInFileOrder) {
  std::vector<std::string> checked;
  options_.features.check_filter = [&](const FilterSpec& spec, Reader& reader) {
    checked.push_back(spec.name);
    if (auto bad = spec.options["rate"]) {
      reader.error(bad.Mark(), spec.name + ".rate: bad rate");
    }
  };
  EXPECT_THAT(errors(R"(
listeners: [{name: web, address: ":0"}]
filters:
  - request_id: {}
routes:
  - upstream: app
    filters:
      - rate_limit: {rate: fast}
upstreams: {app: {servers: ["127.0.0.1:1"], connect_timeout: 5}}
)"),
              ElementsAre("ward.yaml:7:28: rate_limit.rate: bad rate",
                          "ward.yaml:8:62: upstreams.app.connect_timeout: expected a duration "
                          "such as 250ms, 10s, 5m or 1h, got '5'"));
  EXPECT_THAT(checked, ElementsAre("request_id", "rate_limit"));
}

// --- feature gates ----------------------------------------------------------------

TEST_F(LoaderTest, KeysOfFeaturesNotBuiltAreNotSupportedYet) {
  options_.features = Features{};
  options_.features.filters = {"request_id"};
  EXPECT_THAT(errors(R"(
listeners:
  - name: web
    address: ":0"
    proxy_protocol: true
    tls: {certificates: [{cert: a, key: b}]}
routes: []
upstreams:
  app:
    servers: ["app:8000", "127.0.0.1:1"]
    tls: true
    health_check: {}
    passive:
)"),
              ElementsAre("ward.yaml:4:5: proxy_protocol is not supported yet",
                          "ward.yaml:5:5: tls is not supported yet",
                          "ward.yaml:9:15: DNS server address 'app:8000' is not supported yet",
                          "ward.yaml:10:5: tls is not supported yet",
                          "ward.yaml:11:5: health_check is not supported yet",
                          "ward.yaml:12:5: passive is not supported yet"));
}

TEST_F(LoaderTest, DisabledFeaturesSwitchedOffExplicitlyAreFine) {
  options_.features = Features{};
  auto c = load_ok(R"(
listeners:
  - name: web
    address: ":0"
    proxy_protocol: false
routes: []
upstreams:
  app:
    servers: ["127.0.0.1:1"]
    tls: false
)");
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->listeners[0].proxy_protocol);
  EXPECT_FALSE(c->upstreams[0].tls);
}

// --- files --------------------------------------------------------------------------

TEST_F(LoaderTest, LoadFileReadsTheFileAndRemembersItsPath) {
  TempFile file{std::string(kMinimal.substr(1))};
  auto result = load_file(file.path(), options_);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result.config->source_path, file.path());
  EXPECT_EQ(result.config->listeners[0].mark.file, file.path());
}

TEST_F(LoaderTest, LoadFileReportsPositionsInThatFile) {
  TempFile file{"workers: 0\n"};
  auto result = load_file(file.path(), options_);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.errors.back().file, file.path());
  EXPECT_EQ(result.errors.back().line, 1);
  EXPECT_EQ(result.errors.back().column, 10);
  EXPECT_THAT(result.errors.back().message, StartsWith("workers: "));
}

TEST_F(LoaderTest, UnreadableFileIsOneErrorWithoutPosition) {
  auto result = load_file("/nonexistent/ward.yaml", options_);
  EXPECT_FALSE(result.ok());
  EXPECT_EQ(result.config, nullptr);
  ASSERT_THAT(result.errors, SizeIs(1));
  EXPECT_EQ(result.errors[0].to_string(),
            "/nonexistent/ward.yaml: cannot read: No such file or directory");
  EXPECT_EQ(result.errors[0].line, 0);

  result = load_file("/tmp", options_);
  ASSERT_THAT(result.errors, SizeIs(1));
  EXPECT_EQ(result.errors[0].to_string(), "/tmp: cannot read: Is a directory");
}

TEST(ConfigErrorTest, FormatsWithAndWithoutPosition) {
  EXPECT_EQ((ConfigError{"a.yaml", 3, 7, "boom"}).to_string(), "a.yaml:3:7: boom");
  EXPECT_EQ((ConfigError{"a.yaml", 0, 0, "cannot read: x"}).to_string(), "a.yaml: cannot read: x");
}

}  // namespace
}  // namespace ward::config
