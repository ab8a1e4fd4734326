#include "proxy/server/snapshot.h"

#include <algorithm>
#include <map>
#include <stdexcept>
#include <string>

#include "proxy/config/reader.h"

namespace ward::server {

std::shared_ptr<const Snapshot> Snapshot::build(std::shared_ptr<const config::Config> config,
                                                uint64_t generation,
                                                upstream::UpstreamRegistry& registry,
                                                const FilterEnv& filters) {
  auto s = std::make_shared<Snapshot>(
      Snapshot{config, generation, router::Router(config->routes), {}, {}, {}, {}, {}, {}, 0, {}});
  for (const auto& cidr : config->trusted_proxies) {
    s->trusted_proxies.add(cidr);
  }
  std::map<std::string, std::shared_ptr<const tls::ClientContext>> tls_contexts;
  std::string tls_errors;
  for (const auto& upstream : config->upstreams) {
    if (!upstream.tls) {
      continue;
    }
    auto built = tls::ClientContext::build(upstream);
    for (const auto& e : built.errors) {
      tls_errors += "\n  " + e.to_string();
    }
    tls_contexts[upstream.name] = built.context;
  }
  if (!tls_errors.empty()) {
    throw std::runtime_error("upstream TLS did not build:" + tls_errors);
  }
  for (const auto& route : config->routes) {
    // The loader guarantees the upstream exists.
    const auto* u = config->find_upstream(route.upstream);
    s->route_upstream_configs.push_back(u);
    s->route_upstreams.push_back(registry.get_or_create(u->name));
    auto tls = tls_contexts.find(u->name);
    s->route_upstream_tls.push_back(tls != tls_contexts.end() ? tls->second : nullptr);
  }
  config::Reader reader(config->source_path);
  s->global_filters =
      filters.registry.build(config->filters, "global", reader, filters.metrics, filters.runtime);
  size_t longest = 0;
  for (const auto& route : config->routes) {
    s->route_filters.push_back(filters.registry.build(route.filters, route.name, reader,
                                                      filters.metrics, filters.runtime));
    longest = std::max(longest, s->route_filters.back().size());
  }
  s->max_filter_states = s->global_filters.size() + longest;
  s->upstream_tls_contexts = std::move(tls_contexts);
  // Last, once nothing can throw: a reload that fails leaves the running
  // upstreams' servers as they were.
  for (const auto& upstream : config->upstreams) {
    registry.apply_static(upstream);
  }
  if (reader.has_errors()) {
    std::string message = "filters did not build:";
    for (const auto& e : reader.take_errors()) {
      message += "\n  " + e.to_string();
    }
    throw std::runtime_error(message);
  }
  return s;
}

std::vector<config::ConfigError> Snapshot::check_upstream_tls(const config::Config& config) {
  std::vector<config::ConfigError> errors;
  for (const auto& upstream : config.upstreams) {
    if (upstream.tls) {
      auto built = tls::ClientContext::build(upstream);
      errors.insert(errors.end(), built.errors.begin(), built.errors.end());
    }
  }
  return errors;
}

}  // namespace ward::server
