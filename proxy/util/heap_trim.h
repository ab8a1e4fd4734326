#pragma once

#include <cstdint>

namespace ward::util {

// When to hand freed heap memory back to the kernel.
//
// glibc returns only the top of a heap by itself. After a burst of
// connections (each TLS handshake frees the OpenSSL state it needed only
// while it ran, interleaved with what the connections keep), the freed
// pages in the middle stay resident until malloc_trim(3) releases them
// (2.7 MiB of 160 holding 9,800 idle TLS connections). Trimming
// holds each arena's lock while it walks it and makes a madvise(2) per free
// run, so it runs only after enough churn and when the churn has died down:
// never while connections pour in, and never on a steady keep-alive load.
//
// Pure logic, fed by a timer: tick() gets the running count of connections
// opened and closed, and says whether to trim now; idle() whether the next
// tick may come later.
class TrimPolicy {
 public:
  struct Params {
    uint64_t min_churn = 1024;  // opens + closes since the last trim
    uint64_t quiet_below = 16;  // fewer than this in the last tick: quiet
  };
  TrimPolicy() = default;
  explicit TrimPolicy(Params p) : p_(p) {}

  bool tick(uint64_t churn_total) {
    uint64_t in_tick = churn_total - last_total_;
    last_total_ = churn_total;
    idle_ = in_tick == 0;
    if (churn_total - at_last_trim_ < p_.min_churn || in_tick >= p_.quiet_below) {
      return false;
    }
    at_last_trim_ = churn_total;
    return true;
  }

  // The last tick saw no churn at all: whatever trim was due has been made,
  // and none can be due before connections come and go again, so the timer
  // may wait longer for the next tick. The tick after it sees any new burst
  // (as busy, or as over when it was short), and the trim follows as before.
  bool idle() const { return idle_; }

 private:
  Params p_;
  uint64_t last_total_ = 0;
  uint64_t at_last_trim_ = 0;
  bool idle_ = true;
};

// malloc_trim(0): every arena's free pages back to the kernel. True if any
// memory was released.
bool release_free_heap();

}  // namespace ward::util
