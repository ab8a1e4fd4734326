#pragma once

#include <string_view>

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

// "200" for 200: label values for status codes without formatting per request.
std::string_view status_label(int status);

}  // namespace ward::server
