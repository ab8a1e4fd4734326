// Balancers run on every request: once warm, a pick must not allocate, even
// with hosts going down and coming back or a retry's `tried` list.

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "proxy/upstream/balancer.h"
#include "tests/unit/upstream/test_hosts.h"

namespace {
std::atomic<long> g_allocations{0};
}  // namespace

// GCC 12 sees the inlined std::free in these replacements as mismatched with
// operator new (a false positive: both sides are the replacements below).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

// Counting replacements for the global allocation functions of this test
// binary; the sized/aligned deletes and array forms forward to these.
void* operator new(std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) {
    return p;
  }
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}

namespace ward::upstream {
namespace {

using testing::at;
using testing::make_set;

class SteadyStateTest : public ::testing::TestWithParam<config::Balance> {};

TEST_P(SteadyStateTest, PicksDoNotAllocateOnceWarm) {
  HostSet set = make_set(1, {5, 1, 1, 3, 2, 1, 1, 4});
  auto balancer = make_balancer(GetParam(), 1);
  const std::vector<size_t> tried{0, 3};
  auto run = [&](int64_t now_ms) {
    for (int i = 0; i < 200; ++i) {
      PickContext ctx =
          at(now_ms, i % 3 == 0 ? std::span<const size_t>(tried) : std::span<const size_t>());
      ctx.hash = static_cast<uint64_t>(i) * 0x9e3779b97f4a7c15ULL;
      const int index = balancer->pick(set, ctx);
      ASSERT_GE(index, 0);
    }
  };
  // Warm-up: every path once (all up, some down, almost all down).
  run(0);
  set.hosts[1].stats->healthy = false;
  set.hosts[4].stats->ejected_until_ms = 100;
  run(0);
  for (size_t i = 0; i + 1 < set.hosts.size(); ++i) {
    set.hosts[i].stats->healthy = false;
  }
  run(0);
  for (Host& host : set.hosts) {
    host.stats->healthy = true;
  }

  const long before = g_allocations.load();
  run(0);
  set.hosts[2].stats->healthy = false;  // goes down
  run(50);
  set.hosts[2].stats->healthy = true;  // comes back; host 4's ejection ends
  run(100);
  for (size_t i = 0; i + 1 < set.hosts.size(); ++i) {
    set.hosts[i].stats->healthy = false;
  }
  run(100);
  EXPECT_EQ(g_allocations.load() - before, 0);
}

INSTANTIATE_TEST_SUITE_P(AllKinds, SteadyStateTest,
                         ::testing::Values(config::Balance::round_robin,
                                           config::Balance::least_conn, config::Balance::random_two,
                                           config::Balance::ip_hash),
                         [](const ::testing::TestParamInfo<config::Balance>& info) {
                           switch (info.param) {
                             case config::Balance::round_robin:
                               return "RoundRobin";
                             case config::Balance::least_conn:
                               return "LeastConn";
                             case config::Balance::random_two:
                               return "RandomTwo";
                             case config::Balance::ip_hash:
                               return "IpHash";
                           }
                           return "Unknown";
                         });

}  // namespace
}  // namespace ward::upstream
