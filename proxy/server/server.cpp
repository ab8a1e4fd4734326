#include "proxy/server/server.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <csignal>
#include <cstdlib>

#include "proxy/admin/admin_server.h"
#include "proxy/config/config_json.h"
#include "proxy/config/reload.h"
#include "proxy/observe/access_log.h"
#include "proxy/observe/metrics.h"
#include "proxy/server/listen_socket.h"
#include "proxy/server/proxy_metrics.h"
#include "proxy/server/snapshot.h"
#include "proxy/server/tls_listeners.h"
#include "proxy/server/worker.h"
#include "proxy/upstream/dns.h"
#include "proxy/upstream/health_check.h"
#include "proxy/upstream/upstream_state.h"
#include "proxy/util/heap_trim.h"
#include "proxy/util/json.h"

namespace ward::server {

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

tcp::endpoint listen_endpoint(const config::Address& a) {
  if (a.host.empty()) {
    return {asio::ip::address_v6::any(), a.port};  // dual-stack, see open_listen_socket
  }
  return {asio::ip::make_address(a.host), a.port};
}

}  // namespace

struct Server::Impl {
  std::shared_ptr<const config::Config> config;
  std::shared_ptr<spdlog::logger> log;
  asio::io_context io{1};
  observe::Registry registry;
  ProxyMetrics metrics{registry};
  // The main thread's gauges of things a reload or a DNS answer can remove.
  observe::GaugeExport health_export{metrics.server_healthy, 0};
  observe::GaugeExport expiry_export{metrics.tls_certificate_expiry, 0};
  std::unique_ptr<observe::AccessLog> access_log;
  upstream::UpstreamRegistry upstreams;
  filters::FilterRegistry filter_registry;
  filters::RuntimeState filter_runtime;  // rate-limit buckets outlive snapshots
  std::shared_ptr<const Snapshot> snapshot;
  uint64_t generation = 1;
  std::atomic<uint32_t> connections{0};
  std::vector<std::unique_ptr<Worker>> workers;
  std::unique_ptr<admin::AdminServer> admin;
  asio::signal_set signals{io, SIGTERM, SIGINT, SIGHUP};
  asio::signal_set usr1{io, SIGUSR1};
  asio::steady_timer drain_timer{io};
  std::unique_ptr<TlsListeners> tls;
  asio::steady_timer ticket_timer{io};
  asio::steady_timer trim_timer{io};
  asio::steady_timer sweep_timer{io};
  util::TrimPolicy trim_policy;
  std::unique_ptr<upstream::HealthChecker> health;
  std::unique_ptr<upstream::DnsDiscovery> dns;
  Server::ConfigSource config_source;
  Clock::time_point drain_deadline;
  bool draining = false;
  int exit_code = 0;

  Impl(std::shared_ptr<const config::Config> c, std::shared_ptr<spdlog::logger> l)
      : config(std::move(c)), log(std::move(l)), registry(config->workers) {
    filters::register_builtin_filters(filter_registry);
  }
  // Every worker stops before any is destroyed: a running one may still
  // hand a connection to another (Worker::hand_off).
  ~Impl() {
    for (auto& w : workers) {
      w->stop_and_join();
    }
  }

  bool start();
  void bind_listeners();
  void start_admin();
  void wait_signals();
  void wait_usr1();
  bool build_tls();
  void schedule_ticket_rotation();
  void schedule_heap_trim();
  void start_health_checks();
  void start_dns();
  void export_health();
  void forget_departed_servers();
  void schedule_server_sweep();
  void reload_certificates();
  bool reload_tls(const config::Config& c);
  void reload_config();
  void restart_health_checks(const config::Config& before);
  void start_dns_loops(bool at_start);
  void begin_drain(const char* why);
  void poll_drain();
  void stop_all();
  admin::Readiness readiness() const;
  std::string upstreams_json() const;
};

