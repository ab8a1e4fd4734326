#include "filters/bucket_table.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

namespace ward::filters {
namespace {

constexpr int64_t kMs = 1'000'000;  // ns
constexpr int64_t kSecond = 1'000 * kMs;
constexpr int64_t kT0 = 1'000 * kSecond;  // an arbitrary steady-clock reading

// 30/minute, burst 10: T = 2 s, a whole bucket refills in 20 s.
BucketTable::Policy thirty_per_minute(size_t max_keys = 1'000) {
  return {2 * kSecond, 20 * kSecond, max_keys};
}

// ---------------------------------------------------------------------------
// SipHash-2-4

// Reference vectors (the paper's appendix, and the reference code's
// vectors.h): key 00 01 .. 0f, message 00 01 .. (n-1).
class SipHasherTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kK0 = 0x0706050403020100ull;
  static constexpr uint64_t kK1 = 0x0f0e0d0c0b0a0908ull;

  static std::string message(size_t n) {
    std::string m;
    for (size_t i = 0; i < n; ++i) {
      m.push_back(static_cast<char>(i));
    }
    return m;
  }
  static uint64_t hash(std::string_view m) {
    SipHasher h(kK0, kK1);
    h.update(m);
    return h.finish();
  }
};

TEST_F(SipHasherTest, MatchesTheReferenceVectors) {
  EXPECT_EQ(hash(message(0)), 0x726fdb47dd0e0e31ull);
  EXPECT_EQ(hash(message(15)), 0xa129ca6149be45e5ull);
  EXPECT_EQ(hash(message(63)), 0x958a324ceb064572ull);
}

TEST_F(SipHasherTest, PiecesHashLikeTheWhole) {
  std::string m = message(63);
  for (size_t cut = 0; cut <= m.size(); ++cut) {
    for (size_t cut2 = cut; cut2 <= m.size(); cut2 += 5) {
      SipHasher h(kK0, kK1);
      h.update(std::string_view(m).substr(0, cut));
      h.update(std::string_view(m).substr(cut, cut2 - cut));
      h.update(std::string_view(m).substr(cut2));
      ASSERT_EQ(h.finish(), 0x958a324ceb064572ull) << cut << "/" << cut2;
    }
  }
}

// ---------------------------------------------------------------------------
// BucketTable

class BucketTableTest : public ::testing::Test {
 protected:
  // A fixed hash key: the layout (which key lands in which shard) is the
  // same on every run, so the cap tests are reproducible.
  BucketTable table_{0x1234567890abcdefull, 0xfedcba0987654321ull};

  uint64_t key(const std::string& name) const { return table_.key("t", name); }
  bool admit(const std::string& name, int64_t now, const BucketTable::Policy& policy) {
    return table_.admit(key(name), now, policy).allowed;
  }
  // Drains `name` at `now` and returns how many requests passed.
  int drain(const std::string& name, int64_t now, const BucketTable::Policy& policy) {
    int passed = 0;
    while (admit(name, now, policy)) {
      ++passed;
    }
    return passed;
  }
};

TEST_F(BucketTableTest, NewKeyStartsFullAndAllowsExactlyBurst) {
  auto p = thirty_per_minute();
  for (int i = 1; i <= 10; ++i) {
    auto v = table_.admit(key("a"), kT0, p);
    ASSERT_TRUE(v.allowed) << i;
    EXPECT_EQ(v.tat_ns, kT0 + i * 2 * kSecond);  // one T further per token
    EXPECT_EQ(v.inserted, i == 1);
  }
  auto refused = table_.admit(key("a"), kT0, p);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.tat_ns, kT0 + 20 * kSecond);
}

TEST_F(BucketTableTest, RefusedRequestsTakeNoToken) {
  auto p = thirty_per_minute();
  ASSERT_EQ(drain("a", kT0, p), 10);
  for (int i = 0; i < 100; ++i) {
    ASSERT_FALSE(admit("a", kT0 + kSecond, p));
  }
  // The token earned at 2 s is still there despite 100 refusals before it.
  EXPECT_TRUE(admit("a", kT0 + 2 * kSecond, p));
  EXPECT_FALSE(admit("a", kT0 + 2 * kSecond, p));
}

TEST_F(BucketTableTest, TokensReturnAtTheRateUpToBurst) {
  auto p = thirty_per_minute();
  ASSERT_EQ(drain("a", kT0, p), 10);
  EXPECT_FALSE(admit("a", kT0 + 2 * kSecond - 1, p));  // one ns early
  EXPECT_EQ(drain("a", kT0 + 2 * kSecond, p), 1);
  EXPECT_EQ(drain("a", kT0 + 9 * kSecond, p), 3);  // tokens at 4, 6 and 8 s
  // An hour idle refills the bucket, but never beyond burst.
  EXPECT_EQ(drain("a", kT0 + 3600 * kSecond, p), 10);
}

