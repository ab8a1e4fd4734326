#pragma once

// Active health checks (CONFIG.md, upstreams.*.health_check).
//
// One checker per process, on the main thread's io_context: a check costs a
// connection, so N workers must not multiply it by N. Each server of a
// checked upstream gets a loop of its own: connect (TLS too when the
// upstream has `tls: true`, verified as its traffic is), send
// `GET <path> HTTP/1.1` with `Connection: close`, read the response head,
// close. A status within expect_status passes; anything else fails: another
// status, a refused or timed-out connect, a failed handshake, bytes that are
// not an HTTP response, no head within `timeout`. Checks of one server never
// overlap: the next starts `interval` after the last one started, or at once
// when that one took longer.
//
// The verdict is HostStats::healthy, which the balancers read on every pick
// (Host::available). A server known at start counts healthy until
// unhealthy_threshold checks in a row fail; an unhealthy one returns after
// healthy_threshold passes in a row.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/config/config.h"
#include "proxy/tls/client_context.h"
#include "proxy/upstream/host_set.h"
#include "proxy/upstream/upstream_state.h"

namespace ward::upstream {

// Counts one server's check results in a row against its current verdict.
class HealthVerdict {
 public:
  HealthVerdict(bool healthy, uint32_t healthy_threshold, uint32_t unhealthy_threshold)
      : healthy_(healthy),
        healthy_threshold_(healthy_threshold),
        unhealthy_threshold_(unhealthy_threshold) {}

  // Records one check; true when the verdict flipped with it.
  bool record(bool passed);
  bool healthy() const { return healthy_; }
  // Results in a row that disagree with the verdict (0 after a flip).
  uint32_t streak() const { return streak_; }

 private:
  bool healthy_;
  uint32_t healthy_threshold_;
  uint32_t unhealthy_threshold_;
  uint32_t streak_ = 0;
};

// What the bytes a server has sent so far say about a check.
struct ProbeVerdict {
  enum class State { incomplete, passed, failed };
  State state = State::incomplete;
  std::string detail;  // "status 200", "status 503 (expected 200-399)", "not HTTP: ..."
};

// Judges the start of a check's response: the first final (non-1xx) head's
// status against hc.expect_status. Interim 1xx heads are skipped. A head
// over 16 KiB, or one the strict response parser refuses, fails.
ProbeVerdict judge_response(std::string_view received, const config::HealthCheck& hc);

// The check request for a server known as `host_header` (as configured:
// "app:8000", "127.0.0.1:9001", "[::1]:9001").
std::string probe_request(const config::HealthCheck& hc, std::string_view host_header);

// What a check reports, for logs and metrics (main thread).
struct HealthEvents {
  // Every check: passed or not, and the probe's detail.
  std::function<void(const std::string& upstream, const Host& host, bool passed,
                     const std::string& detail)>
      checked;
  // A verdict flip; `streak` checks in a row led to it.
  std::function<void(const std::string& upstream, const Host& host, bool healthy, uint32_t streak,
                     const std::string& detail)>
      changed;
};

class HealthChecker {
 public:
  HealthChecker(boost::asio::io_context& io, HealthEvents events);
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // Checks every server `state` publishes now, per upstream.health_check
  // (which must be set): starts a loop for each server it does not check
  // yet and ends the loops of servers no longer there. `client_tls`: the
  // upstream's TLS client context, null for plain upstreams. With
  // `join_after_check`, a server new to the checker is out of service until
  // its first passing check (servers added by DNS); without, it counts
  // healthy until checks say otherwise (servers known at start).
  void sync(const config::Upstream& upstream, const std::shared_ptr<UpstreamState>& state,
            const std::shared_ptr<const tls::ClientContext>& client_tls, bool join_after_check);
  // Ends the loops of every server of `upstream` (its checks are off or
  // change); its servers keep the verdict they had.
  void forget(const std::string& upstream);
  // How many servers are checked now (all upstreams).
  size_t size() const { return targets_.size(); }
  // Ends every loop: waits are cancelled, a check in flight is abandoned and
  // its verdict not recorded. Idempotent.
  void stop();

 private:
  struct Target;
  static boost::asio::awaitable<void> run(std::shared_ptr<Target> target);
  static boost::asio::awaitable<ProbeVerdict> probe(Target& target);

  // The first checks of servers in service spread over up to this much.
  static constexpr std::chrono::seconds kMaxFirstSpread{1};

  boost::asio::io_context& io_;
  std::shared_ptr<const HealthEvents> events_;
  std::vector<std::shared_ptr<Target>> targets_;
  std::minstd_rand rng_{std::random_device{}()};
};

}  // namespace ward::upstream
