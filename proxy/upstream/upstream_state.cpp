#include "proxy/upstream/upstream_state.h"

#include <boost/asio/ip/address.hpp>
#include <set>
#include <string_view>

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

size_t UpstreamState::prune_stats() {
  std::lock_guard lock(mu_);  // guards stats_
  // use_count() == 1: this map holds the only reference, and only stats_for,
  // under this lock, can hand out another.
  return std::erase_if(stats_, [](const auto& entry) { return entry.second.use_count() == 1; });
}

size_t UpstreamState::stats_count() const {
  std::lock_guard lock(mu_);  // guards stats_
  return stats_.size();
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

size_t UpstreamRegistry::prune_stats() {
  size_t pruned = 0;
  for (auto& [name, state] : states_) {
    pruned += state->prune_stats();
  }
  return pruned;
}

size_t UpstreamRegistry::forget_unconfigured(const std::vector<config::Upstream>& configured) {
  std::set<std::string_view> names;
  std::set<std::string_view> hosts;
  for (const auto& u : configured) {
    names.insert(u.name);
    for (const auto& server : u.servers) {
      if (!server.address.host_is_ip) {
        hosts.insert(server.address.host);
      }
    }
  }
  std::erase_if(resolved_names, [&](const auto& entry) { return !hosts.contains(entry.first); });
  // use_count() == 1: only this map holds it, and only get_or_create, on
  // this same thread, hands out more.
  return std::erase_if(states_, [&](const auto& entry) {
    return !names.contains(entry.first) && entry.second.use_count() == 1;
  });
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

bool UpstreamState::publish_if_changed(std::shared_ptr<HostSet> set) {
  if (same_servers(*hosts(), *set)) {
    return false;
  }
  publish(std::move(set));
  return true;
}

std::shared_ptr<HostSet> build_host_set(const config::Upstream& upstream,
                                        const ResolvedNames& resolved, UpstreamState& state) {
  auto set = std::make_shared<HostSet>();
  std::set<std::string> seen;
  auto add = [&](std::string name, const config::ServerConfig& server,
                 const boost::asio::ip::address& ip) {
    if (!seen.insert(name).second) {
      return;
    }
    Host host;
    host.stats = state.stats_for(name);
    host.name = std::move(name);
    host.host = server.address.host;
    host.endpoint = boost::asio::ip::tcp::endpoint(ip, server.address.port);
    host.weight = server.weight;
    set->hosts.push_back(std::move(host));
  };
  for (const auto& server : upstream.servers) {
    if (server.address.host_is_ip) {
      add(server.address.text, server, boost::asio::ip::make_address(server.address.host));
      continue;
    }
    auto it = resolved.find(server.address.host);
    if (it == resolved.end()) {
      continue;
    }
    for (const auto& ip : it->second) {
      std::string text = ip.is_v6() ? "[" + ip.to_string() + "]" : ip.to_string();
      add(text + ":" + std::to_string(server.address.port), server, ip);
    }
  }
  return set;
}

void UpstreamRegistry::apply_static(const config::Upstream& upstream) {
  auto state = get_or_create(upstream.name);
  state->publish_if_changed(build_host_set(upstream, resolved_names, *state));
}

}  // namespace ward::upstream
