#pragma once

// The parsed, validated configuration: plain immutable data, no networking.
// Built by config::load (loader.h) from the YAML contract in CONFIG.md; every
// default here is the one CONFIG.md states. The server builds its runtime
// Snapshot (routes compiled, upstream state handles) on top of this.

#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "proxy/util/cidr.h"

namespace ward::config {

using Duration = std::chrono::milliseconds;
using namespace std::chrono_literals;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr uint64_t kGiB = 1024 * kMiB;

// Where a value came from, for messages given after load (e.g. a reload that
// cannot bind an address). line/column are 1-based.
struct Mark {
  std::string file;
  int line = 0;
  int column = 0;
};

// "127.0.0.1:8080", "[::1]:8080", "0.0.0.0:443", ":8080", "app:8000".
struct Address {
  std::string host;  // "" for ":8080" (all interfaces); no brackets around v6
  uint16_t port = 0;
  bool host_is_ip = false;  // false: a DNS name to resolve; true also for "" (nothing to resolve)
  std::string text;         // as written, for logs and metrics labels
};

struct AdminConfig {
  Address address;  // default 127.0.0.1:9901
};

enum class AccessLogFormat { json, combined };

struct AccessLogConfig {
  std::string path = "stdout";  // stdout | stderr | off | a file path
  AccessLogFormat format = AccessLogFormat::json;
  uint64_t max_size = 10 * kMiB;
  uint32_t max_files = 5;
};

struct LoggingConfig {
  std::string level = "info";  // trace | debug | info | warn | error
  std::string error_log = "stderr";
  AccessLogConfig access_log;
};

struct Limits {
  Duration header_timeout = 10s;
  Duration idle_timeout = 60s;
  Duration request_timeout = 60s;
  Duration body_timeout = 60s;
  Duration drain_timeout = 30s;
  uint64_t max_header_size = 16 * kKiB;
  uint64_t max_uri_size = 8 * kKiB;
  uint64_t max_body_size = 10 * kMiB;  // 0 = unlimited
  uint32_t max_connections = 20000;
  uint32_t max_concurrent_streams = 128;
};

struct TlsCertificate {
  std::string cert;
  std::string key;
  Mark mark;  // the certificate's item in the list, for errors found when loading it
};

struct ListenerTls {
  std::vector<TlsCertificate> certificates;
  std::string min_version = "1.2";
  std::string ciphers = "default";
  std::vector<std::string> alpn{"h2", "http/1.1"};
  bool session_tickets = true;
  std::string client_ca;  // empty = no client certificates
};

struct Listener {
  std::string name;
  Address address;
  std::optional<uint16_t> redirect_https;
  bool proxy_protocol = false;
  std::optional<ListenerTls> tls;
  Mark mark;
};

// One `- NAME: {options}` item of a filter list. Options stay as YAML so the
// filter registry (filters/) parses them; config/ knows no filter.
struct FilterSpec {
  std::string name;
  YAML::Node options;
  Mark mark;
};

struct RouteMatch {
  std::string host;  // "" = any; "api.example.com" or "*.example.com", lower case
  std::string path_prefix = "/";
  std::vector<std::string> methods;  // empty = any; upper case
};

struct Route {
  std::string name;  // defaults to "route<N>" (N = 0-based index) when omitted
  RouteMatch match;
  std::string upstream;
  bool strip_prefix = false;
  std::vector<FilterSpec> filters;
  Mark mark;  // the route's map in the file
};

enum class Balance { round_robin, least_conn, random_two, ip_hash };

struct ServerConfig {
  Address address;
  uint32_t weight = 1;
};

struct HealthCheck {
  std::string path = "/health";
  Duration interval = 5s;
  Duration timeout = 2s;
  uint32_t healthy_threshold = 2;
  uint32_t unhealthy_threshold = 3;
  int expect_status_min = 200;
  int expect_status_max = 399;
  bool operator==(const HealthCheck&) const = default;
  // expect_status as written back: "204" or "200-399".
  std::string expect_status_text() const {
    return expect_status_min == expect_status_max
               ? std::to_string(expect_status_min)
               : std::to_string(expect_status_min) + "-" + std::to_string(expect_status_max);
  }
};

struct Passive {
  uint32_t consecutive_failures = 5;
  Duration ejection_time = 30s;
};

struct Upstream {
  std::string name;
  Balance balance = Balance::round_robin;
  std::vector<ServerConfig> servers;
  Duration dns_refresh = 5s;
  Duration connect_timeout = 2s;
  uint32_t keepalive = 64;
  uint32_t retries = 1;
  bool tls = false;
  std::string tls_ca;
  std::string tls_server_name;
  std::optional<HealthCheck> health_check;
  std::optional<Passive> passive;
  Mark mark;  // the upstream's name in the file
};

struct Config {
  std::string source_path;  // the file it was loaded from
  uint32_t workers = 0;     // resolved: `auto` becomes the CPU count
  AdminConfig admin;
  LoggingConfig logging;
  Limits limits;
  std::vector<Listener> listeners;
  std::vector<util::Cidr> trusted_proxies;
  std::vector<FilterSpec> filters;
  std::vector<Route> routes;
  std::vector<Upstream> upstreams;  // in file order; names unique

  const Upstream* find_upstream(std::string_view name) const {
    for (const auto& u : upstreams) {
      if (u.name == name) {
        return &u;
      }
    }
    return nullptr;
  }
};

}  // namespace ward::config
