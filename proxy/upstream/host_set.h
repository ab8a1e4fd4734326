#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/ip/tcp.hpp>

namespace ward::upstream {

// Runtime state of one server, shared by every worker and kept across
// reloads (the server keeps a table keyed by upstream name + server address).
// Every field is an atomic: workers update it on the request path without a
// lock; the health checker and the admin endpoint read it.
struct HostStats {
  std::atomic<bool> healthy{true};    // active health check verdict
  std::atomic<int64_t> active{0};     // in-flight requests, all workers
  std::atomic<uint64_t> requests{0};  // completed or failed attempts
  std::atomic<uint64_t> failures{0};  // connect errors, resets, timeouts
  std::atomic<uint32_t> consecutive_failures{0};
  std::atomic<int64_t> ejected_until_ms{0};  // passive ejection, steady clock ms; 0 = not ejected
  std::atomic<uint32_t> ejections{0};        // repeat ejections in a row (the doubling; passive.h)
};

// Steady clock milliseconds: the time base of Host::available and
// HostStats::ejected_until_ms.
inline int64_t steady_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct Host {
  std::string name;  // "127.0.0.1:9001", as configured (or resolved) - the metrics label
  std::string host;  // the configured host, no port or brackets: what upstream TLS verifies
  boost::asio::ip::tcp::endpoint endpoint;
  uint32_t weight = 1;
  std::shared_ptr<HostStats> stats;

  // Healthy and not ejected at `now_ms` (steady clock milliseconds).
  bool available(int64_t now_ms) const {
    return stats->healthy.load(std::memory_order_relaxed) &&
           stats->ejected_until_ms.load(std::memory_order_relaxed) <= now_ms;
  }
};

// The servers of one upstream with their health, published as one immutable
// object: a change of servers (DNS) and of health never disagree
// (ARCHITECTURE.md: one published HostSet). Health is in the atomics, so a
// health flip does not need a new HostSet; a server list change does.
struct HostSet {
  uint64_t version = 0;  // increases with each new server list
  std::vector<Host> hosts;
};

}  // namespace ward::upstream
