#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "filters/chain.h"
#include "filters/registry.h"
#include "proxy/config/config.h"
#include "proxy/router/router.h"
#include "proxy/tls/client_context.h"
#include "proxy/upstream/upstream_state.h"
#include "proxy/util/cidr.h"

namespace ward::server {

// What building filters needs besides the config: the catalogue, the metrics
// registry filters declare their counters in, and state kept across reloads.
struct FilterEnv {
  const filters::FilterRegistry& registry;
  observe::Registry& metrics;
  filters::RuntimeState& runtime;
};

// Everything a request needs from the configuration, built once per load or
// reload on the main thread and never mutated after. A request keeps the
// snapshot current at its start until it ends (ARCHITECTURE.md: RCU).
struct Snapshot {
  std::shared_ptr<const config::Config> config;
  uint64_t generation = 1;
  router::Router router;
  util::CidrSet trusted_proxies;
  // Parallel to config->routes: the route's upstream state.
  std::vector<std::shared_ptr<upstream::UpstreamState>> route_upstreams;
  // Parallel to config->routes: the upstream's config.
  std::vector<const config::Upstream*> route_upstream_configs;
  // Parallel to config->routes: the upstream's TLS client context (one per
  // upstream with `tls: true`, shared by its routes); null for plain ones.
  std::vector<std::shared_ptr<const tls::ClientContext>> route_upstream_tls;
  // The global chain, then one chain per route (parallel to config->routes).
  filters::FilterChain global_filters;
  std::vector<filters::FilterChain> route_filters;
  // global_filters.size() + the longest route chain: FilterState slots a
  // request may need.
  size_t max_filter_states = 0;
  // Every upstream with `tls: true`, used by a route or not: its client context.
  std::map<std::string, std::shared_ptr<const tls::ClientContext>> upstream_tls_contexts;

  // The client context of upstream `name`; null for a plain upstream.
  std::shared_ptr<const tls::ClientContext> upstream_tls(const std::string& name) const {
    auto it = upstream_tls_contexts.find(name);
    return it != upstream_tls_contexts.end() ? it->second : nullptr;
  }

  // Throws std::runtime_error listing the problems when a filter does not
  // build (the loader's check_filter hook has normally refused such a file).
  static std::shared_ptr<const Snapshot> build(std::shared_ptr<const config::Config> config,
                                               uint64_t generation,
                                               upstream::UpstreamRegistry& registry,
                                               const FilterEnv& filters);

  // `ward check` and start-up: builds the TLS client context of every
  // upstream with `tls: true` (reading tls_ca or the system CAs), nothing
  // kept; the errors carry the upstream's file:line:column.
  static std::vector<config::ConfigError> check_upstream_tls(const config::Config& config);
};

}  // namespace ward::server
