#pragma once

#include <spdlog/logger.h>

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "proxy/config/config.h"
#include "proxy/observe/access_log.h"
#include "proxy/server/parking_lot.h"
#include "proxy/server/proxy_metrics.h"
#include "proxy/server/snapshot.h"
#include "proxy/tls/server_contexts.h"
#include "proxy/upstream/balancer.h"
#include "proxy/upstream/connection_pool.h"
#include "proxy/upstream/redis_client.h"
#include "proxy/util/intrusive_list.h"

namespace ward::server {

class H1Session;
// The link of an H1Session in its worker's list of sessions (drain walks it).
struct SessionListTag;

// What every worker shares, owned by the Server and alive longer than any
// worker. Everything here is thread-safe by construction (see each type).
struct WorkerShared {
  ProxyMetrics* metrics = nullptr;
  observe::AccessLog* access_log = nullptr;      // null: access log off
  std::atomic<uint32_t>* connections = nullptr;  // open downstream connections, process-wide
  std::shared_ptr<spdlog::logger> log;
};

// The listener as a session sees it; copied from config when bound.
struct ListenerInfo {
  std::string name;
  std::optional<uint16_t> redirect_https;
  std::shared_ptr<tls::ServerContextsSlot> tls;  // null: plain HTTP
  bool proxy_protocol = false;                   // a PROXY v1/v2 header comes first
};

// A worker's view of one upstream: the HostSet it last fetched and its own
// balancer. Only the worker's thread touches it. It holds the state it is
// keyed by, so that address cannot be another upstream's while it lives.
struct WorkerUpstream {
  std::shared_ptr<const upstream::UpstreamState> state;
  std::shared_ptr<const upstream::HostSet> hosts;
  uint64_t version = 0;
  std::unique_ptr<upstream::Balancer> balancer;
  config::Balance balance = config::Balance::round_robin;

  // Fetches the state's server list when it changed since the last fetch
  // (an acquire load when it did not).
  void refresh() {
    if (!hosts || version != state->version()) {
      hosts = state->hosts();
      version = hosts->version;
    }
  }
};

// One thread, one io_context, its own SO_REUSEPORT acceptor per listener, its
// own upstream pools. A connection lives and dies on one worker.
//
// Which worker: the kernel spreads new connections over the SO_REUSEPORT
// acceptors by a hash of their addresses, which is even only on average (64
// keep-alive connections over 2 workers split 36/28 as often as not, and
// the busier worker sets everyone's p99). So a worker that accepts a
// connection while another has fewer open hands it over to the one with the
// fewest (hand_off), as HAProxy's threads and Envoy's exact_balance do.
//
// The io_context runs without any of Asio's locks (one thread uses it), so no
// other thread may post to it or stop it: the main thread reaches a running
// worker only through its mailbox (publish, drain, stop_and_join).
class Worker {
 public:
  Worker(size_t index, WorkerShared shared, std::shared_ptr<const Snapshot> snapshot);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  size_t index() const { return index_; }
  boost::asio::io_context& io() { return *io_; }
  const WorkerShared& shared() const { return shared_; }

  // Main thread, before start(): takes an acceptor already bound on this
  // worker's io_context.
  void add_listener(ListenerInfo info, boost::asio::ip::tcp::acceptor acceptor);
  // Main thread, before start(): every worker of the server, this one
  // included, each with the same listeners in the same order (hand-offs
  // name a listener by its index).
  void set_peers(std::vector<Worker*> peers) { peers_ = std::move(peers); }
  void start();
  // Main thread: stop the loop and join (after drain or for a fast exit).
  void stop_and_join();

  // Main thread: publish a new snapshot (applied on the worker's thread).
  void publish(std::shared_ptr<const Snapshot> snapshot);
  // Main thread: drops this worker's metric series of servers not in
  // `current` (drop_departed_servers), on the worker's thread.
  void forget_departed_servers(std::shared_ptr<const ServerNames> current);
  // Main thread: stop accepting, close idle connections, let busy ones finish.
  void drain();
  // Any thread: open connections, and those handed over to this worker
  // that it has not taken up yet.
  size_t open_sessions() const {
    return open_sessions_.load(std::memory_order_acquire) +
           incoming_.load(std::memory_order_acquire);
  }
  // Any thread: connections opened plus connections closed so far (the
  // main thread's heap trimming watches it, util::TrimPolicy).
  uint64_t churn() const { return churn_.load(std::memory_order_relaxed); }

