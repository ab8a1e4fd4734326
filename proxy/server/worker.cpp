#include "proxy/server/worker.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <memory>
#include <string>
#include <system_error>
#include <utility>

#include "proxy/server/h1_session.h"
#include "proxy/util/recv_op.h"

namespace ward::server {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {
constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
}

Worker::Worker(size_t index, WorkerShared shared, std::shared_ptr<const Snapshot> snapshot)
    : index_(index),
      shared_(std::move(shared)),
      // One thread runs this io_context and only it touches it: other
      // threads go through the mailbox. So Asio's locks can all go: the
      // reactor's per-socket ones (about 1.5% of a request's instructions,
      // callgrind h1-small) and the scheduler's (about 3%).
      io_(std::make_unique<asio::io_context>(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE)),
      snapshot_(std::move(snapshot)),
      index_label_(std::to_string(index)),
      seed_(0x9E3779B97F4A7C15ULL * (index + 1)) {
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    throw std::system_error(errno, std::generic_category(), "eventfd");
  }
  wake_ = std::make_unique<asio::posix::stream_descriptor>(*io_, wake_fd_);
  parking_ = std::make_unique<ParkingLot>(*io_);
}

Worker::~Worker() {
  if (thread_.joinable()) {
    stop_and_join();
  }
  listeners_.clear();
  pool_.clear();
  // The loop has stopped: the parked connections (which own themselves)
  // end here, with no I/O, while everything they use is still alive.
  parking_->drop_all();
  parking_.reset();
  redis_.clear();
  wake_.reset();
  // Destroys every pending handler, and with them the sessions they own.
  io_.reset();
}

void Worker::add_listener(ListenerInfo info, tcp::acceptor acceptor) {
  listener_infos_.push_back(std::make_unique<ListenerInfo>(std::move(info)));
  auto protocol = acceptor.local_endpoint().protocol();
  listeners_.push_back(std::make_unique<ListenerRuntime>(
      ListenerRuntime{*listener_infos_.back(), std::move(acceptor), listeners_.size(), protocol}));
}

void Worker::start() {
  // Spawned before the thread starts: the thread's creation orders these
  // unlocked queue writes before its first read.
  asio::co_spawn(*io_, mailbox_loop(), asio::detached);
  asio::co_spawn(*io_, pool_sweep_loop(), asio::detached);
  for (auto& l : listeners_) {
    asio::co_spawn(*io_, accept_loop(*l), asio::detached);
  }
  thread_ = std::thread([this] {
    auto guard = asio::make_work_guard(*io_);
    io_->run();
  });
}

void Worker::stop_and_join() {
  if (!thread_.joinable()) {
    io_->stop();  // never started: no other thread uses io_
    return;
  }
  send([this] { io_->stop(); });
  thread_.join();
}

void Worker::send(std::function<void()> f) {
  {
    std::lock_guard lock(mailbox_mu_);
    mailbox_.push_back(std::move(f));
  }
  // Adds 1 to the eventfd's counter, which makes it readable. Cannot block
  // or fail short of 2^64 - 1 unread wake-ups.
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
}

asio::awaitable<void> Worker::mailbox_loop() {
  std::vector<std::function<void()>> batch;
  for (;;) {
    auto [ec] = co_await wake_->async_wait(asio::posix::descriptor_base::wait_read, kNoThrow);
    if (ec) {
      co_return;  // the worker is being destroyed
    }
    uint64_t count = 0;
    [[maybe_unused]] ssize_t n = ::read(wake_fd_, &count, sizeof count);  // back to 0
    {
      std::lock_guard lock(mailbox_mu_);
      batch.swap(mailbox_);
    }
    for (auto& f : batch) {
      f();
    }
    batch.clear();
  }
}

void Worker::publish(std::shared_ptr<const Snapshot> snapshot) {
  send([this, s = std::move(snapshot)]() mutable {
    snapshot_ = std::move(s);
    sync_upstreams();
  });
}

void Worker::forget_departed_servers(std::shared_ptr<const ServerNames> current) {
  send([this, current = std::move(current)] {
    sync_upstreams();
    drop_departed_servers(*shared_.metrics, index_, *current);
  });
}

