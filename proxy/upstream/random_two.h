#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "proxy/upstream/balancer.h"
#include "proxy/upstream/host_set.h"

namespace ward::upstream {

// Power of two choices (Mitzenmacher 2001): draw two distinct available
// servers uniformly at random and take the one with fewer in-flight requests
// per weight. Nearly as even as least_conn without its O(n) scan, and
// workers acting on stale counts do not all rush the same server.
class RandomTwo final : public Balancer {
 public:
  explicit RandomTwo(uint64_t seed);

  int pick(const HostSet& set, const PickContext& ctx) override;

 private:
  // Draws of a random host before falling back to listing the eligible ones:
  // with at least half the hosts eligible, 4 draws miss with p <= 1/16.
  static constexpr int kDrawAttempts = 4;

  uint64_t next_random();        // xoshiro256** (Blackman, Vigna 2018)
  size_t uniform(size_t bound);  // in [0, bound), bound < 2^32
  int better_of(const HostSet& set, size_t a, size_t b) const;
  int pick_from_list(const HostSet& set, const PickContext& ctx);

  std::array<uint64_t, 4> state_{};
  std::vector<uint32_t> candidates_;  // slow-path scratch; keeps its capacity
};

}  // namespace ward::upstream
