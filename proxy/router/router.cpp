#include "proxy/router/router.h"

#include <algorithm>
#include <cstddef>

namespace ward::router {

namespace {

char to_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

// The host part of a Host header or :authority (RFC 9110 7.2: host [":" port]),
// without port, IPv6 brackets or the trailing dot of a fully qualified name.
// A view into `authority`: matching runs per request and must not allocate.
std::string_view host_part(std::string_view authority) {
  std::string_view host = authority;
  if (host.starts_with('[')) {
    // RFC 3986 3.2.2: an IPv6 literal is bracketed; its colons are not a port.
    const size_t close = host.find(']');
    host = close == std::string_view::npos ? host.substr(1) : host.substr(1, close - 1);
    return host;
  }
  const size_t colon = host.find(':');
  // Several colons without brackets can only be a bare IPv6 address (not a
  // valid Host, but harmless): keep it whole rather than cut at a colon.
  if (colon != std::string_view::npos && host.find(':', colon + 1) == std::string_view::npos) {
    host = host.substr(0, colon);
  }
  if (host.ends_with('.')) {
    host.remove_suffix(1);  // "example.com." names the same host (RFC 1034 3.1)
  }
  return host;
}

// `lower` is already lower case (compiled from the config).
bool equals_lower(std::string_view text, std::string_view lower) {
  return text.size() == lower.size() && std::equal(text.begin(), text.end(), lower.begin(),
                                                   [](char a, char b) { return to_lower(a) == b; });
}

bool host_matches(std::string_view host, const std::string& pattern, bool wildcard) {
  if (!wildcard) {
    return equals_lower(host, pattern);
  }
  // pattern is ".example.com": at least one label before it, so the bare
  // domain "example.com" does not match, "a.b.example.com" does.
  return host.size() > pattern.size() &&
         equals_lower(host.substr(host.size() - pattern.size()), pattern);
}

}  // namespace

Router::Router(const std::vector<config::Route>& routes) {
  routes_.reserve(routes.size());
  for (const config::Route& route : routes) {
    Compiled compiled;
    std::string_view host = host_part(route.match.host);
    if (host == "*") {
      host = {};  // "*" alone: any host
    } else if (host.starts_with("*.")) {
      compiled.host_wildcard = true;
      host.remove_prefix(1);  // keep the dot: ".example.com"
    }
    compiled.host.resize(host.size());
    std::transform(host.begin(), host.end(), compiled.host.begin(), to_lower);
    compiled.path_prefix = route.match.path_prefix;
    compiled.methods = route.match.methods;
    routes_.push_back(std::move(compiled));
  }
}

int Router::match(std::string_view host, std::string_view path, std::string_view method) const {
  const std::string_view request_host = host_part(host);
  for (size_t i = 0; i < routes_.size(); ++i) {
    const Compiled& route = routes_[i];
    if (!route.host.empty() && !host_matches(request_host, route.host, route.host_wildcard)) {
      continue;
    }
    if (!path.starts_with(route.path_prefix)) {
      continue;
    }
    // RFC 9110 9.1: method names are case-sensitive; config holds upper case.
    if (!route.methods.empty() &&
        std::find(route.methods.begin(), route.methods.end(), method) == route.methods.end()) {
      continue;
    }
    return static_cast<int>(i);
  }
  return -1;
}

std::string strip_prefix(std::string_view target, std::string_view prefix) {
  if (!target.starts_with(prefix)) {
    return std::string(target);  // the contract says it does; do not mangle if not
  }
  const std::string_view rest = target.substr(prefix.size());
  std::string out;
  // "/api/" + "x" leaves "x" and "/api/" + "?a" leaves "?a": the upstream
  // needs an origin-form target, which starts with "/" (RFC 9112 3.2.1).
  if (rest.empty() || rest.front() != '/') {
    out.reserve(rest.size() + 1);
    out.push_back('/');
  }
  out.append(rest);
  return out;
}

}  // namespace ward::router
