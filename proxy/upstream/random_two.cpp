#include "proxy/upstream/random_two.h"

#include "proxy/upstream/pick_helpers.h"

namespace ward::upstream {

namespace {

constexpr uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

}  // namespace

RandomTwo::RandomTwo(uint64_t seed) {
  // xoshiro's authors recommend filling the state from splitmix64: it never
  // yields the all-zero state, which xoshiro cannot leave.
  uint64_t x = seed;
  for (uint64_t& word : state_) {
    x += detail::kGoldenGamma;
    word = detail::mix64(x);
  }
}

uint64_t RandomTwo::next_random() {
  const uint64_t result = rotl(state_[1] * 5, 7) * 9;
  const uint64_t t = state_[1] << 17;
  state_[2] ^= state_[0];
  state_[3] ^= state_[1];
  state_[1] ^= state_[2];
  state_[0] ^= state_[3];
  state_[2] ^= t;
  state_[3] = rotl(state_[3], 45);
  return result;
}

size_t RandomTwo::uniform(size_t bound) {
  // Multiply-shift (Lemire) on the high 32 bits: no division; the bias is
  // bound / 2^32, far below anything a load balancer could notice.
  return static_cast<size_t>(((next_random() >> 32) * bound) >> 32);
}

int RandomTwo::better_of(const HostSet& set, size_t a, size_t b) const {
  const Host& first = set.hosts[a];
  const Host& second = set.hosts[b];
  // On a tie keep `a`: it is itself a random draw.
  const bool take_b =
      detail::less_loaded(detail::active_requests(second), detail::effective_weight(second),
                          detail::active_requests(first), detail::effective_weight(first));
  return static_cast<int>(take_b ? b : a);
}

int RandomTwo::pick(const HostSet& set, const PickContext& ctx) {
  const size_t count = set.hosts.size();
  if (count < 2) {
    return count == 1 && detail::eligible(set.hosts[0], 0, ctx) ? 0 : -1;
  }
  // Fast path, O(1): rejection sampling keeps each draw uniform over the
  // eligible hosts; the second draw skips the first index so they differ.
  for (int attempt = 0; attempt < kDrawAttempts; ++attempt) {
    const size_t a = uniform(count);
    if (!detail::eligible(set.hosts[a], a, ctx)) {
      continue;
    }
    for (int second = 0; second < kDrawAttempts; ++second) {
      size_t b = uniform(count - 1);
      b += b >= a ? 1 : 0;
      if (detail::eligible(set.hosts[b], b, ctx)) {
        return better_of(set, a, b);
      }
    }
    break;
  }
  return pick_from_list(set, ctx);
}

int RandomTwo::pick_from_list(const HostSet& set, const PickContext& ctx) {
  candidates_.clear();
  for (size_t i = 0; i < set.hosts.size(); ++i) {
    if (detail::eligible(set.hosts[i], i, ctx)) {
      candidates_.push_back(static_cast<uint32_t>(i));
    }
  }
  if (candidates_.empty()) {
    return -1;
  }
  if (candidates_.size() == 1) {
    return static_cast<int>(candidates_[0]);
  }
  const size_t a = uniform(candidates_.size());
  size_t b = uniform(candidates_.size() - 1);
  b += b >= a ? 1 : 0;
  return better_of(set, candidates_[a], candidates_[b]);
}

}  // namespace ward::upstream
