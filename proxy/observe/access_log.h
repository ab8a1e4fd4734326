#pragma once

// The access log: one line per request, formatted on the worker, written by a
// background thread so a slow disk never stalls a worker.
//
// Each worker (shard) has its own bounded single-producer/single-consumer
// byte ring; the worker never blocks and never takes a lock: when its ring is
// full the line is dropped and counted (dropped()). The writer thread drains
// every ring, writes to the target (stdout, stderr or a file), rotates a file
// at max_size keeping max_files old ones (path.1 newest ... path.N oldest),
// and reopens the file on reopen() (SIGUSR1, external logrotate).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "proxy/config/config.h"

namespace ward::observe {

// Everything one access-log line says. Views must stay valid only for the
// duration of AccessLog::write().
struct AccessRecord {
  std::chrono::system_clock::time_point time;  // request start
  std::string_view client_ip;
  std::string_view method;
  std::string_view host;
  std::string_view path;
  std::string_view query;
  std::string_view protocol;  // "HTTP/1.1", "HTTP/2"
  int status = 0;
  uint64_t bytes_in = 0;   // request body bytes received from the client
  uint64_t bytes_out = 0;  // response body bytes sent to the client
  double duration_ms = 0;
  std::string_view route;
  std::string_view upstream;
  std::string_view upstream_server;
  double upstream_duration_ms = -1;  // < 0: no upstream was used (written as null)
  std::string_view request_id;
  std::string_view user_agent;
  std::string_view tls_version;  // "" on plain listeners (written as null)
  // mTLS: the verified client certificate's subject (RFC 2253). An
  // extension of CONFIG.md's keys, written only when there is one.
  std::string_view tls_client_subject;
  std::string_view referer;  // combined format only
};

// JSON object per line with exactly CONFIG.md's keys:
// time (RFC 3339 UTC with milliseconds), client_ip, method, host, path, query,
// protocol, status, bytes_in, bytes_out, duration_ms, route, upstream,
// upstream_server, upstream_duration_ms, request_id, user_agent, tls_version.
// Empty strings are written as null for route/upstream/upstream_server/
// request_id/tls_version. Then "tls_client_subject" when a client certificate
// was verified (mTLS listeners; a key added to CONFIG.md's list). Ends with '\n'. Both formatters
// append to `out`.
void format_json(const AccessRecord& r, std::string& out);
// Apache/nginx "combined": ip - - [10/Oct/2000:13:55:36 +0000] "GET /p?q HTTP/1.1" 200 2326
// "referer" "ua" Time in UTC; an empty ip/referer/user agent is "-"; '"', '\\', control bytes and
// bytes >= 0x7f are written as \xHH (nginx's escaping).
void format_combined(const AccessRecord& r, std::string& out);

class AccessLog {
 public:
  // Opens the target; throws std::runtime_error with a clear message when a
  // file cannot be opened (a config error at start, reported by the caller).
  // path "off" gives a log whose enabled() is false.
  AccessLog(const config::AccessLogConfig& config, size_t shards,
            size_t ring_bytes_per_shard = 1 << 20);
  ~AccessLog();  // drains what is queued, then stops the writer thread
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  bool enabled() const;
  // Called on worker `shard` only. Never blocks.
  void write(size_t shard, const AccessRecord& record);
  // Any thread; returns once the writer has reopened the file, so lines
  // written after the call go to the new file. If the path cannot be opened
  // the old file is kept (and write_errors() counts it).
  void reopen();
  // Blocks until every line queued before the call is written (tests, drain).
  void flush();
  uint64_t dropped() const;
  // Failed writes (those lines are lost), rotations and reopens (lines keep
  // going to the file already open).
  uint64_t write_errors() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ward::observe