void Worker::sync_upstreams() {
  const auto& routed = snapshot_->route_upstreams;
  std::erase_if(upstreams_, [&](const auto& entry) {
    return std::find_if(routed.begin(), routed.end(), [&](const auto& state) {
             return state.get() == entry.first;
           }) == routed.end();
  });
  for (auto& entry : upstreams_) {
    entry.second.refresh();
  }
}

void Worker::drain() {
  send([this] {
    draining_ = true;
    for (auto& l : listeners_) {
      boost::system::error_code ignored;
      l->acceptor.close(ignored);
    }
    pool_.clear();
    // Parked connections wake to close, as a drained idle connection does.
    parking_->unpark_all();
    // Copy: on_drain may end a session, which unregisters it.
    std::vector<H1Session*> sessions;
    for (H1Session* s = sessions_.front(); s != nullptr; s = sessions_.next(*s)) {
      sessions.push_back(s);
    }
    for (auto* s : sessions) {
      s->on_drain();
    }
  });
}

WorkerUpstream& Worker::upstream(const std::shared_ptr<upstream::UpstreamState>& state,
                                 const config::Upstream& config) {
  auto& wu = upstreams_[state.get()];
  if (!wu.state) {
    wu.state = state;
  }
  wu.refresh();
  if (!wu.balancer || wu.balance != config.balance) {
    wu.balancer = upstream::make_balancer(config.balance, seed_++);
    wu.balance = config.balance;
  }
  return wu;
}

Worker::RedisStore& Worker::redis(const store::RedisAddress& address) {
  std::string key = address.display;
  key += '\n';
  key += address.user;
  key += '\n';
  key += address.password;
  auto& entry = redis_[key];
  if (!entry.client) {
    entry.client = std::make_unique<upstream::RedisClient>(io_->get_executor(), address);
  }
  return entry;
}

void Worker::note_redis_result(RedisStore& entry, const upstream::RedisClient::Result& result,
                               double seconds) {
  const store::RedisAddress& address = entry.client->address();
  // NOSCRIPT is routine (the caller sends the script itself next); any
  // other error reply means the store did not do the work.
  const bool error_reply = result.ok && result.reply.is_error() &&
                           !std::string_view(result.reply.str).starts_with("NOSCRIPT");
  std::string_view outcome = "ok";
  if (error_reply) {
    outcome = "error_reply";
  } else if (!result.ok) {
    // RedisClient's errors: "timeout", "overloaded", "unavailable: <why>".
    std::string_view e = result.error;
    outcome = e == "timeout" || e == "overloaded" ? e : std::string_view("unavailable");
  }
  shared_.metrics->store_calls.inc(index_, {address.display, outcome});
  shared_.metrics->store_call_duration.observe(index_, {address.display}, seconds);
  if (error_reply) {
    std::string why = "error reply: " + result.reply.str.substr(0, 200);
    if (entry.failing != why) {
      shared_.log->warn("store {}: {} (worker {})", address.display, why, index_);
      entry.failing = std::move(why);
    }
    return;
  }
  if (result.ok) {
    if (!entry.failing.empty()) {
      shared_.log->info("store {}: answering again (worker {})", address.display, index_);
      entry.failing.clear();
    }
    return;
  }
  if (entry.failing != result.error) {
    shared_.log->warn("store {}: {} (worker {}); requests that need it pass unlimited",
                      address.display, result.error, index_);
    entry.failing = result.error;
  }
}

void Worker::register_session(H1Session& s) {
  sessions_.push_back(s);
  open_sessions_.fetch_add(1, std::memory_order_release);
  churn_.fetch_add(1, std::memory_order_relaxed);
  shared_.metrics->worker_connections.add(index_, {index_label_}, 1);
}

void Worker::unregister_session(H1Session& s) {
  static_cast<util::ListHook<SessionListTag>&>(s).unlink();
  open_sessions_.fetch_sub(1, std::memory_order_release);
  churn_.fetch_add(1, std::memory_order_relaxed);
  shared_.metrics->worker_connections.add(index_, {index_label_}, -1);
}

