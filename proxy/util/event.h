#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>

namespace ward::util {

// A wake-up for one coroutine at a time on one thread: wait() returns when
// notify() is called (before or during the wait) or when the timeout passes.
// A notification nobody waited for is kept for the next wait, so the
// check-then-wait pattern of a single-threaded loop cannot miss one. Every
// waiter re-checks its condition: wake-ups may be spurious.
class Event {
 public:
  template <typename Executor>
  explicit Event(const Executor& ex) : timer_(ex) {}

  // True when notified, false when the timeout passed first.
  boost::asio::awaitable<bool> wait(std::chrono::steady_clock::duration timeout) {
    if (pending_) {
      pending_ = false;
      co_return true;
    }
    timer_.expires_after(timeout);
    waiting_ = true;
    // Cancelled (notified) or expired: pending_ tells which.
    co_await timer_.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    waiting_ = false;
    bool notified = pending_;
    pending_ = false;
    co_return notified;
  }

  // Forgets a notification nobody took: the next wait starts afresh (an
  // object reused for another job; nobody may be waiting).
  void reset() { pending_ = false; }

  void notify() {
    pending_ = true;
    if (waiting_) {
      timer_.cancel();
    }
  }

 private:
  boost::asio::steady_timer timer_;
  bool pending_ = false;
  bool waiting_ = false;
};

}  // namespace ward::util
