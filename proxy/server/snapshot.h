#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "proxy/config/config.h"
#include "proxy/router/router.h"
#include "proxy/upstream/upstream_state.h"
#include "proxy/util/cidr.h"

namespace ward::server {

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

  static std::shared_ptr<const Snapshot> build(std::shared_ptr<const config::Config> config,
                                               uint64_t generation,
                                               upstream::UpstreamRegistry& registry);
};

}  // namespace ward::server
