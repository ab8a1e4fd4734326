// Passive outlier ejection: what a user relies on is that a server whose
// live traffic keeps failing leaves the balancers for ejection_time, that a
// good answer ends a run of failures, and that a server which keeps failing
// stays out longer each time, up to 5 minutes.

#include "proxy/upstream/passive.h"

#include <gtest/gtest.h>

#include <chrono>
#include <vector>

#include "tests/unit/upstream/test_hosts.h"

namespace ward::upstream {
namespace {

using namespace std::chrono_literals;

class PassiveTest : public ::testing::Test {
 protected:
  PassiveTest() {
    passive_.consecutive_failures = 3;
    passive_.ejection_time = 30s;
  }
  // One failure of the server under test at `now`: the ejection time it gave.
  std::chrono::milliseconds fail(int64_t now) {
    return record_failure(set_.hosts[0], set_, passive_, now).time;
  }
  // Three failures in a row at `now`: returns the ejection time the third gave.
  std::chrono::milliseconds fail_run(int64_t now) {
    EXPECT_EQ(fail(now), 0ms);
    EXPECT_EQ(fail(now), 0ms);
    return fail(now);
  }
  bool available(int64_t now) const { return set_.hosts[0].available(now); }

  config::Passive passive_;
  HostSet set_ = testing::make_equal_set(1, 2);  // the server under test, and one more
  HostStats& stats_ = *set_.hosts[0].stats;
};

TEST_F(PassiveTest, TheThresholdOfFailuresInARowEjectsForEjectionTime) {
  const int64_t t = 1'000'000;
  EXPECT_EQ(fail_run(t), 30s);
  EXPECT_FALSE(available(t));
  EXPECT_FALSE(available(t + 29'999));
  EXPECT_TRUE(available(t + 30'000));
}

TEST_F(PassiveTest, AGoodAnswerEndsTheRun) {
  const int64_t t = 1'000'000;
  fail(t);
  fail(t);
  record_success(stats_);
  EXPECT_EQ(fail(t), 0ms);
  EXPECT_EQ(fail(t), 0ms);
  EXPECT_TRUE(available(t));
  EXPECT_EQ(fail(t), 30s);
}

TEST_F(PassiveTest, FailuresOfAnswersInFlightDoNotEjectAgain) {
  const int64_t t = 1'000'000;
  fail_run(t);
  EXPECT_EQ(fail_run(t + 10), 0ms);
  EXPECT_EQ(stats_.ejected_until_ms.load(), t + 30'000);
}

TEST_F(PassiveTest, RepeatEjectionsDoubleUpToFiveMinutes) {
  int64_t t = 1'000'000;
  std::vector<int64_t> times;
  for (int i = 0; i < 6; ++i) {
    auto ejected = fail_run(t);
    times.push_back(ejected.count());
    t = stats_.ejected_until_ms.load() + 1000;  // back in service, fails again soon
  }
  EXPECT_EQ(times, (std::vector<int64_t>{30'000, 60'000, 120'000, 240'000, 300'000, 300'000}));
}

TEST_F(PassiveTest, FiveCleanMinutesAfterAnEjectionStartFromEjectionTimeAgain) {
  int64_t t = 1'000'000;
  fail_run(t);
  t = stats_.ejected_until_ms.load() + 1000;
  EXPECT_EQ(fail_run(t), 60s);
  t = stats_.ejected_until_ms.load() + kEjectionMemory.count();
  EXPECT_EQ(fail_run(t), 30s);
}

TEST_F(PassiveTest, AnEjectionTimeOverFiveMinutesIsNotCutShort) {
  passive_.ejection_time = 10min;
  int64_t t = 1'000'000;
  EXPECT_EQ(fail_run(t), 10min);
  t = stats_.ejected_until_ms.load() + 1000;
  EXPECT_EQ(fail_run(t), 10min);
}

TEST_F(PassiveTest, TheLastServerInServiceIsNeverEjected) {
  const int64_t t = 1'000'000;
  set_.hosts[1].stats->healthy.store(false);  // the other one is out
  EXPECT_EQ(fail(t), 0ms);
  EXPECT_EQ(fail(t), 0ms);
  auto e = record_failure(set_.hosts[0], set_, passive_, t);
  EXPECT_EQ(e.time, 0ms);
  EXPECT_TRUE(e.spared);
  EXPECT_TRUE(available(t));
  // Once another server is back, the next run ejects.
  set_.hosts[1].stats->healthy.store(true);
  EXPECT_EQ(fail_run(t), 30s);
}

TEST(PassiveStatus, OnlyGatewayErrorsCountAsTheServersFailure) {
  EXPECT_TRUE(passive_failure_status(502));
  EXPECT_TRUE(passive_failure_status(503));
  EXPECT_TRUE(passive_failure_status(504));
  EXPECT_FALSE(passive_failure_status(500));
  EXPECT_FALSE(passive_failure_status(404));
  EXPECT_FALSE(passive_failure_status(200));
}

}  // namespace
}  // namespace ward::upstream
