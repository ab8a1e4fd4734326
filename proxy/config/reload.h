#pragma once

// What a reload (SIGHUP) cannot change in a running ward.

#include <string>
#include <vector>

#include "proxy/config/config.h"

namespace ward::config {

// The settings bound at start: the listening sockets and what each
// listener's accept path was built with, the worker threads, the admin
// listener, the log files. Returns one line per setting that differs
// between `running` and `next` ("listeners[1].address: 0.0.0.0:8443 ->
// 0.0.0.0:9443"); empty when a reload can apply `next`. Everything else
// (routes, filters, upstreams, limits, TLS settings and certificates,
// trusted_proxies, logging.level) a reload applies to new requests.
std::vector<std::string> restart_changes(const Config& running, const Config& next);

}  // namespace ward::config