bool Server::Impl::start() {
  try {
    access_log = std::make_unique<observe::AccessLog>(config->logging.access_log, config->workers);
  } catch (const std::exception& e) {
    log->error("access log: {}", e.what());
    return false;
  }
  try {
    snapshot = Snapshot::build(config, generation, upstreams,
                               FilterEnv{filter_registry, registry, filter_runtime});
  } catch (const std::exception& e) {
    log->error("{}", e.what());
    return false;
  }
  if (!build_tls()) {
    return false;
  }
  WorkerShared shared;
  shared.metrics = &metrics;
  shared.access_log = access_log.get();
  shared.connections = &connections;
  shared.log = log;
  for (uint32_t i = 0; i < config->workers; ++i) {
    workers.push_back(std::make_unique<Worker>(i, shared, snapshot));
  }
  try {
    bind_listeners();
    start_admin();
  } catch (const std::exception& e) {
    log->error("{}", e.what());
    return false;
  }
  std::vector<Worker*> peers;
  for (auto& w : workers) {
    peers.push_back(w.get());
  }
  for (auto& w : workers) {
    w->set_peers(peers);
    w->start();
  }
  wait_signals();
  wait_usr1();
  schedule_heap_trim();
  schedule_server_sweep();
  start_health_checks();
  start_dns();
  for (const auto& l : config->listeners) {
    log->info("listener {} on {}", l.name, l.address.text);
  }
  log->info("ward {} serving with {} worker(s); admin on {}", WARD_VERSION, workers.size(),
            config->admin.address.text);
  return true;
}

void Server::Impl::bind_listeners() {
  for (size_t index = 0; index < config->listeners.size(); ++index) {
    const auto& l = config->listeners[index];
    auto ep = listen_endpoint(l.address);
    try {
      // A plain bind first: with SO_REUSEPORT alone, a second ward started on
      // the same port by the same user would silently share its traffic.
      auto probe = open_listen_socket(io, ep, false);
      probe.close();
      uint16_t port = ep.port();
      for (auto& w : workers) {
        auto acc = open_listen_socket(w->io(), tcp::endpoint(ep.address(), port), true);
        if (port == 0) {
          port = acc.local_endpoint().port();  // port 0: every worker on the one picked
        }
        w->add_listener(ListenerInfo{l.name, l.redirect_https, tls->slot(index), l.proxy_protocol},
                        std::move(acc));
      }
    } catch (const boost::system::system_error& e) {
      throw std::runtime_error("listener " + l.name + ": cannot listen on " + l.address.text +
                               ": " + e.code().message());
    }
  }
}

void Server::Impl::start_admin() {
  admin::AdminSources sources;
  sources.version = WARD_VERSION;
  sources.readiness = [this] { return readiness(); };
  sources.metrics = [this] {
    metrics.access_log_dropped.set(0, {}, static_cast<int64_t>(access_log->dropped()));
    return registry.render();
  };
  sources.upstreams_json = [this] { return upstreams_json(); };
  sources.config_json = [this] { return config::to_json(*snapshot->config, snapshot->generation); };
  try {
    admin = std::make_unique<admin::AdminServer>(io, config->admin.address, std::move(sources));
  } catch (const boost::system::system_error& e) {
    throw std::runtime_error("admin: cannot listen on " + config->admin.address.text + ": " +
                             e.code().message());
  }
}

admin::Readiness Server::Impl::readiness() const {
  if (draining) {
    return {false, "draining"};
  }
  auto now_ms = upstream::steady_now_ms();
  for (const auto& state : snapshot->route_upstreams) {
    auto hosts = state->hosts();
    bool any = false;
    for (const auto& h : hosts->hosts) {
      any = any || h.available(now_ms);
    }
    if (!any) {
      return {false, "upstream " + state->name() + " has no healthy server"};
    }
  }
  return {true, ""};
}

