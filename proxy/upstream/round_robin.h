#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "proxy/upstream/balancer.h"
#include "proxy/upstream/host_set.h"

namespace ward::upstream {

// Smooth weighted round robin (nginx ngx_http_upstream_get_peer: add each
// weight to its current value, take the largest, subtract the total).
//
// The sequence is periodic with period sum(weights) / gcd(weights), so it is
// computed once per server list and availability into `schedule_` and each
// pick just advances a cursor: O(1) per pick instead of nginx's O(n) scan.
// The schedule covers the hosts available when it was built; meeting an
// unavailable host rebuilds it at once, and a host coming back is noticed by
// a scan every n picks (amortised O(1)).
class RoundRobin final : public Balancer {
 public:
  explicit RoundRobin(uint64_t seed) : seed_(seed) {}

  int pick(const HostSet& set, const PickContext& ctx) override;

  // One period of the schedule (host indexes); for tests and diagnostics.
  const std::vector<uint32_t>& schedule() const { return schedule_; }

 private:
  // A period longer than this is approximated by scaling the weights down
  // (weights of 1 and 10^6 are noise, not intent); 4096 slots = 16 KiB.
  static constexpr uint64_t kMaxScheduleSlots = 4096;

  void reset(const HostSet& set);
  void build_schedule(const HostSet& set, int64_t now_ms);
  bool availability_changed(const HostSet& set, int64_t now_ms) const;
  // Returns a host, -1 when a whole period had none, or kStale when it met
  // an unavailable host and `skip_unavailable` is false.
  int walk(const HostSet& set, const PickContext& ctx, bool skip_unavailable);

  static constexpr int kStale = -2;

  uint64_t seed_;
  bool built_ = false;
  uint64_t version_ = 0;
  size_t host_count_ = 0;
  std::vector<uint32_t> schedule_;    // one period of the smooth sequence
  std::vector<uint8_t> in_schedule_;  // per host: available when schedule_ was built
  std::vector<uint64_t> weights_;     // per host, reduced by the gcd (scratch)
  std::vector<int64_t> current_;      // per host, nginx's current_weight (scratch)
  size_t cursor_ = 0;
  size_t picks_until_recheck_ = 0;
};

}  // namespace ward::upstream
