#include "proxy/server/parking_lot.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstring>
#include <functional>
#include <vector>

// The parking lot with real sockets (socketpairs) and real time, in tens of
// milliseconds. Every run is bounded (run_for); the assertions wait for the
// unparked() calls they expect, never on a sleep.

namespace ward::server {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Unpark = ParkingLot::Unpark;

struct TestSpot final : ParkingLot::Spot {
  std::vector<Unpark> calls;
  std::function<void()> on_call;  // e.g. a spot that ends itself
  void unparked(Unpark why) override {
    calls.push_back(why);
    if (on_call) {
      on_call();
    }
  }
};

struct SocketPair {
  int ours = -1;    // what parks
  int theirs = -1;  // the peer
  SocketPair() {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0) {
      ours = fds[0];
      theirs = fds[1];
    }
  }
  ~SocketPair() {
    close_theirs();
    if (ours >= 0) {
      ::close(ours);
    }
  }
  void send(const char* text) { ASSERT_GT(::write(theirs, text, std::strlen(text)), 0); }
  void close_theirs() {
    if (theirs >= 0) {
      ::close(theirs);
      theirs = -1;
    }
  }
};

class ParkingLotTest : public ::testing::Test {
 protected:
  // Runs the loop until `done` holds or 5 s pass; true when it held.
  bool run_until(const std::function<bool()>& done) {
    auto stop_at = Clock::now() + 5s;
    while (!done() && Clock::now() < stop_at) {
      io_.restart();
      io_.run_for(10ms);
    }
    return done();
  }

  boost::asio::io_context io_;
  ParkingLot lot_{io_};
};

TEST_F(ParkingLotTest, ASocketThatTurnsReadableUnparksItsSpot) {
  SocketPair p;
  TestSpot s;
  ASSERT_TRUE(lot_.park(s, p.ours, Clock::now() + 1h));
  EXPECT_TRUE(s.parked());
  EXPECT_EQ(lot_.size(), 1u);
  p.send("GET / HTTP/1.1\r\n");
  ASSERT_TRUE(run_until([&] { return !s.calls.empty(); }));
  EXPECT_EQ(s.calls, std::vector<Unpark>{Unpark::readable});
  EXPECT_FALSE(s.parked());
  EXPECT_EQ(lot_.size(), 0u);
}

TEST_F(ParkingLotTest, BytesThatCameBeforeParkingUnparkAtOnce) {
  SocketPair p;
  p.send("x");  // already waiting in the socket when the connection parks
  TestSpot s;
  ASSERT_TRUE(lot_.park(s, p.ours, Clock::now() + 1h));
  ASSERT_TRUE(run_until([&] { return !s.calls.empty(); }));
  EXPECT_EQ(s.calls, std::vector<Unpark>{Unpark::readable});
}

TEST_F(ParkingLotTest, ThePeerClosingUnparksTheSpot) {
  SocketPair p;
  TestSpot s;
  ASSERT_TRUE(lot_.park(s, p.ours, Clock::now() + 1h));
  p.close_theirs();
  ASSERT_TRUE(run_until([&] { return !s.calls.empty(); }));
  EXPECT_EQ(s.calls, std::vector<Unpark>{Unpark::readable});
}

TEST_F(ParkingLotTest, DeadlinesExpireInTheirOrderNotTheParkingOrder) {
  SocketPair a, b, c;
  TestSpot late, early, never;
  std::vector<TestSpot*> order;
  late.on_call = [&] { order.push_back(&late); };
  early.on_call = [&] { order.push_back(&early); };
  auto start = Clock::now();
  ASSERT_TRUE(lot_.park(late, a.ours, start + 80ms));
  ASSERT_TRUE(lot_.park(early, b.ours, start + 40ms));  // earlier than the one before it
  ASSERT_TRUE(lot_.park(never, c.ours, start + 1h));
  ASSERT_TRUE(run_until([&] { return order.size() == 2; }));
  EXPECT_GE(Clock::now() - start, 80ms);
  EXPECT_EQ(order, (std::vector<TestSpot*>{&early, &late}));
  EXPECT_EQ(early.calls, std::vector<Unpark>{Unpark::expired});
  EXPECT_EQ(late.calls, std::vector<Unpark>{Unpark::expired});
  EXPECT_TRUE(never.calls.empty());
  EXPECT_TRUE(never.parked());
  lot_.leave(never);
}

