#include "proxy/server/tls_listeners.h"

#include <algorithm>

namespace ward::server {

namespace {

using Clock = std::chrono::steady_clock;

void append(std::vector<config::ConfigError>& to, const std::vector<config::ConfigError>& from) {
  to.insert(to.end(), from.begin(), from.end());
}

}  // namespace

std::unique_ptr<TlsListeners> TlsListeners::build(const config::Config& config,
                                                  Problems& problems) {
  auto out = std::make_unique<TlsListeners>();
  out->ring_ = std::make_shared<tls::TicketKeyRing>(Clock::now());
  auto now = std::chrono::system_clock::now();
  for (const auto& l : config.listeners) {
    if (!l.tls) {
      out->slots_.push_back(nullptr);
      continue;
    }
    auto ring = l.tls->session_tickets ? out->ring_ : nullptr;
    auto built = tls::ServerContexts::build(l, ring, now);
    append(problems.errors, built.errors);
    append(problems.warnings, built.warnings);
    out->slots_.push_back(
        built.ok() ? std::make_shared<tls::ServerContextsSlot>(built.contexts, ring) : nullptr);
  }
  return out;
}

TlsListeners::Problems TlsListeners::check(const config::Config& config) {
  Problems problems;
  build(config, problems);
  return problems;
}

TlsListeners::Problems TlsListeners::reload(const config::Config& config) {
  Problems problems;
  auto now = std::chrono::system_clock::now();
  for (size_t i = 0; i < config.listeners.size() && i < slots_.size(); ++i) {
    if (slots_[i]) {
      auto result = slots_[i]->reload(config.listeners[i], now);
      append(problems.errors, result.errors);
      append(problems.warnings, result.warnings);
    }
  }
  return problems;
}

Clock::time_point TlsListeners::rotate_ticket_keys() {
  ring_->rotate(Clock::now());
  // At least once a minute: a suspended machine wakes up to a late rotation.
  return std::min(ring_->next_rotation(), Clock::now() + std::chrono::minutes(1));
}

void TlsListeners::export_expiry(observe::GaugeExport& expiry) const {
  for (const auto& slot : slots_) {
    if (!slot) {
      continue;
    }
    auto current = slot->current();
    for (const auto& cert : current->certificates()) {
      expiry.set({current->listener_name(), cert.cert_path}, cert.not_after);
    }
  }
  expiry.finish();
}

}  // namespace ward::server