std::string Server::Impl::upstreams_json() const {
  auto now_ms = upstream::steady_now_ms();
  std::string out = "{\"upstreams\":[";
  bool first_upstream = true;
  for (const auto& u : snapshot->config->upstreams) {
    if (!first_upstream) {
      out += ',';
    }
    first_upstream = false;
    out += "{\"name\":";
    util::json_string_append(out, u.name);
    out += ",\"servers\":[";
    auto state = upstreams.find(u.name);
    auto hosts = state ? state->hosts() : std::make_shared<const upstream::HostSet>();
    bool first = true;
    for (const auto& h : hosts->hosts) {
      if (!first) {
        out += ',';
      }
      first = false;
      const auto& s = *h.stats;
      out += "{\"address\":";
      util::json_string_append(out, h.name);
      out += ",\"weight\":" + std::to_string(h.weight);
      out += ",\"healthy\":";
      out += h.available(now_ms) ? "true" : "false";
      // Why not: the active check's verdict and the passive ejection left.
      out += ",\"health_check\":";
      out += !u.health_check                             ? "\"off\""
             : s.healthy.load(std::memory_order_relaxed) ? "\"healthy\""
                                                         : "\"unhealthy\"";
      int64_t until = s.ejected_until_ms.load(std::memory_order_relaxed);
      out += ",\"ejected_ms\":" + std::to_string(until > now_ms ? until - now_ms : 0);
      out += ",\"active_requests\":" + std::to_string(s.active.load(std::memory_order_relaxed));
      out += ",\"requests\":" + std::to_string(s.requests.load(std::memory_order_relaxed));
      out += ",\"failures\":" + std::to_string(s.failures.load(std::memory_order_relaxed));
      out += '}';
    }
    out += "]}";
  }
  out += "]}";
  return out;
}

void Server::Impl::wait_signals() {
  signals.async_wait([this](const boost::system::error_code& ec, int sig) {
    if (ec) {
      return;
    }
    if (sig == SIGHUP) {
      if (config_source) {
        reload_config();
      } else {
        reload_certificates();
      }
    } else if (sig == SIGINT && draining) {
      log->warn("second SIGINT: exiting at once");
      std::_Exit(130);
    } else {
      begin_drain(sig == SIGTERM ? "SIGTERM" : "SIGINT");
    }
    wait_signals();
  });
}

bool Server::Impl::build_tls() {
  TlsListeners::Problems problems;
  try {
    tls = TlsListeners::build(*config, problems);
  } catch (const std::exception& e) {
    log->error("tls: {}", e.what());
    return false;
  }
  for (const auto& w : problems.warnings) {
    log->warn("{}", w.to_string());
  }
  for (const auto& e : problems.errors) {
    log->error("{}", e.to_string());
  }
  if (!problems.errors.empty()) {
    return false;
  }
  tls->export_expiry(expiry_export);
  schedule_ticket_rotation();
  return true;
}

void Server::Impl::schedule_ticket_rotation() {
  ticket_timer.expires_at(tls->rotate_ticket_keys());
  ticket_timer.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) {
      schedule_ticket_rotation();
    }
  });
}

// Every 250 ms the main thread looks at the workers' connection churn; after
// a burst has died down it returns the freed heap to the kernel
// (util::TrimPolicy says why and when). After a look that saw no churn at
// all the next comes in 2 s: an idle ward wakes for this once in 2 s, not
// 4 times a second. The trim runs here, off the workers' loops, but it holds
// each arena's lock while it walks it, so a worker that allocates meanwhile
// waits: once per burst, for a few ms (after 9,800 TLS connections, 187
// madvise calls over 11 ms under strace).
void Server::Impl::schedule_heap_trim() {
  trim_timer.expires_after(trim_policy.idle() ? std::chrono::milliseconds(2000)
                                              : std::chrono::milliseconds(250));
  trim_timer.async_wait([this](const boost::system::error_code& ec) {
    if (ec) {
      return;
    }
    uint64_t churn = 0;
    for (const auto& w : workers) {
      churn += w->churn();
    }
    if (trim_policy.tick(churn)) {
      util::release_free_heap();
      metrics.heap_trims.inc(0, {});
    }
    schedule_heap_trim();
  });
}

