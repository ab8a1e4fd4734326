#include "proxy/upstream/passive.h"

#include <algorithm>

namespace ward::upstream {

Ejection record_failure(const Host& host, const HostSet& set, const config::Passive& passive,
                        int64_t now_ms) {
  HostStats& stats = *host.stats;
  uint32_t run = stats.consecutive_failures.fetch_add(1, std::memory_order_relaxed) + 1;
  // Exactly one failure brings the run to the threshold: that one decides.
  if (run != passive.consecutive_failures) {
    return {};
  }
  stats.consecutive_failures.store(0, std::memory_order_relaxed);
  bool others = std::any_of(set.hosts.begin(), set.hosts.end(), [&](const Host& h) {
    return h.stats != host.stats && h.available(now_ms);
  });
  if (!others) {
    return {std::chrono::milliseconds(0), true};
  }
  int64_t last_until = stats.ejected_until_ms.load(std::memory_order_relaxed);
  if (last_until > now_ms) {
    return {};  // already out (answers that were in flight)
  }
  bool repeat = last_until != 0 && now_ms - last_until < kEjectionMemory.count();
  uint32_t ejections = repeat ? stats.ejections.load(std::memory_order_relaxed) + 1 : 0;
  stats.ejections.store(ejections, std::memory_order_relaxed);

  const int64_t cap = std::max(passive.ejection_time.count(), kMaxEjection.count());
  int64_t time = passive.ejection_time.count();
  for (uint32_t i = 0; i < ejections && time < cap; ++i) {
    time *= 2;
  }
  time = std::min(time, cap);
  stats.ejected_until_ms.store(now_ms + time, std::memory_order_relaxed);
  return {std::chrono::milliseconds(time), false};
}

}  // namespace ward::upstream
