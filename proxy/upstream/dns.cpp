#include "proxy/upstream/dns.h"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <set>

// Style note: GCC 12 miscompiles some coroutine shapes (a co_await inside a
// condition or a ternary, `co_return co_await`). Every co_await here is a
// plain statement or initializes a variable.

namespace ward::upstream {

namespace asio = boost::asio;

asio::awaitable<Resolution> resolve_system(std::string name) {
  auto executor = co_await asio::this_coro::executor;
  // Not cancelled by stop(): a loop that stopped ignores the answer, and
  // nothing at exit waits for the lookup's thread.
  asio::posix::stream_descriptor wait(executor);
  Resolution r = co_await look_up_name(wait, std::move(name));
  co_return r;
}

struct DnsDiscovery::Target {
  Target(asio::io_context& io, const config::Upstream& u, std::shared_ptr<UpstreamState> s,
         Resolver r, std::shared_ptr<const DnsEvents> e)
      : upstream(u), state(std::move(s)), resolve(std::move(r)), events(std::move(e)), timer(io) {
    for (const auto& server : upstream.servers) {
      if (!server.address.host_is_ip &&
          std::find(names.begin(), names.end(), server.address.host) == names.end()) {
        names.push_back(server.address.host);
      }
    }
  }

  config::Upstream upstream;
  std::shared_ptr<UpstreamState> state;
  Resolver resolve;
  std::shared_ptr<const DnsEvents> events;
  asio::steady_timer timer;
  std::vector<std::string> names;             // the DNS names, once each, in file order
  ResolvedNames last;                         // each name's last good answer
  std::map<std::string, std::string> errors;  // names failing now, and why
  ResolvedNames* cache = nullptr;             // DnsDiscovery's, shared by the loops
  bool first = true;                          // the next round counts as at start
  bool stopped = false;
};

DnsDiscovery::DnsDiscovery(asio::io_context& io, Resolver resolve, DnsEvents events,
                           ResolvedNames* cache)
    : io_(io),
      resolve_(resolve ? std::move(resolve) : Resolver(&resolve_system)),
      events_(std::make_shared<const DnsEvents>(std::move(events))),
      cache_(cache) {}

DnsDiscovery::~DnsDiscovery() {
  stop();
}

bool DnsDiscovery::needed(const config::Upstream& upstream) {
  return std::any_of(upstream.servers.begin(), upstream.servers.end(),
                     [](const config::ServerConfig& s) { return !s.address.host_is_ip; });
}

void DnsDiscovery::watch(const config::Upstream& upstream, std::shared_ptr<UpstreamState> state,
                         bool at_start) {
  auto target = std::make_shared<Target>(io_, upstream, std::move(state), resolve_, events_);
  target->cache = cache_;
  target->first = at_start;
  if (cache_ != nullptr) {
    for (const auto& name : target->names) {
      if (auto it = cache_->find(name); it != cache_->end()) {
        target->last[name] = it->second;
      }
    }
  }
  targets_.push_back(target);
  asio::co_spawn(io_, run(std::move(target)), asio::detached);
}

void DnsDiscovery::stop() {
  for (const auto& t : targets_) {
    t->stopped = true;
    t->timer.cancel();
  }
  targets_.clear();
}

asio::awaitable<void> DnsDiscovery::run(std::shared_ptr<Target> t) {
  while (!t->stopped) {
    for (const std::string& name : t->names) {
      Resolution r = co_await t->resolve(name);
      if (t->stopped) {
        co_return;
      }
      std::sort(r.addresses.begin(), r.addresses.end());
      r.addresses.erase(std::unique(r.addresses.begin(), r.addresses.end()), r.addresses.end());
      if (r.error.empty() && r.addresses.empty()) {
        r.error = "no addresses";
      }
      if (t->events->looked_up) {
        t->events->looked_up(t->upstream.name, name, r.error.empty());
      }
      if (!r.error.empty()) {
        auto it = t->errors.find(name);
        bool news = it == t->errors.end() || it->second != r.error;
        t->errors[name] = r.error;
        if (news && t->events->failed) {
          auto kept = t->last.find(name);
          t->events->failed(t->upstream.name, name, r.error,
                            kept == t->last.end() ? 0 : kept->second.size());
        }
        continue;
      }
      bool recovered = t->errors.erase(name) > 0;
      auto& known = t->last[name];
      if (known != r.addresses || recovered) {
        known = std::move(r.addresses);
        if (t->events->resolved) {
          t->events->resolved(t->upstream.name, name, known);
        }
      }
    }
    if (t->cache != nullptr) {
      for (const auto& [name, addresses] : t->last) {
        (*t->cache)[name] = addresses;
      }
    }
    if (t->state->publish_if_changed(build_host_set(t->upstream, t->last, *t->state)) &&
        t->events->published) {
      t->events->published(t->upstream, t->first);
    }
    t->first = false;
    t->timer.expires_after(t->upstream.dns_refresh);
    auto [ec] = co_await t->timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) {
      co_return;  // stop()
    }
  }
}

}  // namespace ward::upstream
