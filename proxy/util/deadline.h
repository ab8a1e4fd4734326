#pragma once

#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>

namespace ward::util {

// One timer per connection that bounds every wait on it ("timeouts on every
// wait"). Setting a deadline is cheap on the hot path: it stores a time and
// only touches the timer queue when no wait is armed or the new deadline is
// earlier than the armed one. When the armed wait fires early (the deadline
// moved later), it re-arms; when the deadline has passed it calls on_expire,
// which cancels the connection's pending I/O.
//
// Not thread-safe: used on the connection's own thread only.
class Deadline {
 public:
  using Clock = std::chrono::steady_clock;

  template <typename Executor>
  explicit Deadline(const Executor& ex) : timer_(ex) {}

  // Called when a deadline passes; typically sets a flag and cancels the socket.
  void on_expire(std::function<void()> f) { on_expire_ = std::move(f); }

  void expires_after(Clock::duration d) { expires_at(Clock::now() + d); }
  void expires_at(Clock::time_point t) {
    deadline_ = t;
    expired_ = false;
    if (!armed_ || t < armed_at_) {
      arm(t);
    }
  }
  // No deadline until the next expires_*; the armed wait, if any, lapses.
  void clear() { deadline_ = Clock::time_point::max(); }
  bool expired() const { return expired_; }
  // Cancels the timer for good (the owner is closing); pending wait completes aborted.
  void stop() {
    deadline_ = Clock::time_point::max();
    on_expire_ = nullptr;
    timer_.cancel();
    armed_ = false;
  }

 private:
  void arm(Clock::time_point t) {
    armed_ = true;
    armed_at_ = t;
    ++generation_;
    timer_.expires_at(t);
    timer_.async_wait([this, gen = generation_](const boost::system::error_code& ec) {
      if (ec || gen != generation_) {
        return;  // superseded by a re-arm, or stopped
      }
      armed_ = false;
      if (deadline_ == Clock::time_point::max()) {
        return;
      }
      if (Clock::now() >= deadline_) {
        expired_ = true;
        deadline_ = Clock::time_point::max();
        if (on_expire_) {
          on_expire_();
        }
      } else {
        arm(deadline_);
      }
    });
  }

  boost::asio::steady_timer timer_;
  std::function<void()> on_expire_;
  Clock::time_point deadline_ = Clock::time_point::max();
  Clock::time_point armed_at_{};
  uint64_t generation_ = 0;
  bool armed_ = false;
  bool expired_ = false;
};

}  // namespace ward::util
