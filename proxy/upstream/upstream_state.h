#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <boost/asio/ip/address.hpp>

#include "proxy/config/config.h"
#include "proxy/upstream/host_set.h"

namespace ward::upstream {

// The live server list of one upstream, shared by every worker and kept
// across reloads (keyed by upstream name in UpstreamRegistry).
//
// Workers read version() on every request (an acquire load of a read-mostly
// cache line) and fetch hosts() only when it changed, so publishing a new
// HostSet never makes a worker take the mutex on its steady-state path.
class UpstreamState {
 public:
  explicit UpstreamState(std::string name) : name_(std::move(name)) {}

  const std::string& name() const { return name_; }
  uint64_t version() const { return version_.load(std::memory_order_acquire); }
  std::shared_ptr<const HostSet> hosts() const {
    std::lock_guard lock(mu_);  // guards hosts_ (publish vs. fetch)
    return hosts_;
  }
  void publish(std::shared_ptr<HostSet> set);
  // Publishes `set` unless it names the same servers with the same weights,
  // in the same order, as the current one; true when it did.
  bool publish_if_changed(std::shared_ptr<HostSet> set);

  // Stats of a server by address name; created on first use and kept while
  // anything refers to them, so a reload or a DNS change does not reset the
  // counters, health and ejection of a server that stays.
  std::shared_ptr<HostStats> stats_for(const std::string& server);
  // Forgets the stats nothing else refers to any more: no published or older
  // server list a worker still holds, no pooled connection or TLS session,
  // no health check. Those are of servers that left (a reload, a pod gone
  // from a DNS answer); without this each one ever seen stayed for the
  // process's life. A server that comes back later starts afresh. Returns
  // how many it forgot.
  size_t prune_stats();
  size_t stats_count() const;

 private:
  std::string name_;
  mutable std::mutex mu_;  // guards hosts_ and stats_
  std::shared_ptr<const HostSet> hosts_ = std::make_shared<HostSet>();
  std::map<std::string, std::shared_ptr<HostStats>> stats_;
  std::atomic<uint64_t> version_{0};
};

// The servers of `upstream` in file order: each IP server as written, and
// for each DNS name one server per address `resolved` holds for it (none
// while it has not resolved), named "10.0.0.5:8000" / "[fd00::5]:8000" and
// verified (upstream TLS) against the name. A server that two entries give
// is listed once, at the first. Stats come from `state`, so a server keeps
// its counters, health and pooled connections across resolutions.
using ResolvedNames = std::map<std::string, std::vector<boost::asio::ip::address>>;
std::shared_ptr<HostSet> build_host_set(const config::Upstream& upstream,
                                        const ResolvedNames& resolved, UpstreamState& state);

// Owns the UpstreamState of every upstream configured in this process (and
// of one a reload removed, until forget_unconfigured). Main thread only (load
// and reload); workers hold shared_ptrs.
class UpstreamRegistry {
 public:
  std::shared_ptr<UpstreamState> get_or_create(const std::string& name);
  // Null when `name` is not configured: never was, or forget_unconfigured
  // dropped it after a reload removed it.
  std::shared_ptr<UpstreamState> find(const std::string& name) const;
  // UpstreamState::prune_stats of every upstream; how many stats it forgot.
  size_t prune_stats();
  // Forgets the upstreams `configured` no longer names, once nothing else
  // holds their state (a worker's view or older snapshot, a health check or
  // DNS loop still ending), and the last answers of DNS names none of
  // `configured` uses: without this, every upstream and name a reload ever
  // removed stayed for the process's life. An upstream a later reload brings
  // back starts afresh. Returns how many upstreams it forgot.
  size_t forget_unconfigured(const std::vector<config::Upstream>& configured);

  // Publishes the servers of `upstream` (build_host_set: its IP literals,
  // and for its DNS names their last answers in resolved_names) when they
  // differ from what is published. A reload that keeps a DNS name keeps its
  // servers this way until the next lookup.
  void apply_static(const config::Upstream& upstream);

  // The last good answer of every DNS name looked up (upstream/dns.h keeps
  // it); main thread only.
  ResolvedNames resolved_names;

 private:
  std::map<std::string, std::shared_ptr<UpstreamState>> states_;
};

}  // namespace ward::upstream
