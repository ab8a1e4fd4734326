#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "proxy/config/config.h"

namespace ward::router {

// Matches requests against the routes of a config, first match wins in file
// order. Built once per config snapshot; immutable and shared by all workers.
class Router {
 public:
  explicit Router(const std::vector<config::Route>& routes);

  // `host` is the Host header (or :authority) as received: the port is
  // ignored, case-insensitive, "[::1]:80" handled, a trailing dot ignored.
  // `path` is the request path without the query. Returns the route index,
  // or -1 when nothing matches (404).
  int match(std::string_view host, std::string_view path, std::string_view method) const;

 private:
  struct Compiled {
    std::string host;            // lower case; "" = any
    bool host_wildcard = false;  // "*.example.com": host holds ".example.com"
    std::string path_prefix;
    std::vector<std::string> methods;
  };
  std::vector<Compiled> routes_;
};

// strip_prefix: "/api/x?q=1" with prefix "/api/" becomes "/x?q=1"; a result
// with an empty path becomes "/" ("/api/" -> "/", "/api/?a" -> "/?a").
// The target must start with the prefix (the route matched it).
std::string strip_prefix(std::string_view target, std::string_view prefix);

}  // namespace ward::router
