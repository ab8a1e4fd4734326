#include "proxy/server/proxy_metrics.h"

#include <array>
#include <string>

namespace ward::server {

ProxyMetrics::ProxyMetrics(observe::Registry& r)
    : requests(r.counter("ward_requests_total", "Requests answered, by route, upstream and status.",
                         {"route", "upstream", "code"})),
      request_duration(r.histogram("ward_request_duration_seconds",
                                   "Time from request head to the end of the response.", {"route"},
                                   observe::default_latency_buckets())),
      upstream_requests(r.counter("ward_upstream_requests_total",
                                  "Requests sent to upstream servers, by response status.",
                                  {"upstream", "server", "code"})),
      upstream_connect_failures(r.counter("ward_upstream_connect_failures_total",
                                          "Failed connection attempts to upstream servers.",
                                          {"upstream", "server"})),
      upstream_reused(r.counter("ward_upstream_connections_reused_total",
                                "Requests sent on a pooled keep-alive upstream connection.",
                                {"upstream"})),
      upstream_created(r.counter("ward_upstream_connections_created_total",
                                 "New upstream connections opened.", {"upstream"})),
      connections_active(
          r.gauge("ward_connections_active", "Open downstream connections.", {"listener"})),
      connections_total(
          r.counter("ward_connections_total", "Accepted downstream connections.", {"listener"})),
      worker_connections(r.gauge("ward_worker_connections",
                                 "Open downstream connections by worker thread.", {"worker"})),
      downstream_errors(r.counter("ward_downstream_errors_total",
                                  "Requests refused for protocol errors or limits, by kind.",
                                  {"listener", "kind"})),
      bytes_received(r.counter("ward_downstream_body_bytes_received_total",
                               "Request body bytes received from clients.", {"listener"})),
      bytes_sent(r.counter("ward_downstream_body_bytes_sent_total",
                           "Response body bytes sent to clients.", {"listener"})),
      config_reloads(
          r.counter("ward_config_reloads_total", "Successful configuration reloads.", {})),
      config_reload_failures(r.counter("ward_config_reload_failures_total",
                                       "Configuration reloads refused for errors.", {})),
      access_log_dropped(r.gauge("ward_access_log_dropped_lines",
                                 "Access log lines dropped because the writer fell behind.", {})),
      websocket_upgrades(r.counter("ward_websocket_upgrades_total",
                                   "WebSocket handshakes answered 101 by an upstream.", {"route"})),
      websocket_active(
          r.gauge("ward_websocket_connections_active", "WebSocket tunnels open now.", {"route"})),
      tls_handshakes(r.counter("ward_tls_handshakes_total", "Completed TLS handshakes.",
                               {"listener", "version"})),
      tls_handshake_errors(r.counter("ward_tls_handshake_errors_total",
                                     "TLS handshakes that failed, by reason.",
                                     {"listener", "reason"})),
      tls_certificate_expiry(
          r.gauge("ward_tls_certificate_expiry_seconds",
                  "notAfter of each served certificate, Unix seconds: alert "
                  "on ward_tls_certificate_expiry_seconds - time() < 14 * 86400.",
                  {"listener", "cert"})),
      proxy_protocol_errors(r.counter("ward_proxy_protocol_errors_total",
                                      "Connections closed for a missing, malformed, too large, "
                                      "timed out or truncated PROXY header, by reason.",
                                      {"listener", "reason"})),
      heap_trims(r.counter("ward_heap_trims_total",
                           "Times freed heap memory was handed back to the kernel after a "
                           "burst of connections.",
                           {})),
      health_checks(r.counter("ward_upstream_health_checks_total",
                              "Active health checks of upstream servers, by result (pass, fail).",
                              {"upstream", "server", "result"})),
      server_healthy(r.gauge("ward_upstream_server_healthy",
                             "1 while the active health check counts the server healthy, else 0.",
                             {"upstream", "server"})),
      ejections(r.counter("ward_upstream_ejections_total",
                          "Servers taken out of balancing by passive outlier ejection.",
                          {"upstream", "server"})),
      dns_lookups(r.counter("ward_upstream_dns_lookups_total",
                            "Lookups of upstream server names, by result (ok, fail).",
                            {"upstream", "host", "result"})),
      store_calls(r.counter("ward_store_calls_total",
                            "Calls to a shared store (rate_limit store: redis://), by result "
                            "(ok, error_reply, timeout, unavailable, overloaded).",
                            {"store", "result"})),
      store_call_duration(r.histogram("ward_store_call_duration_seconds",
                                      "Time a request waited for a shared store's answer.",
                                      {"store"}, observe::default_latency_buckets())) {}

namespace {

// Every family handled here has the labels upstream, server first.
auto departed(const ServerNames& current) {
  return [&current](const std::vector<std::string>& values) {
    return values.size() >= 2 && !current.contains(std::pair(values[0], values[1]));
  };
}

}  // namespace

size_t drop_departed_servers(ProxyMetrics& m, size_t shard, const ServerNames& current) {
  auto drop = departed(current);
  return m.upstream_requests.remove_if(shard, drop) +
         m.upstream_connect_failures.remove_if(shard, drop) + m.ejections.remove_if(shard, drop);
}

size_t drop_departed_health_checks(ProxyMetrics& m, const ServerNames& current) {
  return m.health_checks.remove_if(0, departed(current));
}

std::string_view status_label(int status) {
  static const std::array<std::string, 600> kLabels = [] {
    std::array<std::string, 600> a;
    for (size_t i = 0; i < a.size(); ++i) {
      a[i] = std::to_string(i);
    }
    return a;
  }();
  if (status < 0 || status >= static_cast<int>(kLabels.size())) {
    return "other";
  }
  return kLabels[static_cast<size_t>(status)];
}

}  // namespace ward::server
