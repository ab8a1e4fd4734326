#pragma once

#include <chrono>
#include <ctime>

namespace ward::util {

// The steady clock read cheaply, for deadlines and idle times (latencies
// still read steady_clock::now()).
//
// CLOCK_MONOTONIC_COARSE is steady_clock's own timeline (CLOCK_MONOTONIC) as
// of the kernel's last tick: ~5 ns a read from the vDSO, against ~24 ns for
// steady_clock::now() on the bench machine, where a proxied request read
// the clock ten times (1.4% of the worker's CPU in the vDSO, h2-tls).
//
// coarse_now() adds two of the coarse clock's ticks (2-8 ms), so it is not
// earlier than steady_clock::now(): a deadline set from it passes no sooner
// than asked, and at most two ticks later. One tick is not enough margin:
// the tick itself comes late on a loaded VM (the coarse clock was measured
// up to 4.5 ms behind with a 4 ms tick, never 8). nginx and HAProxy time
// their timers from a clock read once per event-loop pass, which is
// earlier than the truth by however long the pass took.

// Two ticks of the coarse clock: how much later than steady_clock::now()
// coarse_now() may be.
inline std::chrono::nanoseconds coarse_margin() {
  static const std::chrono::nanoseconds margin = [] {
    timespec res{};
    clock_getres(CLOCK_MONOTONIC_COARSE, &res);
    return 2 * (std::chrono::seconds(res.tv_sec) + std::chrono::nanoseconds(res.tv_nsec));
  }();
  return margin;
}

inline std::chrono::steady_clock::time_point coarse_now() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return std::chrono::steady_clock::time_point(
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec) +
          coarse_margin()));
}

}  // namespace ward::util
