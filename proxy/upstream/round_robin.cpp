#include "proxy/upstream/round_robin.h"

#include <algorithm>
#include <numeric>

#include "proxy/upstream/pick_helpers.h"

namespace ward::upstream {

int RoundRobin::pick(const HostSet& set, const PickContext& ctx) {
  if (!built_ || set.version != version_ || set.hosts.size() != host_count_) {
    reset(set);
    build_schedule(set, ctx.now_ms);
  } else if (picks_until_recheck_ == 0 || schedule_.empty()) {
    // An empty schedule means every host was down: look again on every pick
    // (the 503 path) so the first recovered host is used at once.
    if (availability_changed(set, ctx.now_ms)) {
      build_schedule(set, ctx.now_ms);
    }
    picks_until_recheck_ = host_count_;
  } else {
    --picks_until_recheck_;
  }
  int found = walk(set, ctx, false);
  if (found == kStale) {
    build_schedule(set, ctx.now_ms);
    // Health atomics may flip again under us; this walk only skips.
    found = walk(set, ctx, true);
  }
  return found;
}

void RoundRobin::reset(const HostSet& set) {
  built_ = true;
  version_ = set.version;
  host_count_ = set.hosts.size();
  in_schedule_.assign(host_count_, 0);
  weights_.assign(host_count_, 0);
  current_.assign(host_count_, 0);
  // The all-hosts period bounds every subset's period (a subset's sum is
  // smaller and its gcd a multiple), so later rebuilds do not allocate.
  uint64_t total = 0;
  uint64_t divisor = 0;
  for (const Host& host : set.hosts) {
    total += detail::effective_weight(host);
    divisor = std::gcd(divisor, detail::effective_weight(host));
  }
  const uint64_t period = divisor == 0 ? 0 : total / divisor;
  schedule_.clear();
  schedule_.reserve(std::min(period, kMaxScheduleSlots + host_count_));
  picks_until_recheck_ = host_count_;
}

void RoundRobin::build_schedule(const HostSet& set, int64_t now_ms) {
  uint64_t total = 0;
  uint64_t divisor = 0;
  for (size_t i = 0; i < host_count_; ++i) {
    const bool up = set.hosts[i].available(now_ms);
    in_schedule_[i] = up ? 1 : 0;
    weights_[i] = up ? detail::effective_weight(set.hosts[i]) : 0;
    total += weights_[i];
    divisor = std::gcd(divisor, weights_[i]);
  }
  schedule_.clear();
  cursor_ = 0;
  if (total == 0) {
    return;
  }
  // Dividing by the gcd keeps the same sequence (every quantity in the
  // algorithm scales by it) with the shortest period.
  uint64_t period = 0;
  const bool scale = total / divisor > kMaxScheduleSlots;
  for (size_t i = 0; i < host_count_; ++i) {
    if (weights_[i] == 0) {
      continue;
    }
    // weight <= 2^32 and kMaxScheduleSlots = 2^12: the product fits.
    weights_[i] = scale ? std::max<uint64_t>(1, weights_[i] * kMaxScheduleSlots / total)
                        : weights_[i] / divisor;
    period += weights_[i];
  }
  std::fill(current_.begin(), current_.end(), 0);
  for (uint64_t slot = 0; slot < period; ++slot) {
    size_t best = host_count_;
    for (size_t i = 0; i < host_count_; ++i) {
      if (weights_[i] == 0) {
        continue;
      }
      current_[i] += static_cast<int64_t>(weights_[i]);
      // Strictly greater: on a tie the lower index wins, as in nginx.
      if (best == host_count_ || current_[i] > current_[best]) {
        best = i;
      }
    }
    current_[best] -= static_cast<int64_t>(period);
    schedule_.push_back(static_cast<uint32_t>(best));
  }
  cursor_ = seed_ % schedule_.size();
}

bool RoundRobin::availability_changed(const HostSet& set, int64_t now_ms) const {
  for (size_t i = 0; i < host_count_; ++i) {
    if (set.hosts[i].available(now_ms) != (in_schedule_[i] != 0)) {
      return true;
    }
  }
  return false;
}

int RoundRobin::walk(const HostSet& set, const PickContext& ctx, bool skip_unavailable) {
  // One period visits every scheduled host; more would only repeat.
  for (size_t step = 0; step < schedule_.size(); ++step) {
    const size_t index = schedule_[cursor_];
    cursor_ = cursor_ + 1 == schedule_.size() ? 0 : cursor_ + 1;
    if (!set.hosts[index].available(ctx.now_ms)) {
      if (!skip_unavailable) {
        return kStale;
      }
      continue;
    }
    if (detail::was_tried(ctx.tried, index)) {
      continue;
    }
    return static_cast<int>(index);
  }
  return -1;
}

}  // namespace ward::upstream
