#include "proxy/util/frame_pool.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

namespace ward::util::frame_pool {
namespace {

// Each case runs on a thread of its own, whose lists start empty.
template <typename F>
void on_fresh_thread(F f) {
  std::thread t(f);
  t.join();
}

TEST(FramePool, ReleasedBlockIsReusedForTheSameSizeClass) {
  on_fresh_thread([] {
    void* a = allocate(200, 16);
    deallocate(a, 200);
    EXPECT_EQ(kept_blocks(), 1u);
    void* b = allocate(220, 16);  // 200 and 220 share the 224-byte class
    EXPECT_EQ(b, a);
    EXPECT_EQ(kept_blocks(), 0u);
    void* c = allocate(100, 16);  // another class: a fresh block
    EXPECT_NE(c, a);
    deallocate(b, 220);
    deallocate(c, 100);
    EXPECT_EQ(kept_blocks(), 2u);
    EXPECT_EQ(kept_bytes(), 224u + 128u);
  });
}

TEST(FramePool, BlocksAreWritableOverTheirWholeSize) {
  on_fresh_thread([] {
    std::vector<std::pair<void*, size_t>> blocks;
    for (size_t size = 1; size <= kMaxBlock + 64; size += 7) {
      void* p = allocate(size, 16);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 16, 0u);
      std::memset(p, 0xab, size);  // ASan reports a block too short
      blocks.emplace_back(p, size);
    }
    for (auto [p, size] : blocks) {
      deallocate(p, size);
    }
  });
}

TEST(FramePool, LargeAndOverAlignedBlocksAreNotKept) {
  on_fresh_thread([] {
    void* big = allocate(kMaxBlock + 1, 16);
    deallocate(big, kMaxBlock + 1);
    EXPECT_EQ(kept_blocks(), 0u);
    void* aligned = allocate(100, 64);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(aligned) % 64, 0u);
    deallocate(aligned, 100);
  });
}

TEST(FramePool, KeepsAtMostItsBoundPerThread) {
  on_fresh_thread([] {
    constexpr size_t kSize = 512;
    const size_t n = kMaxKeptBytes / kSize + 50;
    std::vector<void*> blocks;
    for (size_t i = 0; i < n; ++i) {
      blocks.push_back(allocate(kSize, 16));
    }
    for (void* p : blocks) {
      deallocate(p, kSize);
    }
    EXPECT_EQ(kept_bytes(), kMaxKeptBytes);
    EXPECT_EQ(kept_blocks(), kMaxKeptBytes / kSize);
  });
}

TEST(FramePool, AnEndingThreadFreesWhatItKept) {
  const size_t before = freed_by_ended_threads();
  on_fresh_thread([] {
    std::vector<void*> blocks;
    for (size_t i = 0; i < 10; ++i) {
      blocks.push_back(allocate(64 * (i + 1), 16));
    }
    for (size_t i = 0; i < 10; ++i) {
      deallocate(blocks[i], 64 * (i + 1));
    }
    EXPECT_EQ(kept_blocks(), 10u);
  });
  EXPECT_EQ(freed_by_ended_threads() - before, 10u);
}

TEST(FramePool, ABlockFreedOnAnotherThreadJoinsThatThreadsLists) {
  void* p = nullptr;
  on_fresh_thread([&] { p = allocate(300, 16); });
  const size_t before = freed_by_ended_threads();
  on_fresh_thread([&] {
    deallocate(p, 300);  // this thread never allocated: it keeps it all the same
    EXPECT_EQ(kept_blocks(), 1u);
    EXPECT_EQ(allocate(290, 16), p);
    deallocate(p, 290);
  });
  EXPECT_EQ(freed_by_ended_threads() - before, 1u);
}

}  // namespace
}  // namespace ward::util::frame_pool
