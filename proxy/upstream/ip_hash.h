#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "proxy/upstream/balancer.h"
#include "proxy/upstream/host_set.h"

namespace ward::upstream {

// Consistent hashing (Karger et al. 1997) of PickContext::hash on a ring of
// virtual nodes. A host's points depend only on its endpoint, never on its
// index or on the other hosts, so adding or removing a server moves only the
// keys that land on its points (~1/n), and every worker builds the same ring.
// A key belongs to the first point at or after it, clockwise; unavailable or
// tried hosts are walked past, which sends their keys to the next host while
// everyone else keeps theirs.
class IpHash final : public Balancer {
 public:
  // Virtual nodes per unit of weight: with 128 the share of each of n equal
  // hosts is within about +-10% of 1/n.
  static constexpr uint64_t kPointsPerWeight = 128;
  // Ring size cap (1.5 MiB per upstream per worker); past it the points per
  // weight shrink, keeping the weights' proportions.
  static constexpr uint64_t kMaxPoints = uint64_t{1} << 17;

  int pick(const HostSet& set, const PickContext& ctx) override;

  size_t ring_size() const { return points_.size(); }

 private:
  // Ring positions walked before checking that some host is eligible at
  // all: keeps a pick with every server down at O(n) instead of O(ring).
  static constexpr size_t kWalkBeforeCheck = 64;

  void rebuild(const HostSet& set);

  bool built_ = false;
  uint64_t version_ = 0;
  size_t host_count_ = 0;
  std::vector<uint64_t> points_;  // sorted ring positions
  std::vector<uint32_t> owners_;  // owners_[k]: host index of points_[k]
};

}  // namespace ward::upstream