Worker* Worker::lighter_peer() const {
  if (peers_.size() < 2) {
    return nullptr;
  }
  Worker* best = nullptr;
  size_t fewest = open_sessions();
  for (Worker* w : peers_) {
    size_t n = w->open_sessions();
    if (w != this && n < fewest) {
      best = w;
      fewest = n;
    }
  }
  return best;
}

namespace {

// A descriptor between two workers: closed if the receiver never takes it
// (its loop stopped with the hand-off still in the mailbox).
struct HandedFd {
  int fd;
  explicit HandedFd(int f) : fd(f) {}
  HandedFd(const HandedFd&) = delete;
  HandedFd& operator=(const HandedFd&) = delete;
  ~HandedFd() {
    if (fd >= 0) {
      ::close(fd);
    }
  }
  int take() { return std::exchange(fd, -1); }
};

}  // namespace

void Worker::hand_off(Worker& to, size_t index, tcp::socket socket, const tcp::endpoint& peer) {
  boost::system::error_code ec;
  int fd = socket.release(ec);
  if (ec) {
    return;  // the socket is closed with `socket`
  }
  to.incoming_.fetch_add(1, std::memory_order_acq_rel);
  // std::function needs a copyable callable: the descriptor goes in a
  // shared_ptr, whose last copy closes it unless adopt() took it.
  to.send([&to, index, peer, held = std::make_shared<HandedFd>(fd)] {
    to.adopt(index, held->take(), peer);
  });
}

void Worker::adopt(size_t index, int fd, const tcp::endpoint& peer) {
  incoming_.fetch_sub(1, std::memory_order_acq_rel);
  ListenerRuntime& listener = *listeners_.at(index);
  boost::system::error_code ec;
  tcp::socket socket(*io_);
  socket.assign(listener.protocol, fd, ec);
  if (ec) {
    ::close(fd);
    shared_.log->warn("listener {}: could not take a connection from another worker: {}",
                      listener.info.name, ec.message());
    return;
  }
  util::note_sole_descriptor(socket);  // the sender released its descriptor to us
  std::make_shared<H1Session>(*this, listener.info, std::move(socket), peer)->start();
}

asio::awaitable<void> Worker::pool_sweep_loop() {
  asio::steady_timer timer(*io_);
  while (!draining_) {
    timer.expires_after(upstream::ConnectionPool::kSweepInterval);
    auto [ec] = co_await timer.async_wait(kNoThrow);
    if (ec || draining_) {
      co_return;
    }
    pool_.sweep();
  }
}

asio::awaitable<void> Worker::accept_loop(ListenerRuntime& listener) {
  asio::steady_timer pause(*io_);
  tcp::endpoint peer;
  auto& metrics = *shared_.metrics;
  for (;;) {
    // max_connections: over it, leave new connections in the kernel backlog
    // (CONFIG.md) instead of accepting and closing them.
    while (!draining_ && shared_.connections->load(std::memory_order_relaxed) >=
                             snapshot_->config->limits.max_connections) {
      pause.expires_after(std::chrono::milliseconds(10));
      co_await pause.async_wait(kNoThrow);
    }
    if (draining_ || !listener.acceptor.is_open()) {
      co_return;
    }
    // The peer's address comes with accept(2): no getpeername(2) later.
    auto [ec, socket] = co_await listener.acceptor.async_accept(peer, kNoThrow);
    if (ec) {
      if (ec == asio::error::operation_aborted || !listener.acceptor.is_open()) {
        co_return;
      }
      // EMFILE/ENFILE/ENOBUFS: back off instead of spinning on a full table.
      shared_.log->warn("listener {}: accept failed: {}", listener.info.name, ec.message());
      pause.expires_after(std::chrono::milliseconds(50));
      co_await pause.async_wait(kNoThrow);
      continue;
    }
    metrics.connections_total.inc(index_, {listener.info.name});
    // Its own descriptor, never dup()ed: the close needs no epoll_ctl(2).
    util::note_sole_descriptor(socket);
    if (Worker* to = lighter_peer()) {
      hand_off(*to, listener.index, std::move(socket), peer);
      continue;
    }
    auto session = std::make_shared<H1Session>(*this, listener.info, std::move(socket), peer);
    session->start();
  }
}

}  // namespace ward::server
