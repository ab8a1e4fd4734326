#pragma once

// The TLS side of the process's listeners: one ticket key ring for all of
// them (resumption works whatever worker or listener context a reconnect
// lands on), one ServerContextsSlot per TLS listener, certificate reload on
// SIGHUP and the certificate expiry gauge. Main thread only, except the
// slots, which workers read (ServerContextsSlot::current is locked).

#include <chrono>
#include <memory>
#include <vector>

#include "proxy/config/config.h"
#include "proxy/config/loader.h"
#include "proxy/observe/metrics.h"
#include "proxy/tls/server_contexts.h"
#include "proxy/tls/ticket_key_ring.h"

namespace ward::server {

class TlsListeners {
 public:
  struct Problems {
    std::vector<config::ConfigError> errors;
    std::vector<config::ConfigError> warnings;
  };

  // Builds the contexts of every TLS listener of `config` (reading every
  // certificate). Errors mean the config cannot serve TLS.
  static std::unique_ptr<TlsListeners> build(const config::Config& config, Problems& problems);
  // `ward check`: the same reading, nothing kept.
  static Problems check(const config::Config& config);

  // The slot of listener `index` (config order); null for a plain listener.
  std::shared_ptr<tls::ServerContextsSlot> slot(size_t index) const { return slots_[index]; }
  // SIGHUP: re-reads every certificate; a listener whose files do not load
  // keeps serving its current ones.
  Problems reload(const config::Config& config);
  // Timer: rotates session ticket keys when due; returns when to call again.
  std::chrono::steady_clock::time_point rotate_ticket_keys();
  // ward_tls_certificate_expiry_seconds for the certificates served now; a
  // certificate no listener serves any more leaves the metric.
  void export_expiry(observe::GaugeExport& expiry) const;

 private:
  std::shared_ptr<tls::TicketKeyRing> ring_;
  std::vector<std::shared_ptr<tls::ServerContextsSlot>> slots_;  // parallel to listeners
};

}  // namespace ward::server
