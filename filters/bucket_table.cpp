#include "filters/bucket_table.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <system_error>

namespace ward::filters {

namespace {

// ---------------------------------------------------------------------------
// Table tuning. Every number here bounds work done under a shard's
// exclusive lock, which only inserts take.

// Slots scanned for full buckets on every insert below the cap: steady
// clean-up, so the table tracks keys with something to remember rather than
// every key ever seen.
constexpr size_t kSweepSlots = 8;
// Slots scanned on an insert at the cap (16 bytes each: 1 KiB read). Full
// buckets among them are dropped; if there are none, the live bucket nearest
// to full among them (about 48 at the 3/4 load) is evicted.
constexpr size_t kCapSweepSlots = 64;
// A shard's first allocation, in slots.
constexpr size_t kInitialSlots = 8;

// Linear probing stays fast up to 3/4 full; each shard grows by doubling
// until it can hold its share of the cap at that load.
size_t max_slots_for(size_t cap) {
  return std::max(cap + 1, (cap * 4 + 2) / 3);  // >= one empty slot ends every probe
}

// A key's first probe position: its bits below the shard index, scaled to
// the slot count (Lemire's multiply-shift; any count works, not only powers
// of two, so a shard's last growth step can stop at exactly what it needs).
size_t home_of(uint64_t key, size_t slots) {
  uint64_t below_shard = key << BucketTable::kShardBits;
  return static_cast<size_t>((static_cast<unsigned __int128>(below_shard) * slots) >> 64);
}

size_t next_of(size_t i, size_t slots) {
  return i + 1 == slots ? 0 : i + 1;
}

// One GCRA step (see the header): `tat` is the key's theoretical arrival
// time, ns. Allowed iff the bucket, after this request's token, lacks no more
// than `burst_ns` worth of tokens. The CAS retries when another worker moved
// the TAT between our load and our store, so each allowed request advances
// it by a full T. Relaxed order suffices: the TAT is the only data, and all
// CASes on one atomic are totally ordered whatever the memory order.
bool gcra(std::atomic<int64_t>& tat, int64_t now_ns, const BucketTable::Policy& policy,
          int64_t& tat_out) {
  int64_t old = tat.load(std::memory_order_relaxed);
  for (;;) {
    int64_t next = std::max(old, now_ns) + policy.interval_ns;
    if (next - now_ns > policy.burst_ns) {
      tat_out = old;  // refused: no token taken
      return false;
    }
    if (tat.compare_exchange_weak(old, next, std::memory_order_relaxed)) {
      tat_out = next;
      return true;
    }
  }
}

uint64_t rotl(uint64_t x, int b) {
  return std::rotl(x, b);
}

uint64_t random_u64() {
  std::random_device rd;  // the kernel's getrandom: unpredictable per process
  uint64_t hi = rd();
  uint64_t lo = rd();
  return (hi << 32) ^ lo;
}

}  // namespace

// ---------------------------------------------------------------------------
// SipHash-2-4, after the reference implementation (github.com/veorq/SipHash).

SipHasher::SipHasher(uint64_t k0, uint64_t k1)
    : v0_(k0 ^ 0x736f6d6570736575ull),
      v1_(k1 ^ 0x646f72616e646f6dull),
      v2_(k0 ^ 0x6c7967656e657261ull),
      v3_(k1 ^ 0x7465646279746573ull) {}

namespace {

struct SipState {
  uint64_t v0, v1, v2, v3;
  void round() {
    v0 += v1;
    v1 = rotl(v1, 13);
    v1 ^= v0;
    v0 = rotl(v0, 32);
    v2 += v3;
    v3 = rotl(v3, 16);
    v3 ^= v2;
    v0 += v3;
    v3 = rotl(v3, 21);
    v3 ^= v0;
    v2 += v1;
    v1 = rotl(v1, 17);
    v1 ^= v2;
    v2 = rotl(v2, 32);
  }
  void compress(uint64_t m) {  // the "2" of 2-4: two rounds per 8-byte word
    v3 ^= m;
    round();
    round();
    v0 ^= m;
  }
};

// n (<= 8) bytes as the low bytes of a little-endian word, whatever the host.
uint64_t load_le(const unsigned char* p, size_t n) {
  uint64_t m = 0;
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(&m, p, n);
  } else {
    for (size_t i = n; i-- > 0;) {
      m = (m << 8) | p[i];
    }
  }
  return m;
}

}  // namespace

// The state stays in registers for the whole call: the key of a request is
// hashed once per request, on the rate limiter's hot path.
void SipHasher::update(std::string_view bytes) {
  length_ += bytes.size();
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t n = bytes.size();
  SipState s{v0_, v1_, v2_, v3_};
  // Top up a partial word left by the previous call.
  while (n > 0 && tail_bytes_ != 0) {
    tail_ |= static_cast<uint64_t>(*p++) << (8 * tail_bytes_);
    --n;
    if (++tail_bytes_ == 8) {
      s.compress(tail_);
      tail_ = 0;
      tail_bytes_ = 0;
    }
  }
  for (; n >= 8; p += 8, n -= 8) {
    s.compress(load_le(p, 8));
  }
  if (n > 0) {
    // Here the tail is empty: either the top-up above used all the input
    // (n == 0) or it completed a word.
    tail_ = load_le(p, n);
    tail_bytes_ = n;
  }
  v0_ = s.v0;
  v1_ = s.v1;
  v2_ = s.v2;
  v3_ = s.v3;
}

