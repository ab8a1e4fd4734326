#include "proxy/upstream/least_conn.h"

#include <gtest/gtest.h>

#include <vector>

#include "tests/unit/upstream/test_hosts.h"

namespace ward::upstream {
namespace {

using testing::at;
using testing::count_picks;
using testing::make_set;

class LeastConnTest : public ::testing::Test {
 protected:
  static void set_active(HostSet& set, const std::vector<int64_t>& active) {
    for (size_t i = 0; i < active.size(); ++i) {
      set.hosts[i].stats->active = active[i];
    }
  }

  // Picks like the server does: the chosen host holds one more request.
  std::vector<int> pick_and_hold(const HostSet& set, int picks) {
    std::vector<int> counts(set.hosts.size(), 0);
    for (int i = 0; i < picks; ++i) {
      const int index = balancer_.pick(set, at(0));
      if (index < 0) {
        return {};
      }
      ++counts[static_cast<size_t>(index)];
      ++set.hosts[static_cast<size_t>(index)].stats->active;
    }
    return counts;
  }

  LeastConn balancer_{0};
};

TEST_F(LeastConnTest, PicksTheHostWithFewestActiveRequests) {
  HostSet set = make_set(1, {1, 1, 1});
  set_active(set, {5, 2, 7});
  EXPECT_EQ(balancer_.pick(set, at(0)), 1);
  set_active(set, {5, 9, 7});
  EXPECT_EQ(balancer_.pick(set, at(0)), 0);
}

TEST_F(LeastConnTest, ComparesActiveRequestsPerWeight) {
  HostSet set = make_set(1, {1, 3});
  set_active(set, {1, 2});  // 1/1 against 2/3
  EXPECT_EQ(balancer_.pick(set, at(0)), 1);
  set_active(set, {1, 4});  // 1/1 against 4/3
  EXPECT_EQ(balancer_.pick(set, at(0)), 0);
}

TEST_F(LeastConnTest, TiesAreBrokenRoundRobin) {
  const HostSet set = make_set(1, {1, 1, 1});
  std::vector<int> got;
  for (int i = 0; i < 6; ++i) {
    got.push_back(balancer_.pick(set, at(0)));
  }
  EXPECT_EQ(got, (std::vector<int>{0, 1, 2, 0, 1, 2}));
}

TEST_F(LeastConnTest, TiesRotateOnlyAmongTheLeastLoaded) {
  HostSet set = make_set(1, {1, 1, 1, 1});
  set_active(set, {3, 0, 3, 0});
  std::vector<int> got;
  for (int i = 0; i < 4; ++i) {
    got.push_back(balancer_.pick(set, at(0)));
  }
  EXPECT_EQ(got, (std::vector<int>{1, 3, 1, 3}));
}

TEST_F(LeastConnTest, FollowsActiveCountsAsRequestsAreHeld) {
  const HostSet set = make_set(1, {1, 2, 1});
  // Load per weight is kept level: the weight-2 host holds twice as many.
  EXPECT_EQ(pick_and_hold(set, 400), (std::vector<int>{100, 200, 100}));
}

TEST_F(LeastConnTest, FollowsActiveCountsAsRequestsFinish) {
  HostSet set = make_set(1, {1, 1});
  set_active(set, {4, 4});
  EXPECT_EQ(balancer_.pick(set, at(0)), 0);
  set.hosts[1].stats->active = 3;  // a request on host 1 finished
  EXPECT_EQ(balancer_.pick(set, at(0)), 1);
  EXPECT_EQ(balancer_.pick(set, at(0)), 1);
}

TEST_F(LeastConnTest, SeedMovesWhereTiesStart) {
  LeastConn seeded(2);
  const HostSet set = make_set(1, {1, 1, 1});
  EXPECT_EQ(seeded.pick(set, at(0)), 2);
  EXPECT_EQ(seeded.pick(set, at(0)), 0);
}

TEST_F(LeastConnTest, UnavailableHostsAreSkippedHoweverIdle) {
  HostSet set = make_set(1, {1, 1, 1});
  set_active(set, {0, 10, 20});
  set.hosts[0].stats->healthy = false;
  EXPECT_EQ(balancer_.pick(set, at(0)), 1);
  set.hosts[1].stats->ejected_until_ms = 1000;
  EXPECT_EQ(balancer_.pick(set, at(999)), 2);
  EXPECT_EQ(balancer_.pick(set, at(1000)), 1);
}

TEST_F(LeastConnTest, TriedHostsAreSkipped) {
  HostSet set = make_set(1, {1, 1, 1});
  set_active(set, {0, 1, 2});
  const std::vector<size_t> tried{0};
  EXPECT_EQ(balancer_.pick(set, at(0, tried)), 1);
  const std::vector<size_t> two_tried{0, 1};
  EXPECT_EQ(balancer_.pick(set, at(0, two_tried)), 2);
}

TEST_F(LeastConnTest, ReturnsMinusOneWhenNoHostIsLeft) {
  HostSet set = make_set(1, {1, 1});
  const std::vector<size_t> all{1, 0};
  EXPECT_EQ(balancer_.pick(set, at(0, all)), -1);
  set.hosts[0].stats->healthy = false;
  set.hosts[1].stats->healthy = false;
  EXPECT_EQ(balancer_.pick(set, at(0)), -1);
  EXPECT_EQ(balancer_.pick(HostSet{}, at(0)), -1);
}

TEST_F(LeastConnTest, NegativeActiveCountsAsIdle) {
  // A counter read between another worker's decrement and increment may be
  // transiently off; it must not make a host look better than idle.
  HostSet set = make_set(1, {1, 1});
  set_active(set, {0, -3});
  EXPECT_EQ(balancer_.pick(set, at(0)), 0);
}

TEST_F(LeastConnTest, WorksAcrossServerListChanges) {
  const HostSet first = make_set(1, {1, 1, 1, 1});
  EXPECT_EQ(count_picks(balancer_, first, 3).size(), 4u);
  const HostSet second = make_set(2, {1, 1});
  EXPECT_EQ(count_picks(balancer_, second, 10), (std::vector<int>{5, 5}));
}

}  // namespace
}  // namespace ward::upstream
