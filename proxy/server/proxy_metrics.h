#pragma once

#include <set>
#include <string>
#include <string_view>
#include <utility>

#include "proxy/observe/metrics.h"

namespace ward::server {

// Every metric family the data plane writes, declared in one place.
struct ProxyMetrics {
  explicit ProxyMetrics(observe::Registry& r);

  observe::CounterFamily& requests;                   // route, upstream, code
  observe::HistogramFamily& request_duration;         // route
  observe::CounterFamily& upstream_requests;          // upstream, server, code
  observe::CounterFamily& upstream_connect_failures;  // upstream, server
  observe::CounterFamily& upstream_reused;            // upstream
  observe::CounterFamily& upstream_created;           // upstream
  observe::GaugeFamily& connections_active;           // listener
  observe::CounterFamily& connections_total;          // listener
  observe::GaugeFamily& worker_connections;           // worker
  observe::CounterFamily& downstream_errors;          // listener, kind
  observe::CounterFamily& bytes_received;             // listener
  observe::CounterFamily& bytes_sent;                 // listener
  observe::CounterFamily& config_reloads;
  observe::CounterFamily& config_reload_failures;
  observe::GaugeFamily& access_log_dropped;
  observe::CounterFamily& websocket_upgrades;     // route
  observe::GaugeFamily& websocket_active;         // route
  observe::CounterFamily& tls_handshakes;         // listener, version
  observe::CounterFamily& tls_handshake_errors;   // listener, reason
  observe::GaugeFamily& tls_certificate_expiry;   // listener, cert: notAfter, Unix seconds
  observe::CounterFamily& proxy_protocol_errors;  // listener, reason
  observe::CounterFamily& heap_trims;             // main thread (shard 0)
  observe::CounterFamily& health_checks;          // upstream, server, result; main thread
  observe::GaugeFamily& server_healthy;           // upstream, server; main thread
  observe::CounterFamily& ejections;              // upstream, server
  observe::CounterFamily& dns_lookups;            // upstream, host, result; main thread
  observe::CounterFamily& store_calls;            // store, result
  observe::HistogramFamily& store_call_duration;  // store
};

// The servers every upstream has now, as (upstream, server) label values.
using ServerNames = std::set<std::pair<std::string, std::string>>;

// Drops a worker's shard of the per-server counters (ward_upstream_requests,
// _connect_failures, _ejections) for servers not in `current`: a server a
// reload removed or a DNS answer no longer names (a Kubernetes pod that
// went away) would otherwise keep its series until restart, one more per
// pod for good. Returns how many series went. Worker thread `shard` only.
size_t drop_departed_servers(ProxyMetrics& m, size_t shard, const ServerNames& current);
// The same for the main thread's ward_upstream_health_checks_total (shard 0).
size_t drop_departed_health_checks(ProxyMetrics& m, const ServerNames& current);

// "200" for 200: label values for status codes without formatting per request.
std::string_view status_label(int status);

}  // namespace ward::server