// Active health checks run here, on the main thread: one checker per
// process, whatever the number of workers (upstream/health_check.h).
void Server::Impl::start_health_checks() {
  upstream::HealthEvents events;
  events.checked = [this](const std::string& u, const upstream::Host& host, bool passed,
                          const std::string& detail) {
    metrics.health_checks.inc(0, {u, host.name, passed ? "pass" : "fail"});
    if (!passed) {
      log->debug("upstream {}: health check of {} failed: {}", u, host.name, detail);
    }
  };
  events.changed = [this](const std::string& u, const upstream::Host& host, bool healthy,
                          uint32_t streak, const std::string& detail) {
    metrics.server_healthy.set(0, {u, host.name}, healthy ? 1 : 0);
    if (healthy) {
      log->info("upstream {}: server {} is healthy again ({} checks passed in a row)", u, host.name,
                streak);
    } else {
      log->warn("upstream {}: server {} is unhealthy after {} failed checks in a row: {}", u,
                host.name, streak, detail);
    }
  };
  health = std::make_unique<upstream::HealthChecker>(io, std::move(events));
  for (const auto& u : config->upstreams) {
    if (!u.health_check) {
      continue;
    }
    // Snapshot::build gave every upstream of the file its state.
    health->sync(u, upstreams.find(u.name), snapshot->upstream_tls(u.name), false);
  }
  export_health();
}

// ward_upstream_server_healthy for every server of every health-checked
// upstream, and none for a server that left (a reload, a DNS answer) or an
// upstream whose checks a reload turned off.
void Server::Impl::export_health() {
  for (const auto& u : config->upstreams) {
    if (!u.health_check) {
      continue;
    }
    for (const auto& h : upstreams.find(u.name)->hosts()->hosts) {
      bool healthy = h.stats->healthy.load(std::memory_order_relaxed);
      health_export.set({u.name, h.name}, healthy ? 1 : 0);
    }
  }
  health_export.finish();
}

// The per-server counters (ward_upstream_requests_total and the others
// drop_departed_servers names) of servers no upstream has any more leave
// /metrics: after a reload, after a DNS answer changed an upstream's
// servers, and once a minute for a series that a request in flight to such
// a server started again after it left. The same minute, the stats of
// servers that left go once nothing refers to them (workers bring their
// server lists up to date here and drop those of upstreams a reload
// removed, Worker::sync_upstreams; pooled connections go within
// ConnectionPool::kMaxIdle), and so do the states of those upstreams.
void Server::Impl::forget_departed_servers() {
  upstreams.forget_unconfigured(config->upstreams);
  upstreams.prune_stats();
  auto current = std::make_shared<ServerNames>();
  for (const auto& u : config->upstreams) {
    for (const auto& h : upstreams.find(u.name)->hosts()->hosts) {
      current->emplace(u.name, h.name);
    }
  }
  drop_departed_health_checks(metrics, *current);
  for (auto& w : workers) {
    w->forget_departed_servers(current);
  }
}

void Server::Impl::schedule_server_sweep() {
  sweep_timer.expires_after(std::chrono::minutes(1));
  sweep_timer.async_wait([this](const boost::system::error_code& ec) {
    if (ec) {
      return;
    }
    forget_departed_servers();
    schedule_server_sweep();
  });
}