TEST_F(ParkingLotTest, ASpotThatLeftIsNotCalledWhenItsSocketTurnsReadable) {
  SocketPair left_pair, other_pair;
  TestSpot left, other;
  ASSERT_TRUE(lot_.park(left, left_pair.ours, Clock::now() + 1h));
  ASSERT_TRUE(lot_.park(other, other_pair.ours, Clock::now() + 1h));
  lot_.leave(left);
  EXPECT_FALSE(left.parked());
  left_pair.send("x");
  other_pair.send("y");  // reported by the same epoll set: once it is, so was the first
  ASSERT_TRUE(run_until([&] { return !other.calls.empty(); }));
  EXPECT_TRUE(left.calls.empty());
}

TEST_F(ParkingLotTest, UnparkAllClosesEachAndDropAllDropsEach) {
  SocketPair a, b;
  TestSpot s1, s2;
  ASSERT_TRUE(lot_.park(s1, a.ours, Clock::now() + 1h));
  ASSERT_TRUE(lot_.park(s2, b.ours, Clock::now() + 1h));
  lot_.unpark_all();
  EXPECT_EQ(s1.calls, std::vector<Unpark>{Unpark::closing});
  EXPECT_EQ(s2.calls, std::vector<Unpark>{Unpark::closing});
  EXPECT_EQ(lot_.size(), 0u);
  ASSERT_TRUE(lot_.park(s1, a.ours, Clock::now() + 1h));
  lot_.drop_all();
  EXPECT_EQ(s1.calls, (std::vector<Unpark>{Unpark::closing, Unpark::dropped}));
  EXPECT_FALSE(s1.parked());
}

TEST_F(ParkingLotTest, ASpotMayEndItselfWhileOthersWakeInTheSameBatch) {
  // H1Session's pattern: the parked connection owns itself and may end in
  // unparked(); the lot must not touch it afterwards.
  SocketPair a, b;
  auto* doomed = new TestSpot;
  doomed->on_call = [doomed] { delete doomed; };
  TestSpot survivor;
  ASSERT_TRUE(lot_.park(*doomed, a.ours, Clock::now() + 1h));
  ASSERT_TRUE(lot_.park(survivor, b.ours, Clock::now() + 1h));
  a.send("x");
  b.send("y");
  ASSERT_TRUE(run_until([&] { return !survivor.calls.empty(); }));
  EXPECT_EQ(lot_.size(), 0u);
}

TEST_F(ParkingLotTest, ASpotParksAgainAfterWaking) {
  SocketPair p;
  TestSpot s;
  ASSERT_TRUE(lot_.park(s, p.ours, Clock::now() + 1h));
  p.send("1");
  ASSERT_TRUE(run_until([&] { return s.calls.size() == 1; }));
  char buf[8];
  ASSERT_EQ(::read(p.ours, buf, sizeof buf), 1);
  ASSERT_TRUE(lot_.park(s, p.ours, Clock::now() + 1h));
  p.send("2");
  ASSERT_TRUE(run_until([&] { return s.calls.size() == 2; }));
  EXPECT_EQ(s.calls, (std::vector<Unpark>{Unpark::readable, Unpark::readable}));
}

TEST_F(ParkingLotTest, ParkingAClosedDescriptorIsRefused) {
  TestSpot s;
  EXPECT_FALSE(lot_.park(s, 1'000'000, Clock::now() + 1h));  // no such descriptor
  EXPECT_FALSE(s.parked());
  EXPECT_EQ(lot_.size(), 0u);
}

}  // namespace
}  // namespace ward::server
