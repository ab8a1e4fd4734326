#include "proxy/upstream/least_conn.h"

#include "proxy/upstream/pick_helpers.h"

namespace ward::upstream {

int LeastConn::pick(const HostSet& set, const PickContext& ctx) {
  const size_t count = set.hosts.size();
  if (count == 0) {
    return -1;
  }
  const size_t start = static_cast<size_t>(next_ % count);
  size_t best = count;
  uint64_t best_active = 0;
  uint64_t best_weight = 1;
  for (size_t step = 0; step < count; ++step) {
    const size_t index = start + step < count ? start + step : start + step - count;
    const Host& host = set.hosts[index];
    if (!detail::eligible(host, index, ctx)) {
      continue;
    }
    const uint64_t active = detail::active_requests(host);
    const uint64_t weight = detail::effective_weight(host);
    // Strictly less: a tie keeps the earlier host in scan order, and the scan
    // starts after the last pick, which makes ties rotate.
    if (best == count || detail::less_loaded(active, weight, best_active, best_weight)) {
      best = index;
      best_active = active;
      best_weight = weight;
    }
  }
  if (best == count) {
    return -1;
  }
  next_ = best + 1;
  return static_cast<int>(best);
}

}  // namespace ward::upstream
