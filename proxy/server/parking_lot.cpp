#include "proxy/server/parking_lot.h"

#include <sys/epoll.h>

#include <array>
#include <boost/asio/bind_allocator.hpp>
#include <cerrno>
#include <system_error>

#include "proxy/util/exact_allocator.h"

namespace ward::server {

namespace asio = boost::asio;

namespace {

int make_epoll() {
  int fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) {
    throw std::system_error(errno, std::generic_category(), "epoll_create1 (parking lot)");
  }
  return fd;
}

}  // namespace

ParkingLot::ParkingLot(asio::io_context& io) : epfd_(make_epoll()), watch_(io, epfd_), timer_(io) {}

// Runs after the worker's loop stopped (Worker's destructor), when no
// handler can run any more: the pending waits are destroyed with the
// io_context. drop_all() has emptied the list.
ParkingLot::~ParkingLot() = default;

bool ParkingLot::park(Spot& spot, int fd, Clock::time_point expiry) {
  epoll_event ev{};
  // Level-triggered: bytes that came before the registration are reported
  // at once. RDHUP: a peer that closes wakes its connection, which then
  // reads the end and closes too, rather than idling until its deadline.
  // One-shot: a report disables the entry, so waking costs no syscall, and
  // the next park re-enables it (MOD) rather than adding it again. A
  // disabled entry goes with its socket when that closes.
  ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
  ev.data.ptr = &spot;
  int rc = -1;
  if (spot.registered_ && spot.fd_ == fd) {
    rc = ::epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev);
  }
  if (rc != 0) {
    rc = ::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
  }
  if (rc != 0) {
    spot.registered_ = false;
    return false;
  }
  spot.registered_ = true;
  spot.fd_ = fd;
  spot.expiry_ = expiry;
  Spot* after = spots_.back();
  while (after != nullptr && after->expiry_ > expiry) {
    after = spots_.prev(*after);
  }
  Spot* before = after == nullptr ? spots_.front() : spots_.next(*after);
  if (before == nullptr) {
    spots_.push_back(spot);
  } else {
    spots_.insert_before(*before, spot);
  }
  watch();
  arm_timer();
  return true;
}

void ParkingLot::leave(Spot& spot) {
  if (!spot.parked()) {
    return;
  }
  // Still enabled (its socket did not report): out of the set, so that it
  // can neither report later nor outlive the spot.
  epoll_event ev{};  // ignored by DEL; non-null for kernels before 2.6.9
  ::epoll_ctl(epfd_, EPOLL_CTL_DEL, spot.fd_, &ev);
  spot.registered_ = false;
  spot.unlink();
  // The timer may now wait for a deadline nobody has: it lapses harmlessly.
}

void ParkingLot::unpark_all() {
  unpark_all(Unpark::closing);
}

void ParkingLot::drop_all() {
  unpark_all(Unpark::dropped);
}

void ParkingLot::unpark_all(Unpark why) {
  while (Spot* s = spots_.front()) {
    leave(*s);
    s->unparked(why);
  }
}

void ParkingLot::watch() {
  if (watching_ || spots_.empty()) {
    return;
  }
  watching_ = true;
  watch_.async_wait(asio::posix::descriptor_base::wait_read,
                    asio::bind_allocator(util::ExactAllocator<void>(),
                                         [this](const boost::system::error_code& ec) {
                                           if (ec == asio::error::operation_aborted) {
                                             return;  // the lot is going away
                                           }
                                           watching_ = false;
                                           on_readable();
                                         }));
}

void ParkingLot::on_readable() {
  std::array<epoll_event, 64> events;
  for (;;) {
    int n = ::epoll_wait(epfd_, events.data(), static_cast<int>(events.size()), 0);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    for (int i = 0; i < n; ++i) {
      // Every spot reported is still parked: a spot leaves the set (DEL)
      // whenever it leaves the list otherwise, and nothing else runs in
      // between. The report disabled its entry (one-shot): no DEL.
      auto* s = static_cast<Spot*>(events[static_cast<size_t>(i)].data.ptr);
      s->unlink();
      s->unparked(Unpark::readable);
    }
    if (n < static_cast<int>(events.size())) {
      break;
    }
  }
  watch();
}

void ParkingLot::arm_timer() {
  Spot* first = spots_.front();
  if (first == nullptr || (timing_ && timer_at_ <= first->expiry_)) {
    return;  // nothing to wait for, or the pending wait ends no later
  }
  timing_ = true;
  timer_at_ = first->expiry_;
  timer_.expires_at(timer_at_);  // a later wait pending ends aborted
  timer_.async_wait(asio::bind_allocator(util::ExactAllocator<void>(),
                                         [this](const boost::system::error_code& ec) {
                                           if (ec == asio::error::operation_aborted) {
                                             return;  // re-armed earlier, or going away
                                           }
                                           timing_ = false;
                                           on_timer();
                                         }));
}

void ParkingLot::on_timer() {
  const auto now = Clock::now();
  while (Spot* s = spots_.front()) {
    if (s->expiry_ > now) {
      break;
    }
    leave(*s);
    s->unparked(Unpark::expired);
  }
  arm_timer();
}

}  // namespace ward::server
