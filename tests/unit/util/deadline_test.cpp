#include "proxy/util/deadline.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <chrono>

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

}  // namespace
}  // namespace ward::util
