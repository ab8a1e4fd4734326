#pragma once

// HostSets for balancer tests: host i is 10.0.<i / 250>.<i % 250 + 1>:8000.

#include <boost/asio/ip/address.hpp>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "proxy/upstream/balancer.h"
#include "proxy/upstream/host_set.h"

namespace ward::upstream::testing {

inline Host make_host(const std::string& ip, uint16_t port, uint32_t weight = 1) {
  Host host;
  host.name = ip + ":" + std::to_string(port);
  host.endpoint = {boost::asio::ip::make_address(ip), port};
  host.weight = weight;
  host.stats = std::make_shared<HostStats>();
  return host;
}

inline std::string test_ip(size_t i) {
  return "10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1);
}

inline HostSet make_set(uint64_t version, const std::vector<uint32_t>& weights) {
  HostSet set;
  set.version = version;
  for (size_t i = 0; i < weights.size(); ++i) {
    set.hosts.push_back(make_host(test_ip(i), 8000, weights[i]));
  }
  return set;
}

inline HostSet make_equal_set(uint64_t version, size_t count) {
  return make_set(version, std::vector<uint32_t>(count, 1));
}

inline PickContext at(int64_t now_ms, std::span<const size_t> tried = {}) {
  PickContext ctx;
  ctx.now_ms = now_ms;
  ctx.tried = tried;
  return ctx;
}

// Picks `picks` times and counts the picks of each host (-1 fails the test).
inline std::vector<int> count_picks(Balancer& balancer, const HostSet& set, int picks,
                                    int64_t now_ms = 0) {
  std::vector<int> counts(set.hosts.size(), 0);
  for (int i = 0; i < picks; ++i) {
    const int index = balancer.pick(set, at(now_ms));
    if (index < 0 || static_cast<size_t>(index) >= set.hosts.size()) {
      counts.clear();
      return counts;
    }
    ++counts[static_cast<size_t>(index)];
  }
  return counts;
}

}  // namespace ward::upstream::testing
