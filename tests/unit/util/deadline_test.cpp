#include "proxy/util/deadline.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <memory>

// Real time, in tens of milliseconds: the Deadline is a timer and nothing
// else. Each run is bounded (run_for); the assertions wait on the expiry
// callback, never on a sleep.

namespace ward::util {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Lane = Deadline::Lane;

class DeadlineTest : public ::testing::Test {
 protected:
  DeadlineTest() : deadline_(io_.get_executor()) {
    deadline_.on_expire([this] {
      ++fired_;
      fired_at_ = Clock::now();
      io_.stop();  // each expiry ends the current run
    });
  }

  // Runs until an expiry or `bound`; true when one came.
  bool run_until_expiry(Clock::duration bound) {
    int before = fired_;
    io_.restart();
    io_.run_for(bound);
    return fired_ > before;
  }

  boost::asio::io_context io_;
  Deadline deadline_;
  int fired_ = 0;
  Clock::time_point fired_at_{};
};

TEST_F(DeadlineTest, MainLaneExpiresAndIsReported) {
  auto start = Clock::now();
  deadline_.expires_after(30ms);
  ASSERT_TRUE(run_until_expiry(5s));
  EXPECT_GE(fired_at_ - start, 30ms);
  EXPECT_TRUE(deadline_.expired());
  EXPECT_TRUE(deadline_.expired(Lane::main));
  EXPECT_FALSE(deadline_.expired(Lane::second));
}

TEST_F(DeadlineTest, ALaterDeadlineOnOneLaneDoesNotPostponeTheOther) {
  auto start = Clock::now();
  deadline_.expires_after(40ms, Lane::second);
  deadline_.expires_after(1h);  // the main lane, set after and much later
  ASSERT_TRUE(run_until_expiry(5s));
  EXPECT_LT(fired_at_ - start, 1h);
  EXPECT_TRUE(deadline_.expired(Lane::second));
  EXPECT_FALSE(deadline_.expired(Lane::main));
}

TEST_F(DeadlineTest, EachLaneFiresInItsTurn) {
  deadline_.expires_after(20ms);
  deadline_.expires_after(80ms, Lane::second);
  ASSERT_TRUE(run_until_expiry(5s));
  EXPECT_TRUE(deadline_.expired(Lane::main));
  EXPECT_FALSE(deadline_.expired(Lane::second));
  ASSERT_TRUE(run_until_expiry(5s));
  EXPECT_TRUE(deadline_.expired(Lane::second));
  EXPECT_EQ(fired_, 2);
}

TEST_F(DeadlineTest, MovingOneLaneLaterKeepsTheOtherArmed) {
  deadline_.expires_after(40ms, Lane::second);
  deadline_.expires_after(10ms);
  deadline_.expires_after(1h);  // the main lane moves out; the second still holds
  ASSERT_TRUE(run_until_expiry(5s));
  EXPECT_TRUE(deadline_.expired(Lane::second));
  EXPECT_FALSE(deadline_.expired(Lane::main));
}

TEST_F(DeadlineTest, ResetLaneNeverFiresAndForgetsAnExpiry) {
  deadline_.expires_after(20ms, Lane::second);
  deadline_.reset(Lane::second);
  EXPECT_FALSE(run_until_expiry(150ms));  // the armed wait lapses without an expiry

  deadline_.expires_after(20ms);
  ASSERT_TRUE(run_until_expiry(5s));
  EXPECT_TRUE(deadline_.expired());
  deadline_.reset(Lane::main);
  EXPECT_FALSE(deadline_.expired());
}

TEST_F(DeadlineTest, SettingALaneClearsOnlyItsOwnExpiry) {
  deadline_.expires_after(20ms, Lane::second);
  ASSERT_TRUE(run_until_expiry(5s));
  deadline_.expires_after(1h);  // the main lane: the second lane's expiry stands
  EXPECT_TRUE(deadline_.expired());
  EXPECT_TRUE(deadline_.expired(Lane::second));
  deadline_.expires_after(1h, Lane::second);
  EXPECT_FALSE(deadline_.expired());
}

TEST_F(DeadlineTest, ClearKeepsTheExpiryButEndsTheMainDeadline) {
  deadline_.expires_after(20ms);
  deadline_.clear();
  EXPECT_FALSE(run_until_expiry(150ms));
  deadline_.expires_after(20ms);
  ASSERT_TRUE(run_until_expiry(5s));
  deadline_.clear();
  EXPECT_TRUE(deadline_.expired()) << "clear() is not a reset: callers read expired() after it";
}

// The connection that owns a Deadline can end in the same turn of the event
// loop in which its wait completes: the completed wait is then already in the
// executor's queue, out of reach of the timer's cancel, and runs after the
// owner is gone. It must touch nothing (AddressSanitizer reports the read of
// freed memory this guards against; ward's integration tests caught it).
TEST(DeadlineLifetimeTest, AWaitCompletedBeforeTheOwnerDiedTouchesNothing) {
  boost::asio::io_context io;
  int fired = 0;
  auto owner = std::make_unique<Deadline>(io.get_executor());
  owner->on_expire([&fired] { ++fired; });
  // Already passed: the reactor's first turn moves the wait's completion
  // into the queue behind the handler posted next, which ends the owner.
  owner->expires_at(Clock::now() - 1ms);
  bool owner_gone = false;
  boost::asio::post(io, [&] {
    owner.reset();
    owner_gone = true;
  });
  io.run_for(5s);
  EXPECT_TRUE(owner_gone);
  EXPECT_EQ(fired, 0);
  EXPECT_TRUE(io.stopped()) << "nothing of the Deadline's is left waiting";
}

TEST_F(DeadlineTest, NothingFiresWhileSuspendedAndResumeFiresAPassedDeadline) {
  // A parked connection suspends its deadline (the parking lot watches it
  // instead); a sentinel deadline that expires later proves the suspended
  // one stayed quiet.
  Deadline sentinel(io_.get_executor());
  bool sentinel_fired = false;
  sentinel.on_expire([&] {
    sentinel_fired = true;
    io_.stop();
  });
  auto start = Clock::now();
  deadline_.expires_after(20ms);
  EXPECT_GE(deadline_.expiry(), start + 20ms);
  // From the coarse clock: at most its margin later (util/clock.h).
  EXPECT_LE(deadline_.expiry(), Clock::now() + 20ms + coarse_margin());
  deadline_.suspend();
  sentinel.expires_after(60ms);
  io_.restart();
  io_.run_for(5s);
  ASSERT_TRUE(sentinel_fired);
  EXPECT_EQ(fired_, 0);
  EXPECT_FALSE(deadline_.expired());
  deadline_.resume();  // its deadline passed 40 ms ago: it fires at once
  ASSERT_TRUE(run_until_expiry(5s));
  EXPECT_TRUE(deadline_.expired(Lane::main));
}

TEST_F(DeadlineTest, ResumeBeforeTheDeadlineFiresOnTime) {
  auto start = Clock::now();
  deadline_.expires_after(40ms);
  deadline_.suspend();
  deadline_.resume();
  ASSERT_TRUE(run_until_expiry(5s));
  EXPECT_GE(fired_at_ - start, 40ms);
}

}  // namespace
}  // namespace ward::util
