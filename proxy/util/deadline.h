#pragma once

#include <array>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include "proxy/util/clock.h"

namespace ward::util {

// One timer per connection that bounds every wait on it ("timeouts on every
// wait"). Setting a deadline is cheap on the hot path: it stores a time and
// only touches the timer queue when no wait is armed or the new deadline is
// earlier than the armed one. When the armed wait fires early (the deadline
// moved later), it re-arms; when the deadline has passed it calls on_expire,
// which cancels the connection's pending I/O.
//
// Two lanes: a connection that reads and writes at the same time (the full-
// duplex request path: the request body goes up while the response comes
// down) bounds each direction on a lane of its own, so that one direction
// setting its deadline never moves the other's. The timer waits for the
// earlier of the two; either passing calls on_expire (which cancels every
// wait on the connection: a direction that timed out dooms the exchange).
// Code that waits on one thing at a time uses the main lane only.
//
// Not thread-safe: used on the connection's own thread only.
class Deadline {
 public:
  using Clock = std::chrono::steady_clock;
  enum class Lane : uint8_t { main = 0, second = 1 };

  // `ex`: an executor of the io_context the owner runs on.
  template <typename Executor>
  explicit Deadline(const Executor& ex)
      : io_(&static_cast<boost::asio::io_context&>(
            boost::asio::query(ex, boost::asio::execution::context))) {}
  // A wait that already completed sits in the executor's queue, where
  // cancelling the timer no longer reaches it; the handler then finds
  // the token empty and touches nothing.
  ~Deadline() { drop_timer(); }
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;

  // Called when a deadline passes; typically sets a flag and cancels the socket.
  void on_expire(std::function<void()> f) { on_expire_ = std::move(f); }

  // From the coarse clock (util/clock.h): passes no sooner than `d`, at
  // most two clock ticks later.
  void expires_after(Clock::duration d, Lane lane = Lane::main) {
    expires_at(coarse_now() + d, lane);
  }
  void expires_at(Clock::time_point t, Lane lane = Lane::main) {
    auto i = static_cast<size_t>(lane);
    deadline_[i] = t;
    expired_[i] = false;
    if (!armed_ || t < armed_at_) {
      arm(t);
    }
  }
  // No deadline on the main lane until the next expires_*; the armed wait,
  // if any, lapses. Whether it expired is still told by expired().
  void clear() { deadline_[0] = Clock::time_point::max(); }
  // The wait `lane` bounded is over: no deadline on it, and an expiry of
  // it is forgotten (it ended nothing that is still waiting).
  void reset(Lane lane) {
    auto i = static_cast<size_t>(lane);
    deadline_[i] = Clock::time_point::max();
    expired_[i] = false;
  }
  // A lane passed its deadline (and cancelled the connection) since that
  // lane was last set or reset.
  bool expired() const { return expired_[0] || expired_[1]; }
  bool expired(Lane lane) const { return expired_[static_cast<size_t>(lane)]; }
  // When `lane` passes (time_point::max() when it has no deadline).
  Clock::time_point expiry(Lane lane = Lane::main) const {
    return deadline_[static_cast<size_t>(lane)];
  }
  // The owner parks (H1Session::park): the armed wait, if any, is cancelled
  // so that no operation stays pending while it idles; the deadlines are
  // kept, and nothing fires until resume() arms a wait for them again.
  // The timer itself goes too (the next arm makes one again), and with it
  // the token: a parked connection holds neither.
  void suspend() {
    if (armed_) {
      armed_ = false;
      ++generation_;
    }
    drop_timer();
  }
  void resume() {
    auto next = earliest();
    if (!armed_ && next != Clock::time_point::max()) {
      arm(next);
    }
  }
  // Cancels the timer for good (the owner is closing); pending wait completes aborted.
  void stop() {
    deadline_.fill(Clock::time_point::max());
    on_expire_ = nullptr;
    drop_timer();
    armed_ = false;
  }

 private:
  Clock::time_point earliest() const { return std::min(deadline_[0], deadline_[1]); }

  void arm(Clock::time_point t) {
    armed_ = true;
    armed_at_ = t;
    ++generation_;
    if (!timer_) {
      timer_ = std::make_unique<boost::asio::steady_timer>(*io_);
    }
    timer_->expires_at(t);
    if (!self_) {
      self_ = std::make_shared<Deadline*>(this);
    }
    timer_->async_wait([self = self_, gen = generation_](const boost::system::error_code& ec) {
      Deadline* d = *self;
      if (ec || d == nullptr || gen != d->generation_) {
        return;  // superseded by a re-arm, stopped, or the owner is gone
      }
      d->fire();
    });
  }

  // The armed wait ran out: mark the lanes whose deadline passed, tell the
  // owner, and wait again for whatever deadline is left.
  void fire() {
    armed_ = false;
    const auto now = Clock::now();
    bool fired = false;
    for (size_t i = 0; i < deadline_.size(); ++i) {
      if (deadline_[i] != Clock::time_point::max() && now >= deadline_[i]) {
        expired_[i] = true;
        deadline_[i] = Clock::time_point::max();
        fired = true;
      }
    }
    if (fired && on_expire_) {
      on_expire_();
    }
    // The other lane's deadline, or one moved later, still needs a wait
    // (unless on_expire set a new deadline, which armed one already).
    resume();
  }

  // Destroying the timer cancels its wait, which completes aborted later
  // (its handler's token is emptied first, so it touches nothing).
  void drop_timer() {
    if (self_) {
      *self_ = nullptr;
      self_.reset();
    }
    timer_.reset();
  }

  boost::asio::io_context* io_;
  // Made by the first arm, dropped by suspend() and stop(): 120 bytes a
  // parked connection need not hold.
  std::unique_ptr<boost::asio::steady_timer> timer_;
  std::function<void()> on_expire_;
  std::array<Clock::time_point, 2> deadline_{Clock::time_point::max(), Clock::time_point::max()};
  Clock::time_point armed_at_{};
  uint64_t generation_ = 0;
  bool armed_ = false;
  std::array<bool, 2> expired_{false, false};
  // Points at this Deadline while it lives; shared with every pending wait.
  std::shared_ptr<Deadline*> self_;
};

}  // namespace ward::util
