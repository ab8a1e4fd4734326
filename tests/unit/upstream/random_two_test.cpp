#include "proxy/upstream/random_two.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "tests/unit/upstream/test_hosts.h"

namespace ward::upstream {
namespace {

using testing::at;
using testing::count_picks;
using testing::make_equal_set;
using testing::make_set;

class RandomTwoTest : public ::testing::Test {
 protected:
  RandomTwo balancer_{42};
};

TEST_F(RandomTwoTest, OfTwoHostsTakesTheLessLoaded) {
  HostSet set = make_set(1, {1, 1});
  set.hosts[0].stats->active = 10;
  EXPECT_EQ(count_picks(balancer_, set, 1000), (std::vector<int>{0, 1000}));
}

TEST_F(RandomTwoTest, TheMostLoadedOfThreeIsNeverPicked) {
  HostSet set = make_set(1, {1, 1, 1});
  set.hosts[0].stats->active = 0;
  set.hosts[1].stats->active = 5;
  set.hosts[2].stats->active = 10;
  const std::vector<int> counts = count_picks(balancer_, set, 30000);
  ASSERT_EQ(counts.size(), 3u);
  // Pairs {0,1}, {0,2}, {1,2} are equally likely: host 0 wins two of them.
  EXPECT_NEAR(counts[0], 20000, 600);
  EXPECT_NEAR(counts[1], 10000, 600);
  EXPECT_EQ(counts[2], 0);
}

TEST_F(RandomTwoTest, LoadIsComparedPerWeight) {
  HostSet set = make_set(1, {1, 4});
  set.hosts[0].stats->active = 1;
  set.hosts[1].stats->active = 3;  // 3/4 < 1/1
  EXPECT_EQ(count_picks(balancer_, set, 100), (std::vector<int>{0, 100}));
}

TEST_F(RandomTwoTest, IdleEqualHostsShareEvenly) {
  const HostSet set = make_equal_set(1, 4);
  const std::vector<int> counts = count_picks(balancer_, set, 40000);
  ASSERT_EQ(counts.size(), 4u);
  for (const int count : counts) {
    EXPECT_NEAR(count, 10000, 500);
  }
}

TEST_F(RandomTwoTest, HeldRequestsStayNearlyLevel) {
  const HostSet set = make_equal_set(1, 8);
  for (int i = 0; i < 8000; ++i) {
    const int index = balancer_.pick(set, at(0));
    ASSERT_GE(index, 0);
    ++set.hosts[static_cast<size_t>(index)].stats->active;
  }
  int64_t least = 1'000'000;
  int64_t most = 0;
  for (const Host& host : set.hosts) {
    least = std::min<int64_t>(least, host.stats->active);
    most = std::max<int64_t>(most, host.stats->active);
  }
  // Two choices keep the gap to O(log log n); one random choice would be
  // off by about sqrt(1000) ~ 30.
  EXPECT_LE(most - least, 4);
}

TEST_F(RandomTwoTest, NeverPicksAnUnavailableHost) {
  HostSet set = make_equal_set(1, 10);
  for (size_t i = 0; i < 10; i += 2) {
    set.hosts[i].stats->healthy = false;
  }
  set.hosts[1].stats->ejected_until_ms = 10'000;
  const std::vector<int> counts = count_picks(balancer_, set, 20000, 5000);
  ASSERT_EQ(counts.size(), 10u);
  for (size_t i = 0; i < 10; ++i) {
    if (i % 2 == 0 || i == 1) {
      EXPECT_EQ(counts[i], 0) << i;
    } else {
      EXPECT_GT(counts[i], 0) << i;
    }
  }
}

TEST_F(RandomTwoTest, FindsTheOnlyAvailableHostAmongMany) {
  HostSet set = make_equal_set(1, 50);
  for (size_t i = 0; i < 50; ++i) {
    set.hosts[i].stats->healthy = i == 37;
  }
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(balancer_.pick(set, at(0)), 37);
  }
}

TEST_F(RandomTwoTest, TriedHostsAreSkipped) {
  const HostSet set = make_equal_set(1, 3);
  const std::vector<size_t> tried{2, 0};
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(balancer_.pick(set, at(0, tried)), 1);
  }
}

TEST_F(RandomTwoTest, ReturnsMinusOneWhenNoHostIsLeft) {
  HostSet set = make_equal_set(1, 3);
  const std::vector<size_t> all{0, 1, 2};
  EXPECT_EQ(balancer_.pick(set, at(0, all)), -1);
  for (Host& host : set.hosts) {
    host.stats->healthy = false;
  }
  EXPECT_EQ(balancer_.pick(set, at(0)), -1);
  EXPECT_EQ(balancer_.pick(HostSet{}, at(0)), -1);
}

TEST_F(RandomTwoTest, SingleHostSet) {
  HostSet set = make_equal_set(1, 1);
  EXPECT_EQ(balancer_.pick(set, at(0)), 0);
  set.hosts[0].stats->healthy = false;
  EXPECT_EQ(balancer_.pick(set, at(0)), -1);
}

TEST_F(RandomTwoTest, SameSeedSameChoicesOtherSeedOtherChoices) {
  const HostSet set = make_equal_set(1, 16);
  auto run = [&set](uint64_t seed) {
    auto balancer = make_balancer(config::Balance::random_two, seed);
    std::vector<int> got;
    for (int i = 0; i < 64; ++i) {
      got.push_back(balancer->pick(set, at(0)));
    }
    return got;
  };
  EXPECT_EQ(run(7), run(7));
  EXPECT_NE(run(7), run(8));
}

}  // namespace
}  // namespace ward::upstream
