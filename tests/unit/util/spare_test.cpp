#include "proxy/util/spare.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "proxy/util/io_buffer.h"

namespace ward::util {
namespace {

size_t spare_blocks(size_t size) {
  auto* l = detail::block_list(size, false);
  return l != nullptr ? l->blocks.size() : 0;
}

// The lists are per thread and outlive a test: each test starts with none.
class SpareTest : public ::testing::Test {
 protected:
  void SetUp() override {
    detail::spare_list<std::string>().clear();
    detail::spare_list<std::vector<int>>().clear();
    for (size_t size :
         {size_t{64}, size_t{1024}, size_t{2048}, size_t{4096}, size_t{8192}, kMaxSpareBytes + 1}) {
      if (auto* l = detail::block_list(size, false)) {
        l->blocks.clear();
      }
    }
  }
  void TearDown() override { SetUp(); }
};

TEST_F(SpareTest, InlineCapacityMatchesTheStandardLibrary) {
  EXPECT_EQ(std::string().capacity(), kInlineCapacity<std::string>);
  EXPECT_EQ(std::vector<int>().capacity(), kInlineCapacity<std::vector<int>>);
}

TEST_F(SpareTest, GivenMemoryIsTakenBackByTheNextUser) {
  std::string a(1000, 'x');
  const char* memory = a.data();
  give_back(a);
  EXPECT_TRUE(a.empty());
  EXPECT_LE(a.capacity(), std::string().capacity());  // holds no heap memory

  std::string b;
  take_spare(b);
  EXPECT_EQ(b.data(), memory);  // the same block, not a new allocation
  EXPECT_TRUE(b.empty());
  EXPECT_GE(b.capacity(), 1000u);
}

TEST_F(SpareTest, TakeDoesNotReplaceMemoryOrContent) {
  std::string spare(500, 's');
  give_back(spare);
  std::string has_memory(200, 'm');
  has_memory.clear();
  const char* own = has_memory.data();
  take_spare(has_memory);
  EXPECT_EQ(has_memory.data(), own);
  std::string short_text = "abc";  // inline, no heap memory, but not empty
  take_spare(short_text);
  EXPECT_EQ(short_text, "abc");
  EXPECT_EQ(detail::spare_list<std::string>().size(), 1u);  // still there
}

TEST_F(SpareTest, NothingToTakeLeavesItEmpty) {
  std::vector<int> v;
  take_spare(v);
  EXPECT_EQ(v.capacity(), 0u);
  v.push_back(1);  // and still usable
  EXPECT_EQ(v.size(), 1u);
}

TEST_F(SpareTest, InlineStringsAreNotKept) {
  std::string small = "abc";
  give_back(small);
  EXPECT_TRUE(small.empty());
  EXPECT_TRUE(detail::spare_list<std::string>().empty());
}

TEST_F(SpareTest, ListIsBoundedInCountAndBlockSize) {
  for (size_t i = 0; i < kMaxSpares + 10; ++i) {
    std::vector<int> v(100);
    give_back(v);
    EXPECT_EQ(v.capacity(), 0u);  // freed or kept, never left with the caller
  }
  EXPECT_EQ(detail::spare_list<std::vector<int>>().size(), kMaxSpares);

  detail::spare_list<std::string>().clear();
  std::string huge(kMaxSpareBytes + 1, 'h');
  give_back(huge);
  EXPECT_TRUE(huge.empty());
  EXPECT_TRUE(detail::spare_list<std::string>().empty());  // too big to keep
}

TEST_F(SpareTest, BlocksAreReusedOnlyAtTheirExactSize) {
  auto a = take_block(4096);
  ASSERT_NE(a, nullptr);
  char* memory = a.get();
  give_block(a, 4096);
  EXPECT_EQ(a, nullptr);

  auto other = take_block(8192);  // another size: a new block
  EXPECT_NE(other.get(), memory);
  auto same = take_block(4096);
  EXPECT_EQ(same.get(), memory);
  give_block(other, 8192);
  give_block(same, 4096);
}

TEST_F(SpareTest, BlockListIsBounded) {
  std::vector<std::unique_ptr<char[]>> blocks;
  for (size_t i = 0; i < kMaxBlocks + 5; ++i) {
    blocks.push_back(take_block(64));
  }
  for (auto& b : blocks) {
    give_block(b, 64);
    EXPECT_EQ(b, nullptr);  // kept or freed, never left with the caller
  }
  EXPECT_EQ(spare_blocks(64), kMaxBlocks);
  auto too_big = take_block(kMaxSpareBytes + 1);
  give_block(too_big, kMaxSpareBytes + 1);
  EXPECT_EQ(too_big, nullptr);
  EXPECT_EQ(spare_blocks(kMaxSpareBytes + 1), 0u);
}

TEST_F(SpareTest, IoBufferReleaseHandsItsBlockToTheNextBuffer) {
  IoBuffer first(1024);
  char* memory = first.write_ptr();
  first.release();
  EXPECT_FALSE(first.allocated());
  IoBuffer second(1024);
  EXPECT_EQ(second.write_ptr(), memory);
  // A buffer destroyed while holding memory gives it back too.
  {
    IoBuffer third(2048);
    third.write_ptr();
  }
  EXPECT_EQ(spare_blocks(2048), 1u);
}

TEST_F(SpareTest, ListsArePerThread) {
  std::string a(1000, 'x');
  give_back(a);
  size_t other_thread_sees = 99;
  std::thread t([&] { other_thread_sees = detail::spare_list<std::string>().size(); });
  t.join();
  EXPECT_EQ(other_thread_sees, 0u);
  EXPECT_EQ(detail::spare_list<std::string>().size(), 1u);
}

}  // namespace
}  // namespace ward::util
