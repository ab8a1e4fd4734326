#pragma once

// Passive outlier ejection (CONFIG.md, upstreams.*.passive): a server whose
// live traffic fails `consecutive_failures` times in a row, counted across
// every worker, leaves the balancers for `ejection_time`. What counts as a
// failure: a connect error or timeout, a reset or close before a complete
// response, an upstream timeout, a 502, 503 or 504 from the server. Any
// other response ends the run.
//
// A server ejected again within kEjectionMemory of the end of its last
// ejection stays out twice as long as the time before, up to
// max(ejection_time, 5 minutes); one that keeps clean that long starts
// again from ejection_time.
//
// Lock-free: the counters are HostStats' atomics. Racing workers may count a
// failure or two more or less around an ejection, never eject twice.

#include <chrono>
#include <cstdint>

#include "proxy/config/config.h"
#include "proxy/upstream/host_set.h"

namespace ward::upstream {

inline constexpr std::chrono::milliseconds kMaxEjection{5 * 60 * 1000};
inline constexpr std::chrono::milliseconds kEjectionMemory = kMaxEjection;

// The status codes that count as the server's failure.
inline bool passive_failure_status(int status) {
  return status == 502 || status == 503 || status == 504;
}

struct Ejection {
  std::chrono::milliseconds time{0};  // > 0: this failure ejected the server for so long
  bool spared = false;  // the run reached the threshold, but it was the last server in service
};

// Records a failed attempt of `host` (one of `set`) at `now_ms` (steady
// clock ms). The last server of `set` in service is never ejected (as nginx
// never marks a lone server down): ejecting it would turn a struggling
// upstream into a 503 for every request.
Ejection record_failure(const Host& host, const HostSet& set, const config::Passive& passive,
                        int64_t now_ms);

// Records a good answer: the run of failures is over.
inline void record_success(HostStats& stats) {
  // Read first: a steady stream of good answers writes nothing shared.
  if (stats.consecutive_failures.load(std::memory_order_relaxed) != 0) {
    stats.consecutive_failures.store(0, std::memory_order_relaxed);
  }
}

}  // namespace ward::upstream
