#pragma once

// DNS upstream servers (CONFIG.md: a server address that is a DNS name is
// re-resolved every dns_refresh; every A/AAAA record is a server). What
// docker compose --scale and Kubernetes headless Services need: the set of
// servers follows the name.
//
// One resolver loop per upstream that has a DNS name, on the main thread:
// resolve each name (the system resolver: /etc/hosts, resolv.conf, and
// their timeouts), build the upstream's servers from the IP entries and the
// answers (build_host_set), publish them when they changed, wait
// dns_refresh, again. A name that fails to resolve, or resolves to
// nothing, keeps the servers it had: a DNS outage does not empty an
// upstream that was working. Workers see a new HostSet on their next
// request (UpstreamState's version), so a lookup never delays one.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "proxy/config/config.h"
#include "proxy/upstream/name_lookup.h"
#include "proxy/upstream/upstream_state.h"

namespace ward::upstream {

// Looks up the A and AAAA records of a name; injectable for tests.
using Resolver = std::function<boost::asio::awaitable<Resolution>(std::string name)>;

// The system resolver (look_up_name in name_lookup.h).
boost::asio::awaitable<Resolution> resolve_system(std::string name);

// What the loops report (main thread).
struct DnsEvents {
  // Every lookup, answered with addresses or not.
  std::function<void(const std::string& upstream, const std::string& name, bool ok)> looked_up;
  // The addresses of `name` changed (also the first answer).
  std::function<void(const std::string& upstream, const std::string& name,
                     const std::vector<boost::asio::ip::address>& addresses)>
      resolved;
  // `name` failed to resolve; once per run of identical failures.
  std::function<void(const std::string& upstream, const std::string& name, const std::string& error,
                     size_t kept)>
      failed;
  // A new server set of `upstream` is published. `first`: from the first
  // round of lookups after start (its servers count as known at start).
  std::function<void(const config::Upstream& upstream, bool first)> published;
};

class DnsDiscovery {
 public:
  // `cache`: each name's last good answer, read when a loop starts and
  // written after each round, so a loop started again (a reload) begins
  // where the last one was; may be null.
  DnsDiscovery(boost::asio::io_context& io, Resolver resolve, DnsEvents events,
               ResolvedNames* cache = nullptr);
  ~DnsDiscovery();
  DnsDiscovery(const DnsDiscovery&) = delete;
  DnsDiscovery& operator=(const DnsDiscovery&) = delete;

  // True when `upstream` has a server that is a DNS name.
  static bool needed(const config::Upstream& upstream);
  // Starts the loop of `upstream` (needed() must be true); the first round
  // of lookups starts at once. `at_start`: its first round's servers count
  // as known at start (DnsEvents::published's `first`).
  void watch(const config::Upstream& upstream, std::shared_ptr<UpstreamState> state,
             bool at_start = true);
  // Ends every loop; a lookup in flight is abandoned. Idempotent.
  void stop();

 private:
  struct Target;
  static boost::asio::awaitable<void> run(std::shared_ptr<Target> target);

  boost::asio::io_context& io_;
  Resolver resolve_;
  std::shared_ptr<const DnsEvents> events_;
  ResolvedNames* cache_;
  std::vector<std::shared_ptr<Target>> targets_;
};

}  // namespace ward::upstream
