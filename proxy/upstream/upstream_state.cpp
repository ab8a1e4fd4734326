#include "proxy/upstream/upstream_state.h"

#include <boost/asio/ip/address.hpp>

namespace ward::upstream {

void UpstreamState::publish(std::shared_ptr<HostSet> set) {
  std::lock_guard lock(mu_);
  set->version = version_.load(std::memory_order_relaxed) + 1;
  hosts_ = std::move(set);
  version_.store(hosts_->version, std::memory_order_release);
}

std::shared_ptr<HostStats> UpstreamState::stats_for(const std::string& server) {
  std::lock_guard lock(mu_);
  auto& slot = stats_[server];
  if (!slot) {
    slot = std::make_shared<HostStats>();
  }
  return slot;
}

std::shared_ptr<UpstreamState> UpstreamRegistry::get_or_create(const std::string& name) {
  auto& slot = states_[name];
  if (!slot) {
    slot = std::make_shared<UpstreamState>(name);
  }
  return slot;
}

std::shared_ptr<UpstreamState> UpstreamRegistry::find(const std::string& name) const {
  auto it = states_.find(name);
  return it == states_.end() ? nullptr : it->second;
}

namespace {

bool same_servers(const HostSet& a, const HostSet& b) {
  if (a.hosts.size() != b.hosts.size()) {
    return false;
  }
  for (size_t i = 0; i < a.hosts.size(); ++i) {
    if (a.hosts[i].name != b.hosts[i].name || a.hosts[i].weight != b.hosts[i].weight) {
      return false;
    }
  }
  return true;
}

}  // namespace

void UpstreamRegistry::apply_static(const config::Upstream& upstream) {
  auto state = get_or_create(upstream.name);
  auto set = std::make_shared<HostSet>();
  for (const auto& server : upstream.servers) {
    if (!server.address.host_is_ip) {
      continue;
    }
    Host host;
    host.name = server.address.text;
    host.host = server.address.host;
    host.endpoint = boost::asio::ip::tcp::endpoint(
        boost::asio::ip::make_address(server.address.host), server.address.port);
    host.weight = server.weight;
    host.stats = state->stats_for(host.name);
    set->hosts.push_back(std::move(host));
  }
  if (!same_servers(*state->hosts(), *set)) {
    state->publish(std::move(set));
  }
}

}  // namespace ward::upstream
