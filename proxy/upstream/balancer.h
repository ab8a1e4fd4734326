#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "proxy/config/config.h"
#include "proxy/upstream/host_set.h"

namespace ward::upstream {

struct PickContext {
  int64_t now_ms = 0;             // steady clock ms, for Host::available
  uint64_t hash = 0;              // ip_hash: hash of the client IP
  std::span<const size_t> tried;  // host indexes already tried for this request
};

// Chooses a server. One instance per worker per upstream (not shared between
// threads), so its state (smooth weights, ring, RNG) needs no lock. When the
// HostSet changes (a new version), the caller passes the new set and the
// balancer rebuilds what it derives from it.
class Balancer {
 public:
  virtual ~Balancer() = default;
  // Index into set.hosts of an available server not in ctx.tried, or -1 when
  // there is none. Never returns an unavailable host.
  virtual int pick(const HostSet& set, const PickContext& ctx) = 0;
};

// round_robin: smooth weighted round robin (nginx's algorithm: every pick adds
//   each weight to its current value, takes the largest, subtracts the total),
//   so weights 5,1,1 give a a b a c a a, not a a a a a b c.
// least_conn: fewest HostStats::active per weight; ties broken round-robin.
// random_two: two distinct random available servers, the one with fewer
//   active per weight (power of two choices).
// ip_hash: consistent hash ring of the client IP hash with virtual nodes
//   (weight-proportional), so adding or removing one of n servers moves only
//   about 1/n of the clients; an unavailable server's clients go to the next
//   server on the ring.
//
// `seed` makes instances differ: random_two seeds its PRNG with it, and
// round_robin / least_conn start their rotation at `seed` modulo the number
// of slots, so workers given different seeds (e.g. their index) do not all
// send their first requests to the same server. Seed 0 starts at host 0.
std::unique_ptr<Balancer> make_balancer(config::Balance kind, uint64_t seed);

// A stable 64-bit hash for ip_hash keys (FNV-1a then a 64-bit mix).
uint64_t hash_key(std::string_view key);

}  // namespace ward::upstream
