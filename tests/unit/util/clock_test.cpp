#include "proxy/util/clock.h"

#include <gtest/gtest.h>

#include <chrono>

namespace ward::util {
namespace {

using std::chrono::steady_clock;

TEST(CoarseClock, IsNotEarlierThanTheSteadyClockAndAtMostTwoTicksLater) {
  timespec res{};
  ASSERT_EQ(clock_getres(CLOCK_MONOTONIC_COARSE, &res), 0);
  const auto tick = std::chrono::seconds(res.tv_sec) + std::chrono::nanoseconds(res.tv_nsec);
  EXPECT_EQ(coarse_margin(), 2 * tick);
  for (int i = 0; i < 10000; ++i) {
    auto before = steady_clock::now();
    auto coarse = coarse_now();
    auto after = steady_clock::now();
    ASSERT_GE(coarse, before);  // a deadline from it never passes early
    ASSERT_LE(coarse, after + 2 * tick);
  }
}

TEST(CoarseClock, Advances) {
  auto first = coarse_now();
  auto limit = steady_clock::now() + std::chrono::seconds(5);
  while (coarse_now() == first && steady_clock::now() < limit) {
  }
  EXPECT_GT(coarse_now(), first);
}

}  // namespace
}  // namespace ward::util
