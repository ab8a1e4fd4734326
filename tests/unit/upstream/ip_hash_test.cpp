#include "proxy/upstream/ip_hash.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/unit/upstream/test_hosts.h"

namespace ward::upstream {
namespace {

using testing::at;
using testing::make_equal_set;
using testing::make_host;
using testing::make_set;

constexpr int kKeys = 20000;

class IpHashTest : public ::testing::Test {
 protected:
  static PickContext for_key(int key, int64_t now_ms = 0) {
    PickContext ctx = at(now_ms);
    ctx.hash = hash_key("192.168." + std::to_string(key / 256) + "." + std::to_string(key % 256));
    return ctx;
  }

  // The host name each key lands on ("" for -1): names, not indexes, since
  // indexes shift when the server list changes.
  std::vector<std::string> assign(const HostSet& set, int64_t now_ms = 0) {
    std::vector<std::string> names;
    names.reserve(kKeys);
    for (int key = 0; key < kKeys; ++key) {
      const int index = balancer_.pick(set, for_key(key, now_ms));
      names.push_back(index < 0 ? "" : set.hosts[static_cast<size_t>(index)].name);
    }
    return names;
  }

  static int count_of(const std::vector<std::string>& names, const std::string& name) {
    return static_cast<int>(std::count(names.begin(), names.end(), name));
  }

