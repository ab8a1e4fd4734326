#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>

#include "proxy/config/config.h"

namespace ward::admin {

struct Readiness {
  bool ready = true;
  std::string reason;  // "draining", "upstream backend has no healthy server", ...
};

// What the admin endpoints show; each callback runs on the admin thread.
struct AdminSources {
  std::string version;
  std::function<Readiness()> readiness;
  std::function<std::string()> metrics;         // Prometheus text
  std::function<std::string()> upstreams_json;  // JSON document
  std::function<std::string()> config_json;     // JSON document, secrets redacted
};

// The operator endpoints on a plain-HTTP listener (CONFIG.md `admin:`):
//   GET /healthz   200 {"status":"healthy","version":"..."}
//   GET /readyz    200 {"status":"ready"} or 503 {"status":"unavailable","reason":"..."}
//   GET /metrics   200 text/plain; version=0.0.4
//   GET /upstreams 200 application/json
//   GET /config    200 application/json
// Anything else 404 (JSON error body); a method other than GET/HEAD 405.
// Small bounded heads (8 KiB), a 10 s timeout on every read and write.
//
// Thread-safety: `ioc` is run by one thread (the admin thread); stop() and the
// destructor run on that thread or while `ioc` is not running. A callback in
// AdminSources left empty: readiness counts as ready, metrics as an empty
// body, the JSON documents as {}; a callback that throws gives a 500.
class AdminServer {
 public:
  // Binds at once; throws boost::system::system_error when it cannot.
  AdminServer(boost::asio::io_context& ioc, const config::Address& address, AdminSources sources);
  ~AdminServer();
  uint16_t port() const;  // the bound port (address port 0 picks one)
  void stop();            // closes the acceptor and open admin connections

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace ward::admin
