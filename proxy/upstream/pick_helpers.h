#pragma once

// Small pieces shared by the balancers (round_robin, least_conn, random_two,
// ip_hash). Internal to proxy/upstream/; the server only sees balancer.h.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

#include "proxy/upstream/balancer.h"
#include "proxy/upstream/host_set.h"

namespace ward::upstream::detail {

// splitmix64's output function (Steele, Lea, Flood, "Fast splittable
// pseudorandom number generators", 2014): a bijection on 64 bits in which
// every input bit flips each output bit with probability ~1/2.
constexpr uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// FNV-1a (Fowler, Noll, Vo) over bytes, continuing from `hash`: cheap and
// stable across builds and machines, but weak in its last bytes, so callers
// finish with mix64.
constexpr uint64_t kFnvOffsetBasis = 0xcbf29ce484222325ULL;
inline uint64_t fnv1a(const unsigned char* data, size_t size, uint64_t hash = kFnvOffsetBasis) {
  for (size_t i = 0; i < size; ++i) {
    hash ^= data[i];
    hash *= 0x100000001b3ULL;  // the 64-bit FNV prime
  }
  return hash;
}

// Weyl increment of splitmix64 (2^64 / golden ratio, odd): successive
// multiples visit every 64-bit value before repeating.
constexpr uint64_t kGoldenGamma = 0x9e3779b97f4a7c15ULL;

// `tried` holds the hosts of earlier attempts of one request: 0..retries
// entries, so a linear scan beats anything that needs building.
inline bool was_tried(std::span<const size_t> tried, size_t index) {
  return std::find(tried.begin(), tried.end(), index) != tried.end();
}

inline bool eligible(const Host& host, size_t index, const PickContext& ctx) {
  return host.available(ctx.now_ms) && !was_tried(ctx.tried, index);
}

// A weight of 0 would divide by zero in load-per-weight and starve the ring;
// it is treated as 1 (config validation is expected to reject it).
inline uint64_t effective_weight(const Host& host) {
  return std::max<uint64_t>(host.weight, 1);
}

// In-flight requests, clamped to [0, 2^31): the counter is shared by all
// workers and may be read mid-update; the clamp keeps the cross products in
// less_loaded below 2^63.
inline uint64_t active_requests(const Host& host) {
  constexpr int64_t kMaxActive = (int64_t{1} << 31) - 1;
  return static_cast<uint64_t>(
      std::clamp<int64_t>(host.stats->active.load(std::memory_order_relaxed), 0, kMaxActive));
}

// active_a / weight_a < active_b / weight_b, exactly (cross multiplication:
// active < 2^31 and weight <= 2^32, so each product fits in 63 bits).
inline bool less_loaded(uint64_t active_a, uint64_t weight_a, uint64_t active_b,
                        uint64_t weight_b) {
  return active_a * weight_b < active_b * weight_a;
}

}  // namespace ward::upstream::detail