TEST_F(BucketTableTest, KeysHaveIndependentBuckets) {
  auto p = thirty_per_minute();
  ASSERT_EQ(drain("a", kT0, p), 10);
  EXPECT_EQ(drain("b", kT0, p), 10);
}

TEST_F(BucketTableTest, NamespacesKeepEqualTextApart) {
  EXPECT_NE(table_.key("ip", "10.0.0.1"), table_.key("h:x-user", "10.0.0.1"));
  EXPECT_NE(table_.key("h:a", "b"), table_.key("h:ab", ""));  // the NUL separates them
  EXPECT_EQ(table_.key("ip", "10.0.0.1"), table_.key("ip", "10.0.0.1"));
}

// key() hashes short keys in one piece and long ones piecewise: a key is the
// same SipHash of namespace, NUL, value at every length (header values can
// be up to the header limit long).
TEST_F(BucketTableTest, KeyIsOneHashOfNamespaceNulAndValueAtAnyLength) {
  for (size_t len : {0, 1, 7, 8, 9, 100, 125, 126, 127, 128, 300, 4096}) {
    std::string value;
    for (size_t i = 0; i < len; ++i) {
      value.push_back(static_cast<char>('a' + i % 26));
    }
    SipHasher h(0x1234567890abcdefull, 0xfedcba0987654321ull);
    h.update(std::string("h:x\0", 4) + value);
    EXPECT_EQ(table_.key("h:x", value), h.finish()) << len;
  }
}

TEST_F(BucketTableTest, HashKeyIsRandomPerTable) {
  BucketTable a;
  BucketTable b;
  // Equal only if two random 128-bit keys give the same 64-bit hash: 2^-64.
  EXPECT_NE(a.key("ip", "10.0.0.1"), b.key("ip", "10.0.0.1"));
}

