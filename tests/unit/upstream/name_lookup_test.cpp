#include "proxy/upstream/name_lookup.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <optional>

namespace ward::upstream {
namespace {

namespace asio = boost::asio;

// Runs one lookup to its end on `io`, bounded in time.
std::optional<Resolution> run_lookup(asio::io_context& io, asio::posix::stream_descriptor& wait,
                                     const std::string& name) {
  std::optional<Resolution> out;
  asio::co_spawn(io, look_up_name(wait, name), [&](std::exception_ptr e, Resolution r) {
    if (!e) {
      out = std::move(r);
    }
  });
  io.run_for(std::chrono::seconds(20));
  return out;
}

// A worker's loop is lock-free, where Asio's own resolver cannot complete.
// "localhost" comes from /etc/hosts, so no name server is asked.
TEST(NameLookupTest, LocalhostResolvesToLoopbackOnALockFreeLoop) {
  asio::io_context io(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE);
  asio::posix::stream_descriptor wait(io);
  auto r = run_lookup(io, wait, "localhost");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->error, "");
  ASSERT_FALSE(r->addresses.empty());
  for (const auto& a : r->addresses) {
    EXPECT_TRUE(a.is_loopback()) << a.to_string();
  }
  EXPECT_TRUE(std::is_sorted(r->addresses.begin(), r->addresses.end()));
  EXPECT_FALSE(wait.is_open());  // ready for the next lookup
}

TEST(NameLookupTest, AnAddressLiteralAnswersItself) {
  asio::io_context io;
  asio::posix::stream_descriptor wait(io);
  auto r = run_lookup(io, wait, "127.0.0.7");
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->addresses.size(), 1u);
  EXPECT_EQ(r->addresses[0].to_string(), "127.0.0.7");
}

TEST(NameLookupTest, AnInvalidNameIsAnErrorNotAnEmptyAnswer) {
  asio::io_context io;
  asio::posix::stream_descriptor wait(io);
  auto r = run_lookup(io, wait, "bad name with spaces");
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->addresses.empty());
  EXPECT_NE(r->error, "");
}

// A timeout or a stop closes the descriptor: the wait ends at once, whatever
// the lookup's thread is still doing.
TEST(NameLookupTest, ClosingTheDescriptorCancelsTheWait) {
  asio::io_context io;
  asio::posix::stream_descriptor wait(io);
  std::optional<Resolution> out;
  asio::co_spawn(io, look_up_name(wait, "localhost"), [&](std::exception_ptr e, Resolution r) {
    if (!e) {
      out = std::move(r);
    }
  });
  // Runs after the coroutine has started waiting (handlers run in order).
  asio::post(io, [&] { wait.close(); });
  io.run_for(std::chrono::seconds(20));
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->error, "lookup cancelled");
  EXPECT_TRUE(out->addresses.empty());
}

TEST(NameLookupTest, TheDescriptorServesOneLookupAfterAnother) {
  asio::io_context io;
  asio::posix::stream_descriptor wait(io);
  for (const char* name : {"127.0.0.1", "localhost", "::1"}) {
    io.restart();
    auto r = run_lookup(io, wait, name);
    ASSERT_TRUE(r.has_value()) << name;
    EXPECT_EQ(r->error, "") << name;
  }
}

}  // namespace
}  // namespace ward::upstream
