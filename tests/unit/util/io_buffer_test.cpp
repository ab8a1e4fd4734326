#include "proxy/util/io_buffer.h"

#include <gtest/gtest.h>

#include <cstring>

namespace ward::util {
namespace {

void put(IoBuffer& b, std::string_view text) {
  std::memcpy(b.write_ptr(), text.data(), text.size());
  b.commit(text.size());
}

TEST(IoBufferTest, AllocatesOnFirstWriteNotBefore) {
  IoBuffer b(64);
  EXPECT_FALSE(b.allocated());
  EXPECT_TRUE(b.data().empty());
  put(b, "abc");
  EXPECT_TRUE(b.allocated());
  EXPECT_EQ(b.data(), "abc");
}

TEST(IoBufferTest, ReleaseFreesOnlyWhenEmpty) {
  IoBuffer b(64);
  put(b, "abc");
  b.release();
  EXPECT_TRUE(b.allocated()) << "unread bytes must survive release()";
  EXPECT_EQ(b.data(), "abc");
  b.consume(3);
  b.release();
  EXPECT_FALSE(b.allocated());
  put(b, "xy");
  EXPECT_EQ(b.data(), "xy");
  EXPECT_EQ(b.write_space(), 62u);
}

TEST(IoBufferTest, CompactsTheTailWhenSpaceRunsShort) {
  IoBuffer b(16);
  put(b, "0123456789abcd");  // 14 of 16 used
  b.consume(10);             // "abcd" left, 2 bytes free at the end
  char* p = b.write_ptr();   // under a quarter free: compacts first
  EXPECT_EQ(b.data(), "abcd");
  EXPECT_EQ(b.write_space(), 12u);
  EXPECT_EQ(p, b.data().data() + 4);
}

TEST(IoBufferTest, StartsWithTheInitialBlockAndGrowsKeepingTheData) {
  IoBuffer b(64, 16);
  EXPECT_EQ(b.capacity(), 64u);
  EXPECT_EQ(b.block_size(), 16u);
  put(b, "0123456789abcdef");  // the first block, full
  EXPECT_EQ(b.write_space(), 0u);
  b.consume(4);  // unread data not at the front: grow() moves it there
  ASSERT_TRUE(b.grow());
  EXPECT_EQ(b.block_size(), 64u);
  EXPECT_EQ(b.data(), "456789abcdef");
  EXPECT_EQ(b.write_space(), 64u - 12u);
  put(b, "ghij");
  EXPECT_EQ(b.data(), "456789abcdefghij");
  EXPECT_FALSE(b.grow()) << "already at capacity";
}

TEST(IoBufferTest, ReleaseGoesBackToTheInitialBlock) {
  IoBuffer b(64, 16);
  put(b, "abc");
  ASSERT_TRUE(b.grow());
  b.consume(3);
  b.release();
  EXPECT_FALSE(b.allocated());
  EXPECT_EQ(b.block_size(), 16u);
  put(b, "x");
  EXPECT_EQ(b.write_space(), 15u);
}

TEST(IoBufferTest, GrowingBeforeTheFirstWriteOnlySetsTheSize) {
  IoBuffer b(64, 16);
  ASSERT_TRUE(b.grow());
  EXPECT_FALSE(b.allocated());
  put(b, "abc");
  EXPECT_EQ(b.write_space(), 61u);
}

}  // namespace
}  // namespace ward::util
