#include "proxy/server/snapshot.h"

namespace ward::server {

std::shared_ptr<const Snapshot> Snapshot::build(std::shared_ptr<const config::Config> config,
                                                uint64_t generation,
                                                upstream::UpstreamRegistry& registry) {
  auto s = std::make_shared<Snapshot>(
      Snapshot{config, generation, router::Router(config->routes), {}, {}, {}});
  for (const auto& cidr : config->trusted_proxies) {
    s->trusted_proxies.add(cidr);
  }
  for (const auto& upstream : config->upstreams) {
    registry.apply_static(upstream);
  }
  for (const auto& route : config->routes) {
    // The loader guarantees the upstream exists.
    const auto* u = config->find_upstream(route.upstream);
    s->route_upstream_configs.push_back(u);
    s->route_upstreams.push_back(registry.get_or_create(u->name));
  }
  return s;
}

}  // namespace ward::server
