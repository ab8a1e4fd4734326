#include "proxy/util/heap_trim.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <vector>

namespace ward::util {
namespace {

TrimPolicy small() {
  return TrimPolicy({.min_churn = 100, .quiet_below = 10});
}

TEST(TrimPolicy, NoTrimWithoutChurn) {
  TrimPolicy p = small();
  for (int i = 0; i < 100; ++i) {
    EXPECT_FALSE(p.tick(5 * i / 10));  // a trickle: under min_churn for ever
  }
}

TEST(TrimPolicy, WaitsForTheBurstToEnd) {
  TrimPolicy p = small();
  EXPECT_FALSE(p.tick(60));   // burst under way
  EXPECT_FALSE(p.tick(200));  // enough churn, but still busy
  EXPECT_FALSE(p.tick(400));
  EXPECT_TRUE(p.tick(405));   // quiet: trim
  EXPECT_FALSE(p.tick(405));  // once
  EXPECT_FALSE(p.tick(409));
}

TEST(TrimPolicy, NextTrimNeedsNewChurn) {
  TrimPolicy p = small();
  EXPECT_FALSE(p.tick(150));
  EXPECT_TRUE(p.tick(150));
  EXPECT_FALSE(p.tick(240));  // 90 since the trim: not enough
  EXPECT_FALSE(p.tick(240));
  EXPECT_FALSE(p.tick(300));  // 150 since, but busy
  EXPECT_TRUE(p.tick(301));
}

TEST(TrimPolicy, SteadyChurnNeverQuietNeverTrims) {
  TrimPolicy p = small();
  uint64_t total = 0;
  for (int i = 0; i < 1000; ++i) {
    total += 10;  // exactly quiet_below every tick: busy
    EXPECT_FALSE(p.tick(total));
  }
}

// Idle: no churn in the last tick, so no trim can come due before the next
// churn. Any churn ends it, and a burst after an idle spell still trims once
// it is over.
TEST(TrimPolicy, IdleAfterATickWithoutChurn) {
  TrimPolicy p = small();
  EXPECT_TRUE(p.idle());  // nothing yet
  EXPECT_FALSE(p.tick(0));
  EXPECT_TRUE(p.idle());
  EXPECT_FALSE(p.tick(1));  // one connection opened
  EXPECT_FALSE(p.idle());
  EXPECT_FALSE(p.tick(1));
  EXPECT_TRUE(p.idle());
  EXPECT_FALSE(p.tick(500));  // a burst, seen by the next (longer) tick
  EXPECT_FALSE(p.idle());
  EXPECT_TRUE(p.tick(500));  // over: trim, and idle again
  EXPECT_TRUE(p.idle());
  EXPECT_FALSE(p.tick(503));  // a trickle under quiet_below: quiet but not idle
  EXPECT_FALSE(p.idle());
}

TEST(ReleaseFreeHeap, ReturnsFreedPagesAfterABurst) {
  // 16 KiB blocks (heap, not mmap), then free every other one: the freed
  // runs lie between live blocks, where glibc's own top-of-heap trimming
  // never reaches and each spans whole pages that a trim can return.
  std::vector<void*> blocks;
  for (int i = 0; i < 1000; ++i) {
    blocks.push_back(std::malloc(16384));
  }
  for (size_t i = 0; i + 1 < blocks.size(); i += 2) {
    std::free(blocks[i]);
    blocks[i] = nullptr;
  }
  // Under a sanitizer the allocator is not glibc's and there is nothing to
  // release; the call must still be safe.
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  EXPECT_TRUE(release_free_heap());
#else
  release_free_heap();
#endif
  for (void* b : blocks) {
    std::free(b);
  }
}

}  // namespace
}  // namespace ward::util
