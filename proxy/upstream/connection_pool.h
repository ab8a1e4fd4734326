#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "proxy/upstream/host_set.h"
#include "proxy/util/deadline.h"
#include "proxy/util/io_buffer.h"

namespace ward::upstream {

// One connection to an upstream server, owned by one worker.
struct UpstreamConnection {
  UpstreamConnection(const boost::asio::any_io_executor& ex, size_t buffer_size)
      : socket(ex), deadline(ex), buffer(buffer_size) {
    deadline.on_expire([this] {
      boost::system::error_code ignored;
      socket.cancel(ignored);
    });
  }
  ~UpstreamConnection() { deadline.stop(); }

  boost::asio::ip::tcp::socket socket;
  util::Deadline deadline;
  util::IoBuffer buffer;
  const HostStats* host = nullptr;  // identity of the server (pool key)
  std::chrono::steady_clock::time_point idle_since{};
  uint32_t requests = 0;  // requests served on this connection
};

// The idle keep-alive connections of one worker, per server (Envoy's
// thread-local pools): no lock, no sharing. A connection is reused LIFO (the
// warmest one) after a non-blocking peek shows the server has not closed it or
// sent anything unexpected; stale ones are dropped on the way.
class ConnectionPool {
 public:
  // An idle, live connection to `host`, or null.
  std::unique_ptr<UpstreamConnection> take(const HostStats* host);
  // Keeps `conn` for reuse, up to `keepalive` idle connections per server;
  // beyond that (or keepalive 0) it is closed.
  void put(std::unique_ptr<UpstreamConnection> conn, uint32_t keepalive);
  // Closes every idle connection (drain, shutdown).
  void clear() { idle_.clear(); }
  size_t idle_count() const;

  // Idle connections older than this are closed instead of reused: servers
  // commonly drop idle keep-alive connections after 60 s or more, and a
  // connection they are about to close is a wasted request and a retry.
  static constexpr std::chrono::seconds kMaxIdle{30};

 private:
  std::unordered_map<const HostStats*, std::vector<std::unique_ptr<UpstreamConnection>>> idle_;
};

}  // namespace ward::upstream
