#pragma once

#include <cstddef>
#include <cstdint>

#include "proxy/upstream/balancer.h"
#include "proxy/upstream/host_set.h"

namespace ward::upstream {

// Fewest in-flight requests per unit of weight (HostStats::active / weight);
// among equals, the first one after the previous pick (round robin).
//
// O(n) per pick by necessity: the counts are atomics that every worker moves
// on every request, so no ordered structure could stay current without a
// lock or a scan. Upstreams are tens of servers; for large ones random_two
// gives nearly the same balance in O(1).
class LeastConn final : public Balancer {
 public:
  explicit LeastConn(uint64_t seed) : next_(seed) {}

  int pick(const HostSet& set, const PickContext& ctx) override;

 private:
  uint64_t next_;  // where the scan starts, modulo the host count
};

}  // namespace ward::upstream
