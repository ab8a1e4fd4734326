#include "proxy/upstream/health_check.h"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>

#include "proxy/http/h1_parser.h"
#include "proxy/upstream/upstream_connection.h"

// Style note: GCC 12 miscompiles some coroutine shapes (a co_await inside a
// condition or a ternary, `co_return co_await`). Every co_await here is a
// plain statement or initializes a variable.

namespace ward::upstream {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

constexpr size_t kMaxHead = 16 * 1024;      // one response head
constexpr size_t kMaxReceived = 64 * 1024;  // interim heads and the final one
constexpr size_t kReadChunk = 4096;

ProbeVerdict failed(std::string detail) {
  return {ProbeVerdict::State::failed, std::move(detail)};
}

// The Host header of a check: the server as configured, so a server found
// by a DNS name is asked for that name ("app:8000"), not its address.
std::string host_header(const Host& h) {
  std::string host = h.host.find(':') != std::string::npos ? "[" + h.host + "]" : h.host;
  return host + ":" + std::to_string(h.endpoint.port());
}

}  // namespace

bool HealthVerdict::record(bool passed) {
  if (passed == healthy_) {
    streak_ = 0;
    return false;
  }
  ++streak_;
  if (streak_ < (healthy_ ? unhealthy_threshold_ : healthy_threshold_)) {
    return false;
  }
  healthy_ = !healthy_;
  streak_ = 0;
  return true;
}

ProbeVerdict judge_response(std::string_view received, const config::HealthCheck& hc) {
  http::ResponseHead head;
  size_t consumed = 0;
  http::ParseError e = http::first_final_response(received, kMaxHead, head, consumed);
  if (e.status == http::ParseStatus::incomplete) {
    if (received.size() > kMaxReceived) {
      return failed("no final response head in the first 64 KiB");
    }
    return {};
  }
  if (e.status == http::ParseStatus::header_too_large) {
    return failed("response head over 16 KiB");
  }
  if (e.status != http::ParseStatus::ok) {
    return failed(std::string("not a valid HTTP response: ") + e.reason);
  }
  std::string detail = "status " + std::to_string(head.status);
  if (head.status < hc.expect_status_min || head.status > hc.expect_status_max) {
    return failed(detail + " (expected " + hc.expect_status_text() + ")");
  }
  return {ProbeVerdict::State::passed, std::move(detail)};
}

std::string probe_request(const config::HealthCheck& hc, std::string_view host_header) {
  std::string r = "GET ";
  r += hc.path;
  r += " HTTP/1.1\r\nHost: ";
  r += host_header;
  r += "\r\nUser-Agent: ward-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n";
  return r;
}

// One server's check loop state. Owned jointly by the checker (to stop it)
// and the loop's coroutine frame (which may outlive the checker when the
// io_context is destroyed with the frame still suspended).
struct HealthChecker::Target {
  Target(asio::io_context& io, const config::Upstream& u, const Host& h,
         std::shared_ptr<const tls::ClientContext> t, std::shared_ptr<const HealthEvents> e)
      : upstream(u.name),
        hc(*u.health_check),
        host(h),
        client_tls(std::move(t)),
        events(std::move(e)),
        request(probe_request(hc, host_header(h))),
        verdict(h.stats->healthy.load(std::memory_order_relaxed), hc.healthy_threshold,
                hc.unhealthy_threshold),
        timer(io) {}

  std::string upstream;
  config::HealthCheck hc;
  Host host;
  std::shared_ptr<const tls::ClientContext> client_tls;
  std::shared_ptr<const HealthEvents> events;
  std::string request;
  HealthVerdict verdict;
  asio::steady_timer timer;
  UpstreamConnection* conn = nullptr;  // the check in flight, for stop()
  bool stopped = false;
  bool joining = false;                     // out until its first pass (added by DNS)
  std::chrono::nanoseconds first_delay{0};  // before the first check (see sync)

  // Ends the loop: the wait or the check in flight is cancelled.
  void halt() {
    stopped = true;
    timer.cancel();
    if (conn != nullptr) {
      conn->cancel();
    }
  }
};

HealthChecker::HealthChecker(asio::io_context& io, HealthEvents events)
    : io_(io), events_(std::make_shared<const HealthEvents>(std::move(events))) {}

HealthChecker::~HealthChecker() {
  stop();
}

