// This file does not include proxy/util/frame_pool.h itself: the build
// includes it ahead of every file (CMakeLists.txt), and these tests check
// that it did. Without it, Asio takes the frames and handlers below from its
// own recycling and the pool's lists stay empty.
#include <gtest/gtest.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <thread>

namespace {

boost::asio::awaitable<void> inner(int& ran) {
  ++ran;
  co_return;
}

boost::asio::awaitable<void> outer(int& ran) {
  co_await inner(ran);
  co_await inner(ran);
}

void spawn_outer(boost::asio::io_context& io, int& ran) {
  boost::asio::co_spawn(io, outer(ran), boost::asio::detached);
}

void post_one(boost::asio::io_context& io, int& ran) {
  boost::asio::any_io_executor ex = io.get_executor();
  boost::asio::post(ex, [&ran] { ++ran; });
}

}  // namespace

namespace ward::util::frame_pool {
size_t kept_blocks();  // declared here as in the header, which this file does not name
namespace {

template <typename F>
void on_fresh_thread(F f) {
  std::thread t(f);
  t.join();
}

TEST(FramePoolWiring, CoroutineFramesComeFromThePool) {
  on_fresh_thread([] {
    boost::asio::io_context io;
    int ran = 0;
    spawn_outer(io, ran);
    io.run();
    EXPECT_EQ(ran, 2);
    const size_t kept = kept_blocks();
    EXPECT_GE(kept, 2u);  // the outer and inner frames at least
    // The same work again takes its frames from the lists: none are added.
    io.restart();
    spawn_outer(io, ran);
    io.run();
    EXPECT_EQ(ran, 4);
    EXPECT_EQ(kept_blocks(), kept);
  });
}

TEST(FramePoolWiring, PostedHandlersComeFromThePool) {
  on_fresh_thread([] {
    boost::asio::io_context io;
    int ran = 0;
    post_one(io, ran);
    EXPECT_EQ(kept_blocks(), 0u);
    io.run();
    EXPECT_EQ(ran, 1);
    EXPECT_EQ(kept_blocks(), 1u);  // the handler's block, released after it ran
  });
}

}  // namespace
}  // namespace ward::util::frame_pool