  IpHash balancer_;
};

TEST(HashKeyTest, IsFnv1aThenMixAndStable) {
  EXPECT_EQ(hash_key("10.1.2.3"), hash_key("10.1.2.3"));
  EXPECT_NE(hash_key("10.1.2.3"), hash_key("10.1.2.4"));
  // Pinned (checked against FNV-1a and splitmix64 computed independently):
  // the mapping of clients to servers must not change between
  // releases, or a rolling upgrade reshuffles every session.
  EXPECT_EQ(hash_key(""), 0xf52a15e9a9b5e89bULL);
  EXPECT_EQ(hash_key("10.1.2.3"), 0xbedf7c9a597ef9aeULL);
}

TEST_F(IpHashTest, SameKeySameHost) {
  const HostSet set = make_equal_set(1, 10);
  const std::vector<std::string> first = assign(set);
  EXPECT_EQ(assign(set), first);
  // Another worker's instance builds the same ring.
  IpHash other;
  for (int key = 0; key < 100; ++key) {
    EXPECT_EQ(other.pick(set, for_key(key)), balancer_.pick(set, for_key(key)));
  }
}

TEST_F(IpHashTest, EqualHostsGetSimilarShares) {
  const HostSet set = make_equal_set(1, 10);
  const std::vector<std::string> names = assign(set);
  for (const Host& host : set.hosts) {
    EXPECT_NEAR(count_of(names, host.name), kKeys / 10, kKeys / 10 / 4) << host.name;
  }
}

TEST_F(IpHashTest, SharesFollowWeights) {
  const HostSet set = make_set(1, {1, 3});
  EXPECT_EQ(balancer_.ring_size(), 0u);
  const std::vector<std::string> names = assign(set);
  EXPECT_EQ(balancer_.ring_size(), 4 * IpHash::kPointsPerWeight);
  EXPECT_NEAR(count_of(names, set.hosts[1].name), kKeys * 3 / 4, kKeys / 20);
}

TEST_F(IpHashTest, RemovingOneOfTenMovesOnlyItsKeys) {
  const HostSet ten = make_equal_set(1, 10);
  const std::vector<std::string> before = assign(ten);
  HostSet nine = ten;
  nine.version = 2;
  const std::string removed = nine.hosts[3].name;
  nine.hosts.erase(nine.hosts.begin() + 3);
  const std::vector<std::string> after = assign(nine);
  int moved = 0;
  for (int key = 0; key < kKeys; ++key) {
    if (before[key] == removed) {
      EXPECT_NE(after[key], removed);
      ++moved;
    } else {
      EXPECT_EQ(after[key], before[key]) << key;
    }
  }
  EXPECT_NEAR(moved, kKeys / 10, kKeys / 40);
}

TEST_F(IpHashTest, AddingAnEleventhMovesAboutOneEleventhToIt) {
  const HostSet ten = make_equal_set(1, 10);
  const std::vector<std::string> before = assign(ten);
  HostSet eleven = ten;
  eleven.version = 2;
  eleven.hosts.insert(eleven.hosts.begin(), make_host("10.9.9.9", 8000));
  const std::vector<std::string> after = assign(eleven);
  int moved = 0;
  for (int key = 0; key < kKeys; ++key) {
    if (after[key] != before[key]) {
      EXPECT_EQ(after[key], "10.9.9.9:8000") << key;
      ++moved;
    }
  }
  EXPECT_NEAR(moved, kKeys / 11, kKeys / 40);
}

TEST_F(IpHashTest, UnavailableHostsKeysGoElsewhereOthersStay) {
  HostSet set = make_equal_set(1, 10);
  const std::vector<std::string> before = assign(set);
  const std::string down = set.hosts[6].name;
  set.hosts[6].stats->ejected_until_ms = 1000;
  const std::vector<std::string> during = assign(set, 500);
  for (int key = 0; key < kKeys; ++key) {
    if (before[key] == down) {
      EXPECT_NE(during[key], down);
      EXPECT_NE(during[key], "");
    } else {
      EXPECT_EQ(during[key], before[key]) << key;
    }
  }
  // Its clients come back when the ejection ends; no rebuild is involved.
  EXPECT_EQ(assign(set, 1000), before);
}

TEST_F(IpHashTest, UnavailableHostsKeysSpreadOverTheOthers) {
  HostSet set = make_equal_set(1, 10);
  const std::vector<std::string> before = assign(set);
  set.hosts[2].stats->healthy = false;
  const std::vector<std::string> during = assign(set);
  std::vector<int> receivers(10, 0);
  for (int key = 0; key < kKeys; ++key) {
    if (before[key] == set.hosts[2].name) {
      for (size_t i = 0; i < 10; ++i) {
        receivers[i] += during[key] == set.hosts[i].name ? 1 : 0;
      }
    }
  }
  // Virtual nodes send a failed host's clients to many hosts, not one.
  EXPECT_GE(std::count_if(receivers.begin(), receivers.end(), [](int n) { return n > 0; }), 7);
}

TEST_F(IpHashTest, TriedHostIsWalkedPast) {
  const HostSet set = make_equal_set(1, 5);
  for (int key = 0; key < 200; ++key) {
    const int first = balancer_.pick(set, for_key(key));
    ASSERT_GE(first, 0);
    const std::vector<size_t> tried{static_cast<size_t>(first)};
    PickContext retry = for_key(key);
    retry.tried = tried;
    const int second = balancer_.pick(set, retry);
    EXPECT_GE(second, 0);
    EXPECT_NE(second, first);
    // A retry of the same client goes to the same second choice.
    EXPECT_EQ(balancer_.pick(set, retry), second);
  }
}

TEST_F(IpHashTest, ReturnsMinusOneWhenNoHostIsLeft) {
  HostSet set = make_equal_set(1, 4);
  const std::vector<size_t> all{0, 1, 2, 3};
  PickContext ctx = for_key(1);
  ctx.tried = all;
  EXPECT_EQ(balancer_.pick(set, ctx), -1);
  for (Host& host : set.hosts) {
    host.stats->healthy = false;
  }
  EXPECT_EQ(balancer_.pick(set, for_key(2)), -1);
  EXPECT_EQ(balancer_.pick(HostSet{}, for_key(3)), -1);
}

TEST_F(IpHashTest, OneHostUpAmongManyIsFound) {
  HostSet set = make_equal_set(1, 100);
  for (size_t i = 0; i < 100; ++i) {
    set.hosts[i].stats->healthy = i == 64;
  }
  for (int key = 0; key < 100; ++key) {
    EXPECT_EQ(balancer_.pick(set, for_key(key)), 64);
  }
}

TEST_F(IpHashTest, NewVersionRebuildsTheRing) {
  const HostSet first = make_equal_set(1, 2);
  balancer_.pick(first, for_key(0));
  EXPECT_EQ(balancer_.ring_size(), 2 * IpHash::kPointsPerWeight);
  HostSet second = make_set(2, {1, 1, 2});
  const std::vector<std::string> names = assign(second);
  EXPECT_EQ(balancer_.ring_size(), 4 * IpHash::kPointsPerWeight);
  EXPECT_GT(count_of(names, second.hosts[2].name), kKeys / 4);
}

TEST_F(IpHashTest, HugeWeightsAreCappedKeepingProportions) {
  const HostSet set = make_set(1, {1'000'000, 3'000'000});
  const std::vector<std::string> names = assign(set);
  EXPECT_LE(balancer_.ring_size(), IpHash::kMaxPoints + 2);
  EXPECT_NEAR(count_of(names, set.hosts[1].name), kKeys * 3 / 4, kKeys / 20);
}

TEST_F(IpHashTest, MakeBalancerBuildsAnIpHash) {
  auto balancer = make_balancer(config::Balance::ip_hash, 99);
  const HostSet set = make_equal_set(1, 10);
  for (int key = 0; key < 100; ++key) {
    EXPECT_EQ(balancer->pick(set, for_key(key)), balancer_.pick(set, for_key(key)));
  }
}

}  // namespace
}  // namespace ward::upstream