// Upstreams with DNS names get their servers here, on the main thread
// (upstream/dns.h); a new server set also goes to the health checker.
void Server::Impl::start_dns() {
  upstream::DnsEvents events;
  events.looked_up = [this](const std::string& u, const std::string& name, bool ok) {
    metrics.dns_lookups.inc(0, {u, name, ok ? "ok" : "fail"});
  };
  events.resolved = [this](const std::string& u, const std::string& name,
                           const std::vector<asio::ip::address>& addresses) {
    std::string list;
    for (const auto& a : addresses) {
      list += (list.empty() ? "" : ", ") + a.to_string();
    }
    log->info("upstream {}: {} resolves to {}", u, name, list);
  };
  events.failed = [this](const std::string& u, const std::string& name, const std::string& error,
                         size_t kept) {
    log->warn("upstream {}: cannot resolve {}: {}; {}", u, name, error,
              kept == 0 ? std::string("no server from it yet")
                        : "keeping its " + std::to_string(kept) + " last known server(s)");
  };
  events.published = [this](const config::Upstream& u, bool first) {
    if (u.health_check) {
      // Servers from the first lookups count as known at start; later ones
      // join after their first passing check (CONFIG.md).
      health->sync(u, upstreams.find(u.name), snapshot->upstream_tls(u.name), !first);
      export_health();
    }
    if (!first) {
      forget_departed_servers();
    }
  };
  dns = std::make_unique<upstream::DnsDiscovery>(io, nullptr, std::move(events),
                                                 &upstreams.resolved_names);
  start_dns_loops(true);
}

void Server::Impl::start_dns_loops(bool at_start) {
  for (const auto& u : config->upstreams) {
    if (upstream::DnsDiscovery::needed(u)) {
      dns->watch(u, upstreams.find(u.name), at_start);
    }
  }
}

// SIGHUP (CONFIG.md): the file is read and checked as `ward check` does; a
// file with errors, or one that changes what only a restart can (listening
// sockets, workers, admin, log files), leaves the running config in place.
// Otherwise a new snapshot goes to the workers: a request in flight finishes
// on the snapshot it started with, an open connection's next request gets
// the new one, and nothing is closed. Server health, ejections, rate-limit
// buckets, pooled connections and metrics carry over (they are keyed by
// name outside the snapshot).
void Server::Impl::reload_config() {
  const std::string& path = config->source_path;
  auto fail = [&](const std::string& why) {
    log->error("SIGHUP: {}; running configuration kept (generation {})", why, generation);
    metrics.config_reload_failures.inc(0, {});
  };
  config::LoadResult result = config_source();
  if (!result.ok()) {
    for (const auto& e : result.errors) {
      log->error("{}", e.to_string());
    }
    fail(std::to_string(result.errors.size()) + " error(s) in " + path);
    return;
  }
  auto changes = config::restart_changes(*config, *result.config);
  if (!changes.empty()) {
    for (const auto& c : changes) {
      log->error("SIGHUP: {}", c);
    }
    fail("these settings need a restart of ward");
    return;
  }
  std::shared_ptr<const Snapshot> next;
  try {
    next = Snapshot::build(result.config, generation + 1, upstreams,
                           FilterEnv{filter_registry, registry, filter_runtime});
  } catch (const std::exception& e) {
    fail(e.what());
    return;
  }
  // The listeners' TLS settings and certificates, from the new file (checked
  // above, so a failure here is a file changed since).
  reload_tls(*result.config);

  auto before = config;
  config = result.config;
  snapshot = next;
  generation = next->generation;
  for (auto& w : workers) {
    w->publish(next);
  }
  log->set_level(spdlog::level::from_str(config->logging.level));
  restart_health_checks(*before);
  dns->stop();
  start_dns_loops(false);
  forget_departed_servers();
  metrics.config_reloads.inc(0, {});
  log->info("SIGHUP: configuration reloaded from {} (generation {})", path, generation);
}

