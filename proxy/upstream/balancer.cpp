#include "proxy/upstream/balancer.h"

#include "proxy/upstream/ip_hash.h"
#include "proxy/upstream/least_conn.h"
#include "proxy/upstream/pick_helpers.h"
#include "proxy/upstream/random_two.h"
#include "proxy/upstream/round_robin.h"

namespace ward::upstream {

std::unique_ptr<Balancer> make_balancer(config::Balance kind, uint64_t seed) {
  switch (kind) {
    case config::Balance::least_conn:
      return std::make_unique<LeastConn>(seed);
    case config::Balance::random_two:
      return std::make_unique<RandomTwo>(seed);
    case config::Balance::ip_hash:
      return std::make_unique<IpHash>();
    case config::Balance::round_robin:
      break;
  }
  return std::make_unique<RoundRobin>(seed);
}

uint64_t hash_key(std::string_view key) {
  // FNV-1a alone mixes its last bytes poorly (IPs that differ in the last
  // octet land close together on the ring); the final mix spreads them.
  const uint64_t hash =
      detail::fnv1a(reinterpret_cast<const unsigned char*>(key.data()), key.size());
  return detail::mix64(hash);
}

}  // namespace ward::upstream
