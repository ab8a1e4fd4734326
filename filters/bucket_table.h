#pragma once

// The rate limiter's state: one GCRA "theoretical arrival time" per key, in a
// sharded table of bounded size that outlives config snapshots.
//
// GCRA (the generic cell rate algorithm, ITU-T I.371; Brandur Leach's
// "Rate limiting, cells and GCRA") is a token bucket kept in one number. With
// T = nanoseconds per token and a bucket of `burst` tokens, a key's TAT is
// the time at which its bucket will be full again:
//   - TAT <= now: the bucket is full (a new key, or one idle long enough);
//   - TAT - now = d > 0: the bucket lacks d / T tokens.
// A request is allowed when max(TAT, now) + T - now <= burst * T, and then
// TAT becomes max(TAT, now) + T; a refused request changes nothing. Since
// each allowed request moves TAT forward by at least T and TAT never gets
// more than burst * T ahead of the clock, requests allowed between times t0
// and t1 number at most burst + (t1 - t0) / T, however many threads race.
//
// Thread safety: every public member may be called from any thread. Each of
// the 64 shards has a reader-writer lock:
//   - shared: a request for a key already in the table finds its slot and
//     updates the TAT with a compare-and-swap; any number of workers do this
//     at once, and the CAS keeps concurrent updates of one key exact;
//   - exclusive: inserting, expiring and evicting. Holding the shared lock
//     across the CAS (not only the lookup) is what makes a slot safe to
//     reuse: a slot freed between a worker's lookup and its CAS would have
//     that CAS charge some other key's bucket.
//
// Memory: a key is one 16-byte slot (its 64-bit keyed hash and its TAT),
// whatever the key's length, in open-addressed shards kept at most 3/4 full
// (21.3 bytes a key at the cap), allocated only as keys arrive. Two keys
// share a bucket only if their hashes are equal: for 10^5 keys, a chance
// of n^2 / 2^65 = 3 * 10^-10, and not one an attacker can aim at without
// the table's random hash key.

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

namespace ward::filters {

// SipHash-2-4 (Aumasson and Bernstein, 2012): a keyed 64-bit hash. With a
// secret key an attacker who does not know it cannot choose inputs that
// collide, so keys stored as hashes cannot be aimed at one another's buckets
// (nor pile into one shard). Fed in pieces so a key needs no allocation.
class SipHasher {
 public:
  SipHasher(uint64_t k0, uint64_t k1);
  void update(std::string_view bytes);
  uint64_t finish() const;

 private:
  uint64_t v0_, v1_, v2_, v3_;
  uint64_t tail_ = 0;      // bytes not yet compressed, little-endian
  size_t tail_bytes_ = 0;  // 0..7
  uint64_t length_ = 0;    // total bytes, mod 256 in the final block
};

// A reader-writer lock that prefers writers: while a writer waits, new
// readers wait too. glibc's default prefers readers, which would let a flood
// of requests for one hot key keep a shard's inserts waiting indefinitely.
// Not recursive: a thread must not take it twice.
class RwLock {
 public:
  RwLock();
  ~RwLock();
  RwLock(const RwLock&) = delete;
  RwLock& operator=(const RwLock&) = delete;

  void lock();
  void unlock();
  void lock_shared();
  void unlock_shared();

 private:
  pthread_rwlock_t lock_;
};

class BucketTable {
 public:
  static constexpr int kShardBits = 6;  // a key's top bits pick its shard
  static constexpr size_t kShards = size_t{1} << kShardBits;
  // The cap is split evenly over the shards: each needs room for one key.
  static constexpr size_t kMinKeys = kShards;

  // What one filter asks of the table. Filters sharing a table may differ;
  // each request is judged by its own filter's policy, and an insert made
  // for a filter respects that filter's cap.
  struct Policy {
    int64_t interval_ns = 1;     // T: time to earn one token, ns (>= 1)
    int64_t burst_ns = 1;        // burst * T: time to refill an empty bucket, ns
    size_t max_keys = kMinKeys;  // keys held at most (>= kMinKeys)
  };

  struct Verdict {
    bool allowed = false;
    // The key's TAT after the decision (unchanged when refused), ns on the
    // caller's clock.
    int64_t tat_ns = 0;
    // What the call did to the table, for the keys gauge and evictions
    // counter: net keys = inserted - expired - evicted.
    bool inserted = false;
    uint32_t expired = 0;  // full buckets dropped (no information lost)
    uint32_t evicted = 0;  // live buckets dropped at the cap
  };

  // The hash key is random: unknown outside this process.
  BucketTable();
  // A fixed hash key, for tests that need a reproducible layout.
  BucketTable(uint64_t k0, uint64_t k1);
  ~BucketTable();
  BucketTable(const BucketTable&) = delete;
  BucketTable& operator=(const BucketTable&) = delete;

  // The table's key for `value` in namespace `ns` (which must not contain a
  // NUL byte): a keyed hash of ns, NUL, value, never 0.
  uint64_t key(std::string_view ns, std::string_view value) const;

  // Decides one request for `key` at `now_ns` and, when allowed, takes its
  // token. An unknown key starts with a full bucket. When the key is new and
  // its shard holds its share of policy.max_keys, room is made first: full
  // buckets are dropped, else the live one nearest to full is evicted. A
  // lower cap than the table holds (a reload) takes effect as keys arrive:
  // such an insert removes up to two keys.
  Verdict admit(uint64_t key, int64_t now_ns, const Policy& policy);

  // Keys held (takes every shard's lock: for tests and diagnostics).
  size_t size() const;
  // Slots allocated over all shards (16 bytes each): the table's memory.
  size_t slot_capacity() const;

 private:
  struct Slot {
    uint64_t key = 0;  // 0 = empty; written under the exclusive lock only
    std::atomic<int64_t> tat{0};
  };
  struct alignas(64) Shard {
    mutable RwLock lock;
    std::unique_ptr<Slot[]> slots;
    size_t capacity = 0;  // slots allocated
    size_t size = 0;      // keys held
    size_t hand = 0;      // where the next sweep starts
  };

  static size_t shard_cap(size_t shard_index, size_t max_keys);
  Verdict insert(Shard& shard, size_t shard_index, uint64_t key, int64_t now_ns,
                 const Policy& policy);
  static Slot* find(Shard& shard, uint64_t key);
  // Rehashes into `capacity` slots (more than size()).
  static void resize(Shard& shard, size_t capacity);
  static Slot& place(Shard& shard, uint64_t key, int64_t tat);
  static void erase(Shard& shard, size_t index);
  // A scan of up to `budget` slots from the shard's hand: full buckets are
  // erased; the live slot with the smallest TAT is reported (its index is
  // valid only when nothing was erased, since an erase shifts entries).
  struct Sweep {
    uint32_t expired = 0;
    size_t nearest_full = 0;  // == capacity when no live slot was seen
  };
  static Sweep sweep(Shard& shard, int64_t now_ns, size_t budget);

  uint64_t k0_;  // SipHash key
  uint64_t k1_;
  std::unique_ptr<Shard[]> shards_;
};

}  // namespace ward::filters
