#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstddef>

#include "proxy/util/intrusive_list.h"

namespace ward::server {

// Where a worker keeps its idle keep-alive connections (H1Session::park):
// one epoll set of their sockets and one timer for the whole worker, so that
// a parked connection has no Asio operation pending at all. A socket wait
// and a deadline wait per connection would cost two operations of ~200
// bytes each, for as long as it idles; here it costs a list link and an
// entry in the kernel's epoll set (kernel memory, as nginx's one per
// connection is).
//
// The lot's epoll set is watched by one wait on the worker's reactor. When
// it reports a socket readable (a request, or the peer closing), the lot
// takes the connection out and calls unparked(readable). Its idle deadline
// is kept in a list ordered by deadline; the timer waits for the earliest,
// then calls unparked(expired) for each connection whose deadline passed.
// The list is appended to at the back and stays ordered because every
// connection of a worker parks with the same idle timeout; a deadline that
// is earlier than the last one's is inserted in its place (a walk from the
// back).
//
// Worker thread only. The lot owns nothing: a parked connection keeps
// itself alive (H1Session holds a reference to itself while parked).
class ParkingLot {
 public:
  using Clock = std::chrono::steady_clock;
  enum class Unpark {
    readable,  // the socket has bytes or an end to read
    expired,   // the connection's deadline passed
    closing,   // the worker is draining (unpark_all)
    dropped,   // the worker is going away (drop_all): no I/O may start
  };

  struct Tag;
  class Spot : public util::ListHook<Tag> {
   public:
    bool parked() const { return linked(); }

   protected:
    ~Spot() = default;
    // Called once the lot has let go of the spot; may end the owner.
    virtual void unparked(Unpark why) = 0;

   private:
    friend class ParkingLot;
    Clock::time_point expiry_{};
    int fd_ = -1;
    bool registered_ = false;  // fd_ is in the lot's epoll set (perhaps disabled)
  };

  explicit ParkingLot(boost::asio::io_context& io);
  ~ParkingLot();
  ParkingLot(const ParkingLot&) = delete;
  ParkingLot& operator=(const ParkingLot&) = delete;

  // Parks `spot` until `fd` is readable or `expiry` passes. False when the
  // kernel refused (epoll_ctl): the caller waits some other way.
  bool park(Spot& spot, int fd, Clock::time_point expiry);
  // Takes `spot` out without calling it: its owner woke it some other way.
  void leave(Spot& spot);
  // Unparks every spot with Unpark::closing (drain).
  void unpark_all();
  // Unparks every spot with Unpark::dropped (the worker's teardown, its
  // loop stopped).
  void drop_all();
  size_t size() const { return spots_.size(); }

 private:
  void unpark_all(Unpark why);
  void watch();
  void on_readable();
  void arm_timer();
  void on_timer();

  int epfd_ = -1;  // owned by watch_
  boost::asio::posix::stream_descriptor watch_;
  boost::asio::steady_timer timer_;
  util::IntrusiveList<Spot, Tag> spots_;  // by expiry, earliest first
  bool watching_ = false;                 // a wait on watch_ is pending
  bool timing_ = false;                   // a wait on timer_ is pending, for timer_at_
  Clock::time_point timer_at_{};
};

}  // namespace ward::server