void HealthChecker::sync(const config::Upstream& upstream,
                         const std::shared_ptr<UpstreamState>& state,
                         const std::shared_ptr<const tls::ClientContext>& client_tls,
                         bool join_after_check) {
  auto hosts = state->hosts();
  auto present = [&](const std::string& name) {
    return std::any_of(hosts->hosts.begin(), hosts->hosts.end(),
                       [&](const Host& h) { return h.name == name; });
  };
  std::erase_if(targets_, [&](const std::shared_ptr<Target>& t) {
    bool gone = t->upstream == upstream.name && !present(t->host.name);
    if (gone) {
      t->halt();
    }
    return gone;
  });
  for (const Host& host : hosts->hosts) {
    bool checked = std::any_of(targets_.begin(), targets_.end(), [&](const auto& t) {
      return t->upstream == upstream.name && t->host.name == host.name;
    });
    if (checked) {
      continue;
    }
    if (join_after_check) {
      host.stats->healthy.store(false, std::memory_order_relaxed);
    }
    auto target = std::make_shared<Target>(io_, upstream, host, client_tls, events_);
    if (join_after_check) {
      target->verdict = HealthVerdict(false, 1, target->hc.unhealthy_threshold);
      target->joining = true;
    } else {
      // A server already in service is checked first at a random point of
      // its first interval (at most kMaxFirstSpread in): at start and after
      // a reload, an upstream of hundreds of servers is not probed all in
      // the same millisecond, nor every interval after, since each loop
      // keeps its phase. A joining server is checked at once: it waits on
      // that check to take traffic.
      const auto spread = std::min<std::chrono::nanoseconds>(target->hc.interval, kMaxFirstSpread);
      if (spread.count() > 0) {
        std::uniform_int_distribution<int64_t> pick(0, spread.count() - 1);
        target->first_delay = std::chrono::nanoseconds(pick(rng_));
      }
    }
    targets_.push_back(target);
    asio::co_spawn(io_, run(std::move(target)), asio::detached);
  }
}

void HealthChecker::forget(const std::string& upstream) {
  std::erase_if(targets_, [&](const std::shared_ptr<Target>& t) {
    if (t->upstream != upstream) {
      return false;
    }
    t->halt();
    return true;
  });
}

void HealthChecker::stop() {
  for (const auto& t : targets_) {
    t->halt();
  }
  targets_.clear();
}

asio::awaitable<void> HealthChecker::run(std::shared_ptr<Target> t) {
  if (t->first_delay.count() > 0) {
    t->timer.expires_after(t->first_delay);
    auto [ec] = co_await t->timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) {
      co_return;  // stop()
    }
  }
  while (!t->stopped) {
    auto started = std::chrono::steady_clock::now();
    ProbeVerdict v = co_await probe(*t);
    if (t->stopped) {
      break;
    }
    const bool passed = v.state == ProbeVerdict::State::passed;
    if (t->events->checked) {
      t->events->checked(t->upstream, t->host, passed, v.detail);
    }
    const uint32_t streak = t->verdict.streak() + 1;
    if (t->verdict.record(passed)) {
      t->host.stats->healthy.store(t->verdict.healthy(), std::memory_order_relaxed);
      if (t->events->changed) {
        t->events->changed(t->upstream, t->host, t->verdict.healthy(), streak, v.detail);
      }
      if (t->joining) {
        // In service: from now on healthy_threshold applies, as to any server.
        t->joining = false;
        t->verdict = HealthVerdict(true, t->hc.healthy_threshold, t->hc.unhealthy_threshold);
      }
    }
    t->timer.expires_at(started + t->hc.interval);
    auto [ec] = co_await t->timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) {
      break;  // stop()
    }
  }
}

asio::awaitable<ProbeVerdict> HealthChecker::probe(Target& t) {
  UpstreamConnection conn(t.timer.get_executor(), 0);
  conn.deadline.expires_after(t.hc.timeout);
  t.conn = &conn;
  struct Clear {
    Target& t;
    ~Clear() { t.conn = nullptr; }
  } clear{t};

  std::string failure = co_await connect_to(conn, t.host, t.client_tls, nullptr);
  if (!failure.empty()) {
    co_return failed(std::move(failure));
  }
  auto timed_out = [&] {
    return "timed out after " + std::to_string(t.hc.timeout.count()) + " ms";
  };
  auto [wec, written] = co_await conn.write(asio::buffer(t.request));
  (void)written;
  if (wec) {
    co_return failed(conn.deadline.expired() ? timed_out() : "send failed: " + wec.message());
  }
  std::string received;
  char chunk[kReadChunk];
  while (true) {
    auto [ec, n] = co_await conn.read_some(asio::buffer(chunk));
    if (n > 0) {
      received.append(chunk, n);
      ProbeVerdict v = judge_response(received, t.hc);
      if (v.state != ProbeVerdict::State::incomplete) {
        co_return v;
      }
    }
    if (ec == asio::error::eof) {
      co_return failed(received.empty() ? "closed without answering"
                                        : "closed before the end of the response head");
    }
    if (ec) {
      co_return failed(conn.deadline.expired() ? timed_out() : "read failed: " + ec.message());
    }
  }
}

}  // namespace ward::upstream
