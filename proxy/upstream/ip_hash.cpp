#include "proxy/upstream/ip_hash.h"

#include <algorithm>
#include <tuple>

#include "proxy/upstream/pick_helpers.h"

namespace ward::upstream {

namespace {

// A host's identity on the ring: its address and port. Not the index (it
// shifts when a host before it is removed) and not the name (one DNS name
// resolves to many hosts).
uint64_t endpoint_key(const boost::asio::ip::tcp::endpoint& endpoint) {
  uint64_t hash = detail::kFnvOffsetBasis;
  const boost::asio::ip::address address = endpoint.address();
  if (address.is_v4()) {
    const auto bytes = address.to_v4().to_bytes();
    hash = detail::fnv1a(bytes.data(), bytes.size(), hash);
  } else {
    const auto bytes = address.to_v6().to_bytes();
    hash = detail::fnv1a(bytes.data(), bytes.size(), hash);
  }
  const uint16_t port = endpoint.port();
  const unsigned char port_bytes[2] = {static_cast<unsigned char>(port >> 8),
                                       static_cast<unsigned char>(port & 0xff)};
  return detail::mix64(detail::fnv1a(port_bytes, sizeof port_bytes, hash));
}

bool any_eligible(const HostSet& set, const PickContext& ctx) {
  for (size_t i = 0; i < set.hosts.size(); ++i) {
    if (detail::eligible(set.hosts[i], i, ctx)) {
      return true;
    }
  }
  return false;
}

struct RingPoint {
  uint64_t position;
  uint64_t key;  // breaks position ties by identity, not by index
  uint32_t owner;
};

}  // namespace

void IpHash::rebuild(const HostSet& set) {
  built_ = true;
  version_ = set.version;
  host_count_ = set.hosts.size();
  uint64_t total_weight = 0;
  for (const Host& host : set.hosts) {
    total_weight += detail::effective_weight(host);
  }
  const bool scale = total_weight * kPointsPerWeight > kMaxPoints;
  std::vector<RingPoint> ring;
  ring.reserve(scale ? kMaxPoints + host_count_ : total_weight * kPointsPerWeight);
  for (size_t i = 0; i < host_count_; ++i) {
    const Host& host = set.hosts[i];
    // weight <= 2^32 and kMaxPoints = 2^17: the product fits.
    const uint64_t count =
        scale ? std::max<uint64_t>(1, detail::effective_weight(host) * kMaxPoints / total_weight)
              : detail::effective_weight(host) * kPointsPerWeight;
    const uint64_t key = endpoint_key(host.endpoint);
    // The splitmix64 sequence seeded with the key: well spread, and the
    // first points of a host stay put when its weight grows.
    for (uint64_t k = 1; k <= count; ++k) {
      ring.push_back(
          {detail::mix64(key + k * detail::kGoldenGamma), key, static_cast<uint32_t>(i)});
    }
  }
  std::sort(ring.begin(), ring.end(), [](const RingPoint& a, const RingPoint& b) {
    return std::tie(a.position, a.key) < std::tie(b.position, b.key);
  });
  points_.resize(ring.size());
  owners_.resize(ring.size());
  for (size_t k = 0; k < ring.size(); ++k) {
    points_[k] = ring[k].position;
    owners_[k] = ring[k].owner;
  }
}

int IpHash::pick(const HostSet& set, const PickContext& ctx) {
  if (!built_ || set.version != version_ || set.hosts.size() != host_count_) {
    rebuild(set);
  }
  if (points_.empty()) {
    return -1;
  }
  size_t position = static_cast<size_t>(std::lower_bound(points_.begin(), points_.end(), ctx.hash) -
                                        points_.begin());
  for (size_t step = 0; step < points_.size(); ++step) {
    if (position == points_.size()) {
      position = 0;  // past the last point: wrap around the ring
    }
    const size_t owner = owners_[position];
    if (detail::eligible(set.hosts[owner], owner, ctx)) {
      return static_cast<int>(owner);
    }
    if (step + 1 == kWalkBeforeCheck && !any_eligible(set, ctx)) {
      return -1;
    }
    ++position;
  }
  return -1;
}

}  // namespace ward::upstream