// After a reload: checks end for upstreams that lost theirs (their servers
// return to service), restart for those whose settings changed (keeping
// each server's verdict), and pick up servers the reload added, which join
// after their first passing check.
void Server::Impl::restart_health_checks(const config::Config& before) {
  for (const auto& old : before.upstreams) {
    const config::Upstream* now = config->find_upstream(old.name);
    if (old.health_check && (!now || !now->health_check)) {
      health->forget(old.name);
      for (const auto& h : upstreams.find(old.name)->hosts()->hosts) {
        h.stats->healthy.store(true, std::memory_order_relaxed);
      }
    }
  }
  for (const auto& u : config->upstreams) {
    if (!u.health_check) {
      continue;
    }
    const config::Upstream* old = before.find_upstream(u.name);
    bool same = old && old->health_check && *old->health_check == *u.health_check &&
                old->tls == u.tls && old->tls_ca == u.tls_ca &&
                old->tls_server_name == u.tls_server_name;
    if (!same) {
      health->forget(u.name);  // new settings: loops start again, verdicts kept
    }
    health->sync(u, upstreams.find(u.name), snapshot->upstream_tls(u.name), same);
  }
  export_health();
}

// Certificates renewed on disk (certbot) are served to new handshakes; open
// connections keep theirs. A certificate that does not load leaves its
// listener on the current ones.
void Server::Impl::reload_certificates() {
  bool ok = reload_tls(*config);
  log->info("SIGHUP: certificates re-read{}", ok ? "" : " (with errors)");
}

// The TLS listeners' contexts from `c`'s settings, certificates read again;
// false when one did not load (that listener keeps its current ones).
bool Server::Impl::reload_tls(const config::Config& c) {
  auto problems = tls->reload(c);
  for (const auto& w : problems.warnings) {
    log->warn("{}", w.to_string());
  }
  for (const auto& e : problems.errors) {
    log->error("certificate reload: {}; the listener keeps its current certificates",
               e.to_string());
  }
  tls->export_expiry(expiry_export);
  return problems.errors.empty();
}

void Server::Impl::wait_usr1() {
  usr1.async_wait([this](const boost::system::error_code& ec, int) {
    if (ec) {
      return;
    }
    log->info("SIGUSR1: reopening log files");
    access_log->reopen();
    wait_usr1();
  });
}

void Server::Impl::begin_drain(const char* why) {
  if (draining) {
    return;
  }
  draining = true;
  log->info("{}: draining (up to {} ms)", why, config->limits.drain_timeout.count());
  drain_deadline = Clock::now() + config->limits.drain_timeout;
  for (auto& w : workers) {
    w->drain();
  }
  poll_drain();
}

void Server::Impl::poll_drain() {
  size_t open = 0;
  for (auto& w : workers) {
    open += w->open_sessions();
  }
  if (open == 0 || Clock::now() >= drain_deadline) {
    if (open > 0) {
      log->warn("drain timeout: closing {} connection(s) still open", open);
    }
    stop_all();
    return;
  }
  drain_timer.expires_after(std::chrono::milliseconds(20));
  drain_timer.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) {
      poll_drain();
    }
  });
}

void Server::Impl::stop_all() {
  for (auto& w : workers) {
    w->stop_and_join();
  }
  workers.clear();
  if (admin) {
    admin->stop();
  }
  signals.cancel();
  usr1.cancel();
  if (dns) {
    dns->stop();
  }
  if (health) {
    health->stop();
  }
  if (access_log) {
    access_log->flush();
  }
  log->info("stopped");
  io.stop();
}

Server::Server(std::shared_ptr<const config::Config> config, std::shared_ptr<spdlog::logger> log)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(log))) {}

Server::~Server() = default;

void Server::set_config_source(ConfigSource source) {
  impl_->config_source = std::move(source);
}

int Server::run() {
  // Writes to a closed client socket must be errors, not a process kill.
  std::signal(SIGPIPE, SIG_IGN);
  if (!impl_->start()) {
    for (auto& w : impl_->workers) {
      w->stop_and_join();
    }
    return 1;
  }
  impl_->io.run();
  return impl_->exit_code;
}

}  // namespace ward::server