TEST_F(BucketTableTest, FloodOfDistinctKeysNeverExceedsTheCap) {
  auto p = thirty_per_minute(1'024);
  int64_t net = 0;
  uint64_t evicted = 0;
  for (int i = 0; i < 50'000; ++i) {
    auto v = table_.admit(key("flood" + std::to_string(i)), kT0, p);
    ASSERT_TRUE(v.allowed);  // a new key always has its burst
    net += (v.inserted ? 1 : 0) - static_cast<int64_t>(v.expired + v.evicted);
    evicted += v.evicted;
  }
  EXPECT_LE(table_.size(), 1'024u);
  // The counts a filter feeds its gauge add up to the table's size.
  EXPECT_EQ(net, static_cast<int64_t>(table_.size()));
  EXPECT_EQ(evicted, 50'000 - table_.size());  // nothing was full: all evictions
  // Memory: 16 bytes a slot, at most 4/3 slot per key (+1 per shard).
  EXPECT_LE(table_.slot_capacity(), 1'024u * 4 / 3 + BucketTable::kShards);
}

TEST_F(BucketTableTest, EvictionPicksTheBucketNearestToFull) {
  auto p = thirty_per_minute(1'024);
  // 32 clients with empty buckets (TAT 20 s ahead)...
  for (int i = 0; i < 32; ++i) {
    ASSERT_EQ(drain("heavy" + std::to_string(i), kT0, p), 10);
  }
  // ... then a flood of one-request keys (TAT 2 s ahead) forces thousands
  // of evictions: each takes the smallest TAT seen, never a heavy client.
  uint64_t evicted = 0;
  for (int i = 0; i < 20'000; ++i) {
    evicted += table_.admit(key("flood" + std::to_string(i)), kT0, p).evicted;
  }
  ASSERT_GT(evicted, 15'000u);
  for (int i = 0; i < 32; ++i) {
    EXPECT_FALSE(admit("heavy" + std::to_string(i), kT0, p)) << "heavy" << i << " was forgotten";
  }
}

TEST_F(BucketTableTest, FullBucketsAreDroppedBeforeAnyLiveOneIsEvicted) {
  auto p = thirty_per_minute(1'024);  // 16 keys per shard
  for (int i = 0; i < 32; ++i) {
    ASSERT_EQ(drain("heavy" + std::to_string(i), kT0, p), 10);  // live until kT0 + 20 s
  }
  for (int i = 0; i < 5'000; ++i) {
    table_.admit(key("old" + std::to_string(i)), kT0, p);  // full again at kT0 + 2 s
  }
  ASSERT_EQ(table_.size(), 1'024u);  // every shard at its cap
  // At 3 s the old keys' buckets are full: forgetting them loses nothing,
  // and they must go before any live bucket does.
  uint64_t evicted = 0;
  uint64_t expired = 0;
  for (int i = 0; i < 256; ++i) {
    auto v = table_.admit(key("new" + std::to_string(i)), kT0 + 3 * kSecond, p);
    evicted += v.evicted;
    expired += v.expired;
  }
  EXPECT_EQ(evicted, 0u);
  EXPECT_GT(expired, 256u);
  for (int i = 0; i < 32; ++i) {
    // Remembered: the one token earned since (a forgotten key would get 10).
    EXPECT_EQ(drain("heavy" + std::to_string(i), kT0 + 3 * kSecond, p), 1) << i;
  }
  for (int i = 0; i < 256; ++i) {
    // Each new key has its own bucket still: 9 tokens left.
    EXPECT_EQ(drain("new" + std::to_string(i), kT0 + 3 * kSecond, p), 9) << i;
  }
}

TEST_F(BucketTableTest, FullBucketsAreSweptAsNewKeysArriveBelowTheCap) {
  auto p = thirty_per_minute(100'000);
  for (int i = 0; i < 2'000; ++i) {
    table_.admit(key("morning" + std::to_string(i)), kT0, p);
  }
  ASSERT_EQ(table_.size(), 2'000u);
  // An hour later those buckets are full; new arrivals sweep them out, so
  // the table holds about the keys that still matter, not all ever seen.
  int64_t net = 2'000;
  for (int i = 0; i < 2'000; ++i) {
    auto v = table_.admit(key("evening" + std::to_string(i)), kT0 + 3600 * kSecond, p);
    EXPECT_EQ(v.evicted, 0u);
    net += (v.inserted ? 1 : 0) - static_cast<int64_t>(v.expired + v.evicted);
  }
  EXPECT_LT(table_.size(), 2'500u);
  EXPECT_EQ(net, static_cast<int64_t>(table_.size()));
}

TEST_F(BucketTableTest, LoweredCapShrinksTheTableAsKeysArrive) {
  for (int i = 0; i < 8'000; ++i) {
    table_.admit(key("a" + std::to_string(i)), kT0, thirty_per_minute(8'192));
  }
  ASSERT_GT(table_.size(), 7'000u);
  size_t big = table_.slot_capacity();
  // A reload lowered max_keys to 1024: each insert into a shard over its
  // share removes two keys, so the shards shrink by one key per insert.
  for (int i = 0; i < 16'000; ++i) {
    table_.admit(key("b" + std::to_string(i)), kT0, thirty_per_minute(1'024));
  }
  EXPECT_LE(table_.size(), 1'024u);
  EXPECT_LT(table_.slot_capacity(), big / 2);  // and the memory is given back
}

TEST_F(BucketTableTest, SmallestCapHoldsOneKeyPerShard) {
  auto p = thirty_per_minute(BucketTable::kMinKeys);
  for (int i = 0; i < 1'000; ++i) {
    ASSERT_TRUE(admit("k" + std::to_string(i), kT0, p));
  }
  EXPECT_LE(table_.size(), BucketTable::kMinKeys);
}

// Threads spend one big bucket at once, every call a CAS on one TAT: the
// tokens spent must be exactly the bucket, however the races fall.
TEST_F(BucketTableTest, ConcurrentTakersSpendExactlyTheBucket) {
  constexpr int64_t kBurst = 200'000;
  BucketTable::Policy p{kMs, kBurst * kMs, 1'000};  // 1000/s: 200 s of tokens
  ASSERT_TRUE(admit("hot", kT0, p));                // inserted: the threads race on the CAS only
  constexpr int kThreads = 4;
  std::atomic<int> ready{0};
  std::atomic<int64_t> taken{1};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      ready.fetch_add(1);
      while (ready.load() < kThreads) {
        std::this_thread::yield();  // start together
      }
      uint64_t k = key("hot");
      int64_t mine = 0;
      while (table_.admit(k, kT0, p).allowed) {
        ++mine;
      }
      taken.fetch_add(mine);
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  EXPECT_EQ(taken.load(), kBurst);
}

// Several threads on one key and a flood of others at once: the exclusive
// path (insert, sweep, evict) races the shared one (lookup, CAS). Run under
// TSan in CI. (Exactness of concurrent CASes on one key: rate_limit_test.)
TEST_F(BucketTableTest, ConcurrentFloodKeepsTheCapTheCountAndTheHotKey) {
  auto p = thirty_per_minute(1'024);
  ASSERT_EQ(drain("hot", kT0, p), 10);  // empty until kT0 + 2 s, full at + 20 s
  constexpr int kThreads = 4;
  std::atomic<int> hot_allowed{0};
  std::atomic<int64_t> net{static_cast<int64_t>(table_.size())};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5'000; ++i) {
        if (admit("hot", kT0 + kSecond, p)) {
          hot_allowed.fetch_add(1);
        }
        auto v = table_.admit(key(std::to_string(t) + ":" + std::to_string(i)), kT0 + kSecond, p);
        net.fetch_add((v.inserted ? 1 : 0) - static_cast<int64_t>(v.expired + v.evicted));
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  // Flood keys (full at + 3 s) are always nearer to full than the hot key
  // (+ 20 s), so it is never evicted: forgetting it would refill its bucket.
  EXPECT_EQ(hot_allowed.load(), 0);
  EXPECT_LE(table_.size(), 1'024u);
  EXPECT_EQ(net.load(), static_cast<int64_t>(table_.size()));
}

}  // namespace
}  // namespace ward::filters