  // Worker thread only:
  const std::shared_ptr<const Snapshot>& snapshot() const { return snapshot_; }
  bool draining() const { return draining_; }
  // The worker's view of `state`, made on first use. The reference is valid
  // until the worker next runs what the main thread sent (a reload drops
  // the views of upstreams no route uses any more): do not keep it across
  // a co_await.
  WorkerUpstream& upstream(const std::shared_ptr<upstream::UpstreamState>& state,
                           const config::Upstream& config);
  upstream::ConnectionPool& pool() { return pool_; }
  // The worker's client for a Redis store (rate_limit `store:`), made on
  // first use and kept across reloads: one connection per worker and server.
  // The reference stays valid until ~Worker.
  struct RedisStore {
    std::unique_ptr<upstream::RedisClient> client;
    std::string failing;  // the error last logged; "" while calls succeed
  };
  RedisStore& redis(const store::RedisAddress& address);
  // Counts a call to that store in ward_store_calls_total and
  // _duration_seconds (`seconds`); logs a failure once per run of the same
  // error, and the first success after failures.
  void note_redis_result(RedisStore& store, const upstream::RedisClient::Result& result,
                         double seconds);
  ParkingLot& parking() { return *parking_; }
  void register_session(H1Session& s);
  void unregister_session(H1Session& s);

 private:
  struct ListenerRuntime {
    const ListenerInfo& info;
    boost::asio::ip::tcp::acceptor acceptor;
    size_t index;                   // in listeners_, the same on every worker
    boost::asio::ip::tcp protocol;  // v4 or v6: what a handed-over descriptor is
  };
  boost::asio::awaitable<void> accept_loop(ListenerRuntime& listener);
  // The peer with the fewest open connections, when it has fewer than this
  // worker; else null.
  Worker* lighter_peer() const;
  // Worker thread: gives a connection just accepted on listener `index` to
  // `to`, through its mailbox.
  void hand_off(Worker& to, size_t index, boost::asio::ip::tcp::socket socket,
                const boost::asio::ip::tcp::endpoint& peer);
  // Worker thread: starts a session for a connection another worker handed
  // over (the descriptor's owner closes it if this never runs).
  void adopt(size_t index, int fd, const boost::asio::ip::tcp::endpoint& peer);

  // Any thread: runs f on the worker's thread, after what was sent before.
  void send(std::function<void()> f);
  // Worker thread: runs what send() queued, each time the eventfd wakes it.
  boost::asio::awaitable<void> mailbox_loop();
  // Worker thread: drops the views of upstreams no route of snapshot_ uses
  // (a reload removed them) and brings the others' server lists up to date,
  // so neither keeps the stats of servers that left (an upstream without
  // requests would otherwise hold its old list until its next request).
  void sync_upstreams();
  // Worker thread: ConnectionPool::sweep every kSweepInterval until drain.
  boost::asio::awaitable<void> pool_sweep_loop();

  size_t index_;
  WorkerShared shared_;
  // Sessions refer to these until they die, which may be as late as the
  // io_context's destruction: declared before io_ so they outlive it.
  std::vector<std::unique_ptr<ListenerInfo>> listener_infos_;
  // Declared first and reset first in ~Worker: its pending handlers own the
  // sessions, whose destructors still use the members below.
  std::unique_ptr<boost::asio::io_context> io_;
  std::shared_ptr<const Snapshot> snapshot_;
  // The mailbox: a queue under a mutex and an eventfd the worker's reactor
  // watches. Reset before io_ in ~Worker (an I/O object of io_'s).
  std::mutex mailbox_mu_;
  std::vector<std::function<void()>> mailbox_;
  int wake_fd_ = -1;  // owned by wake_
  std::unique_ptr<boost::asio::posix::stream_descriptor> wake_;
  // Idle keep-alive connections (an I/O object of io_'s too). ~Worker drops
  // the connections parked in it, then resets it, before io_.
  std::unique_ptr<ParkingLot> parking_;
  std::vector<std::unique_ptr<ListenerRuntime>> listeners_;
  std::unordered_map<const upstream::UpstreamState*, WorkerUpstream> upstreams_;
  upstream::ConnectionPool pool_;
  // By address and credentials. Reset before io_ in ~Worker (I/O objects).
  std::unordered_map<std::string, RedisStore> redis_;
  util::IntrusiveList<H1Session, SessionListTag> sessions_;
  std::atomic<size_t> open_sessions_{0};
  std::atomic<size_t> incoming_{0};  // handed over, still in the mailbox
  std::atomic<uint64_t> churn_{0};
  std::vector<Worker*> peers_;
  std::string index_label_;  // "0": the worker label of ward_worker_connections
  bool draining_ = false;
  uint64_t seed_;
  std::thread thread_;
};

}  // namespace ward::server