uint64_t SipHasher::finish() const {
  SipState s{v0_, v1_, v2_, v3_};
  s.compress((length_ << 56) | tail_);  // the last word carries length mod 256
  s.v2 ^= 0xff;
  for (int i = 0; i < 4; ++i) {  // the "4": finalisation rounds
    s.round();
  }
  return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

// ---------------------------------------------------------------------------
// RwLock

RwLock::RwLock() {
  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init(&attr);
#ifdef __GLIBC__
  pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
#endif
  int rc = pthread_rwlock_init(&lock_, &attr);
  pthread_rwlockattr_destroy(&attr);
  if (rc != 0) {
    // Only at table creation (config load, main thread): control plane.
    throw std::system_error(rc, std::generic_category(), "pthread_rwlock_init");
  }
}

RwLock::~RwLock() {
  pthread_rwlock_destroy(&lock_);
}

// With a valid, non-recursively used lock these calls cannot fail (EDEADLK
// and EAGAIN need misuse or 2^31 concurrent readers).
void RwLock::lock() {
  pthread_rwlock_wrlock(&lock_);
}
void RwLock::unlock() {
  pthread_rwlock_unlock(&lock_);
}
void RwLock::lock_shared() {
  pthread_rwlock_rdlock(&lock_);
}
void RwLock::unlock_shared() {
  pthread_rwlock_unlock(&lock_);
}

// ---------------------------------------------------------------------------
// BucketTable

BucketTable::BucketTable() : BucketTable(random_u64(), random_u64()) {}

BucketTable::BucketTable(uint64_t k0, uint64_t k1)
    : k0_(k0), k1_(k1), shards_(std::make_unique<Shard[]>(kShards)) {}

BucketTable::~BucketTable() = default;

size_t BucketTable::shard_cap(size_t shard_index, size_t max_keys) {
  // The cap split over the shards, the remainder to the first ones, so the
  // shards together never hold more than max_keys. At least one per shard.
  size_t m = std::max(max_keys, kMinKeys);
  return m / kShards + (shard_index < m % kShards ? 1 : 0);
}

uint64_t BucketTable::key(std::string_view ns, std::string_view value) const {
  SipHasher h(k0_, k1_);
  // ns has no NUL, so (ns, value) -> bytes is one-to-one: "ip" + "1.2.3.4"
  // and "h:x" + "1.2.3.4" can never be the same input. Hashed in one piece
  // when it fits (the usual case): whole words, no byte-wise top-ups.
  std::array<char, 128> joined;
  if (ns.size() + 1 + value.size() <= joined.size()) {
    std::copy(ns.begin(), ns.end(), joined.begin());
    joined[ns.size()] = '\0';
    std::copy(value.begin(), value.end(), joined.begin() + static_cast<ptrdiff_t>(ns.size()) + 1);
    h.update(std::string_view(joined.data(), ns.size() + 1 + value.size()));
  } else {
    h.update(ns);
    h.update(std::string_view("\0", 1));
    h.update(value);
  }
  uint64_t k = h.finish();
  return k == 0 ? 1 : k;  // 0 marks an empty slot; this merges 2 of 2^64 values
}

BucketTable::Verdict BucketTable::admit(uint64_t key, int64_t now_ns, const Policy& policy) {
  size_t shard_index = key >> (64 - kShardBits);
  Shard& shard = shards_[shard_index];
  {
    // Hot path: a known key. Shared, so workers wait only for an insert in
    // progress on this shard, never for one another; held across the CAS so
    // the slot cannot be reused under it.
    std::shared_lock lock(shard.lock);
    if (Slot* slot = find(shard, key)) {
      Verdict v;
      v.allowed = gcra(slot->tat, now_ns, policy, v.tat_ns);
      return v;
    }
  }
  std::unique_lock lock(shard.lock);
  return insert(shard, shard_index, key, now_ns, policy);
}

BucketTable::Verdict BucketTable::insert(Shard& shard, size_t shard_index, uint64_t key,
                                         int64_t now_ns, const Policy& policy) {
  Verdict v;
  // Another worker may have inserted the key between our two locks.
  if (Slot* slot = find(shard, key)) {
    v.allowed = gcra(slot->tat, now_ns, policy, v.tat_ns);
    return v;
  }
  if (shard.size > 0) {
    v.expired += sweep(shard, now_ns, kSweepSlots).expired;
  }
  // At the cap, make room: full buckets first (dropping one loses nothing:
  // its key would start full anyway), else the live bucket nearest to full
  // (its client loses the least by starting full again). Up to two removals
  // per insert, so a lowered cap shrinks the table by one key per insert.
  size_t cap = shard_cap(shard_index, policy.max_keys);
  for (uint32_t removed = 0; shard.size >= cap && removed < 2;) {
    Sweep s = sweep(shard, now_ns, kCapSweepSlots);
    if (s.expired > 0) {
      v.expired += s.expired;
      removed += s.expired;
      continue;
    }
    if (s.nearest_full == shard.capacity) {
      // 64 empty slots: only in a table sized for a higher cap. size >= cap
      // >= 1, so scanning on (the hand moved) finds a key within one lap.
      continue;
    }
    erase(shard, s.nearest_full);
    ++v.evicted;
    ++removed;
  }
  size_t fit = max_slots_for(cap);
  if ((shard.size + 1) * 4 > shard.capacity * 3) {
    // Double, but stop at what the cap needs; more only while over a
    // lowered cap, so the load stays at most 3/4 in every case.
    size_t target = std::min(std::max(kInitialSlots, shard.capacity * 2), fit);
    resize(shard, std::max(target, max_slots_for(shard.size + 1)));
  } else if (shard.capacity > 2 * fit && shard.size < cap) {
    resize(shard, fit);  // the cap was lowered: give the memory back
  }
  // A new key starts full (TAT = now); this request then takes a token,
  // which a full bucket always has (burst >= 1).
  Slot& slot = place(shard, key, now_ns);
  v.inserted = true;
  v.allowed = gcra(slot.tat, now_ns, policy, v.tat_ns);
  return v;
}

BucketTable::Slot* BucketTable::find(Shard& shard, uint64_t key) {
  if (shard.capacity == 0) {
    return nullptr;
  }
  for (size_t i = home_of(key, shard.capacity);; i = next_of(i, shard.capacity)) {
    Slot& s = shard.slots[i];
    if (s.key == key) {
      return &s;
    }
    if (s.key == 0) {
      return nullptr;  // the load is < 1, so an empty slot ends every probe
    }
  }
}

BucketTable::Slot& BucketTable::place(Shard& shard, uint64_t key, int64_t tat) {
  size_t i = home_of(key, shard.capacity);
  while (shard.slots[i].key != 0) {
    i = next_of(i, shard.capacity);
  }
  Slot& slot = shard.slots[i];
  slot.key = key;
  slot.tat.store(tat, std::memory_order_relaxed);
  ++shard.size;
  return slot;
}

void BucketTable::resize(Shard& shard, size_t capacity) {
  auto old = std::move(shard.slots);
  size_t old_capacity = shard.capacity;
  shard.slots = std::make_unique<Slot[]>(capacity);
  shard.capacity = capacity;
  shard.size = 0;
  shard.hand %= capacity;
  for (size_t i = 0; i < old_capacity; ++i) {
    if (old[i].key != 0) {
      place(shard, old[i].key, old[i].tat.load(std::memory_order_relaxed));
    }
  }
}

void BucketTable::erase(Shard& shard, size_t index) {
  // Backward-shift deletion (Knuth, TAOCP vol. 3, 6.4 algorithm R): later
  // entries of the probe run move into the hole when their home allows, so
  // no tombstones accumulate and lookups stay short.
  size_t hole = index;
  for (size_t j = next_of(hole, shard.capacity);; j = next_of(j, shard.capacity)) {
    Slot& s = shard.slots[j];
    if (s.key == 0) {
      break;
    }
    size_t home = home_of(s.key, shard.capacity);
    // The entry at j may fill the hole unless its home lies cyclically in
    // (hole, j]: then moving it would put it before its home.
    bool home_after_hole = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
    if (!home_after_hole) {
      shard.slots[hole].key = s.key;
      shard.slots[hole].tat.store(s.tat.load(std::memory_order_relaxed), std::memory_order_relaxed);
      hole = j;
    }
  }
  shard.slots[hole].key = 0;
  --shard.size;
}

BucketTable::Sweep BucketTable::sweep(Shard& shard, int64_t now_ns, size_t budget) {
  Sweep out;
  out.nearest_full = shard.capacity;
  if (shard.capacity == 0) {
    return out;
  }
  int64_t smallest = 0;
  size_t i = shard.hand % shard.capacity;
  for (size_t n = std::min(budget, shard.capacity); n > 0; --n) {
    // An erase shifts a later entry into slot i: look at it again.
    while (shard.slots[i].key != 0 &&
           shard.slots[i].tat.load(std::memory_order_relaxed) <= now_ns) {
      erase(shard, i);
      ++out.expired;
    }
    if (shard.slots[i].key != 0) {
      int64_t tat = shard.slots[i].tat.load(std::memory_order_relaxed);
      if (out.nearest_full == shard.capacity || tat < smallest) {
        out.nearest_full = i;
        smallest = tat;
      }
    }
    i = next_of(i, shard.capacity);
  }
  shard.hand = i;
  return out;
}

size_t BucketTable::size() const {
  size_t total = 0;
  for (size_t i = 0; i < kShards; ++i) {
    std::shared_lock lock(shards_[i].lock);
    total += shards_[i].size;
  }
  return total;
}

size_t BucketTable::slot_capacity() const {
  size_t total = 0;
  for (size_t i = 0; i < kShards; ++i) {
    std::shared_lock lock(shards_[i].lock);
    total += shards_[i].capacity;
  }
  return total;
}

}  // namespace ward::filters
