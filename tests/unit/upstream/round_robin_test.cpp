#include "proxy/upstream/round_robin.h"

#include <gtest/gtest.h>

#include <vector>

#include "tests/unit/upstream/test_hosts.h"

namespace ward::upstream {
namespace {

using testing::at;
using testing::count_picks;
using testing::make_set;

class RoundRobinTest : public ::testing::Test {
 protected:
  std::vector<int> sequence(const HostSet& set, int picks, int64_t now_ms = 0) {
    std::vector<int> out;
    for (int i = 0; i < picks; ++i) {
      out.push_back(balancer_.pick(set, at(now_ms)));
    }
    return out;
  }

  RoundRobin balancer_{0};
};

TEST_F(RoundRobinTest, WeightsFiveOneOneGiveTheSmoothSequence) {
  const HostSet set = make_set(1, {5, 1, 1});
  // a a b a c a a, twice: the period is the sum of the weights.
  EXPECT_EQ(sequence(set, 14), (std::vector<int>{0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0}));
}

TEST_F(RoundRobinTest, MakeBalancerGivesTheSmoothSequenceToo) {
  auto balancer = make_balancer(config::Balance::round_robin, 0);
  const HostSet set = make_set(1, {5, 1, 1});
  std::vector<int> got;
  for (int i = 0; i < 7; ++i) {
    got.push_back(balancer->pick(set, at(0)));
  }
  EXPECT_EQ(got, (std::vector<int>{0, 0, 1, 0, 2, 0, 0}));
}

TEST_F(RoundRobinTest, SeedStartsFurtherAlongTheSameSequence) {
  RoundRobin seeded(3);
  const HostSet set = make_set(1, {5, 1, 1});
  std::vector<int> got;
  for (int i = 0; i < 7; ++i) {
    got.push_back(seeded.pick(set, at(0)));
  }
  EXPECT_EQ(got, (std::vector<int>{0, 2, 0, 0, 0, 0, 1}));
}

TEST_F(RoundRobinTest, EqualWeightsAlternate) {
  const HostSet set = make_set(1, {1, 1, 1});
  EXPECT_EQ(sequence(set, 6), (std::vector<int>{0, 1, 2, 0, 1, 2}));
}

TEST_F(RoundRobinTest, ScheduleIsReducedByTheGreatestCommonDivisor) {
  const HostSet set = make_set(1, {2, 4, 6});
  balancer_.pick(set, at(0));
  EXPECT_EQ(balancer_.schedule().size(), 6u);
}

TEST_F(RoundRobinTest, WeightsAreRespectedOverManyPicks) {
  const HostSet set = make_set(1, {3, 2, 1, 4});
  EXPECT_EQ(count_picks(balancer_, set, 10000), (std::vector<int>{3000, 2000, 1000, 4000}));
}

TEST_F(RoundRobinTest, HugeWeightsAreApproximatedInABoundedSchedule) {
  const HostSet set = make_set(1, {7919, 7907, 1});  // period 15827 before scaling
  const std::vector<int> counts = count_picks(balancer_, set, 41000);
  ASSERT_EQ(counts.size(), 3u);
  EXPECT_LE(balancer_.schedule().size(), 4096u + 3u);
  EXPECT_NEAR(counts[0], 41000 * 7919 / 15827, 41000 / 100);
  EXPECT_NEAR(counts[1], 41000 * 7907 / 15827, 41000 / 100);
  EXPECT_GT(counts[2], 0);  // a weight of 1 still gets its turn
}

TEST_F(RoundRobinTest, UnhealthyHostIsSkipped) {
  HostSet set = make_set(1, {5, 1, 1});
  EXPECT_EQ(balancer_.pick(set, at(0)), 0);
  set.hosts[0].stats->healthy = false;
  const std::vector<int> counts = count_picks(balancer_, set, 100);
  EXPECT_EQ(counts, (std::vector<int>{0, 50, 50}));
}

TEST_F(RoundRobinTest, RecoveredHostReturnsWithinAFewPicks) {
  HostSet set = make_set(1, {1, 1, 1});
  set.hosts[1].stats->healthy = false;
  EXPECT_EQ(count_picks(balancer_, set, 10), (std::vector<int>{5, 0, 5}));
  set.hosts[1].stats->healthy = true;
  // Noticed by the periodic scan (every n picks), then back to even shares.
  count_picks(balancer_, set, 3);
  EXPECT_EQ(count_picks(balancer_, set, 300), (std::vector<int>{100, 100, 100}));
}

TEST_F(RoundRobinTest, EjectedHostIsSkippedUntilItsEjectionEnds) {
  HostSet set = make_set(1, {1, 1});
  set.hosts[0].stats->ejected_until_ms = 5000;
  EXPECT_EQ(count_picks(balancer_, set, 20, 4999), (std::vector<int>{0, 20}));
  count_picks(balancer_, set, 2, 5000);
  EXPECT_EQ(count_picks(balancer_, set, 20, 5000), (std::vector<int>{10, 10}));
}

TEST_F(RoundRobinTest, TriedHostsAreSkipped) {
  const HostSet set = make_set(1, {5, 1, 1});
  const std::vector<size_t> tried{0};
  for (int i = 0; i < 20; ++i) {
    const int index = balancer_.pick(set, at(0, tried));
    EXPECT_TRUE(index == 1 || index == 2) << index;
  }
  const std::vector<size_t> two_tried{0, 2};
  EXPECT_EQ(balancer_.pick(set, at(0, two_tried)), 1);
}

TEST_F(RoundRobinTest, TriedDoesNotChangeTheScheduleForLaterRequests) {
  const HostSet set = make_set(1, {1, 1});
  const std::vector<size_t> tried{0};
  EXPECT_EQ(balancer_.pick(set, at(0, tried)), 1);
  EXPECT_EQ(count_picks(balancer_, set, 10), (std::vector<int>{5, 5}));
}

TEST_F(RoundRobinTest, ReturnsMinusOneWhenNoHostIsLeft) {
  HostSet set = make_set(1, {1, 2});
  const std::vector<size_t> all{0, 1};
  EXPECT_EQ(balancer_.pick(set, at(0, all)), -1);
  set.hosts[0].stats->healthy = false;
  set.hosts[1].stats->ejected_until_ms = 100;
  EXPECT_EQ(balancer_.pick(set, at(0)), -1);
  EXPECT_EQ(balancer_.pick(set, at(0)), -1);
  // The first pick after the ejection ends finds the host again.
  EXPECT_EQ(balancer_.pick(set, at(100)), 1);
}

TEST_F(RoundRobinTest, EmptySetReturnsMinusOne) {
  const HostSet set;
  EXPECT_EQ(balancer_.pick(set, at(0)), -1);
}

TEST_F(RoundRobinTest, NewVersionRebuildsTheSchedule) {
  const HostSet first = make_set(1, {1, 1});
  EXPECT_EQ(count_picks(balancer_, first, 4), (std::vector<int>{2, 2}));
  const HostSet second = make_set(2, {1, 1, 2});
  EXPECT_EQ(count_picks(balancer_, second, 400), (std::vector<int>{100, 100, 200}));
  EXPECT_EQ(balancer_.schedule().size(), 4u);
}

}  // namespace
}  // namespace ward::upstream
