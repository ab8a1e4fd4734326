#include "proxy/http/forwarding.h"

#include <arpa/inet.h>

#include <optional>

namespace ward::http {

namespace {

// An X-Forwarded-For element: "1.2.3.4", "2001:db8::1", "[2001:db8::1]",
// and with a port as some load balancers write them: "1.2.3.4:5678",
// "[2001:db8::1]:5678". Anything else ("unknown", obfuscated ids) is garbage.
std::optional<util::IpAddress> parse_forwarded_ip(std::string_view s) {
  if (auto ip = util::IpAddress::parse(s)) {
    return ip;
  }
  if (!s.empty() && s.front() == '[') {
    size_t close = s.find(']');
    if (close != std::string_view::npos && close + 1 < s.size() && s[close + 1] == ':') {
      return util::IpAddress::parse(s.substr(0, close + 1));
    }
    return std::nullopt;
  }
  size_t colon = s.find(':');
  if (colon != std::string_view::npos && s.find(':', colon + 1) == std::string_view::npos) {
    auto ip = util::IpAddress::parse(s.substr(0, colon));
    if (ip && ip->is_v4()) {
      return ip;
    }
  }
  return std::nullopt;
}

// Text of an address in a caller buffer: no allocation on the request path.
// IPv4 (nearly every peer) is formatted by hand; inet_ntop for IPv6.
struct IpText {
  char buf[INET6_ADDRSTRLEN] = {};
  std::string_view view;

  explicit IpText(const util::IpAddress& ip) {
    if (!ip.is_v4()) {
      const char* r = inet_ntop(AF_INET6, ip.bytes.data(), buf, sizeof buf);
      view = r != nullptr ? std::string_view(buf) : std::string_view();
      return;
    }
    size_t n = 0;
    for (int i = 12; i < 16; ++i) {
      unsigned v = ip.bytes[i];
      if (v >= 100) {
        buf[n++] = static_cast<char>('0' + v / 100);
      }
      if (v >= 10) {
        buf[n++] = static_cast<char>('0' + v / 10 % 10);
      }
      buf[n++] = static_cast<char>('0' + v % 10);
      if (i != 15) {
        buf[n++] = '.';
      }
    }
    view = std::string_view(buf, n);
  }
};

// The fixed hop-by-hop fields (RFC 9110 7.6.1, RFC 9112 C.2.2 for
// Keep-Alive and Proxy-Connection), tested by length first.
bool is_fixed_hop_by_hop(std::string_view name) {
  switch (name.size()) {
    case 2:
      return iequals(name, "te");
    case 7:
      return iequals(name, "trailer");
    case 10:
      return iequals(name, "connection") || iequals(name, "keep-alive");
    case 16:
      return iequals(name, "proxy-connection");
    case 17:
      return iequals(name, "transfer-encoding");
    default:
      return false;
  }
}

bool is_upgrade(std::string_view name) {
  return name.size() == 7 && iequals(name, "upgrade");
}

// Names a Connection header may not remove. RFC 9110 7.6.1: a sender must
// not list fields meant for all recipients; a client that lists
// Content-Length (or Host) is trying to strip the framing or routing the
// upstream relies on after ward has judged the request by it.
bool protected_from_connection(std::string_view name) {
  return iequals(name, "content-length") || iequals(name, "host");
}

// Connection options that name no field ward must look for: "close" and
// "keep-alive" are connection options, Upgrade is handled on its own.
bool is_plain_option(std::string_view token) {
  return token.empty() || iequals(token, "close") || iequals(token, "keep-alive") ||
         iequals(token, "upgrade");
}

template <typename F>
void for_each_element(std::string_view value, F&& f) {
  while (!value.empty()) {
    size_t comma = value.find(',');
    f(trim_ows(value.substr(0, comma)));
    if (comma == std::string_view::npos) {
      break;
    }
    value.remove_prefix(comma + 1);
  }
}

// RFC 9110 7.6.1: Connection, the fields it names, and the fixed list of
// hop-by-hop fields are for this hop only. `keep_upgrade` keeps Upgrade and
// answers with "Connection: upgrade" (a WebSocket handshake or a 101).
void remove_hop_by_hop(HeaderList& headers, bool keep_upgrade) {
  // Usually Connection says only keep-alive or close: then one pass over the
  // fields does it all. Named fields cost a pass each (the parser caps the
  // number of options).
  bool names_fields = false;
  headers.for_each([&](const HeaderList::Field& f) {
    if (f.name.size() == 10 && iequals(f.name, "connection")) {
      for_each_element(f.value, [&](std::string_view token) {
        names_fields = names_fields || !is_plain_option(token);
      });
    }
  });
  if (names_fields) {
    // remove() only flags entries (it never moves the arena or the entry
    // vector), so it is safe while iterating.
    headers.for_each([&](const HeaderList::Field& f) {
      if (f.name.size() == 10 && iequals(f.name, "connection")) {
        for_each_element(f.value, [&](std::string_view token) {
          if (!is_plain_option(token) && !protected_from_connection(token)) {
            headers.remove(token);
          }
        });
      }
    });
  }
  headers.remove_if([&](const HeaderList::Field& f) {
    return is_fixed_hop_by_hop(f.name) || (!keep_upgrade && is_upgrade(f.name));
  });
  if (keep_upgrade) {
    headers.add("Connection", "upgrade");
  }
}

}  // namespace

ProxySource decide_proxy_source(const ProxyHeader& header, const util::IpAddress& socket_peer,
                                const util::CidrSet& trusted) {
  if (header.local) {
    return ProxySource::local;
  }
  if (!trusted.empty() && !trusted.contains(socket_peer)) {
    return ProxySource::untrusted;
  }
  return ProxySource::use;
}

util::IpAddress decide_client_ip(const HeaderList& headers, const util::IpAddress& peer,
                                 const util::CidrSet& trusted) {
  if (!trusted.contains(peer)) {
    return peer;
  }
  // The right-to-left walk over the joined X-Forwarded-For list ("skip
  // trusted hops, the first untrusted one is the client, garbage stops at
  // the last good address, all trusted gives the leftmost"), computed in
  // one left-to-right pass so that several XFF fields need no joining:
  // `result` is always the answer if the list ended at the current element.
  util::IpAddress result = peer;
  bool anchor_next = true;  // the next trusted element becomes the answer
  headers.for_each([&](const HeaderList::Field& f) {
    if (!iequals(f.name, "x-forwarded-for")) {
      return;
    }
    std::string_view value = f.value;
    while (true) {
      size_t comma = value.find(',');
      std::string_view element = trim_ows(value.substr(0, comma));
      auto ip = parse_forwarded_ip(element);
      if (!ip) {
        // Walking from the right this stops the walk: the answer is the
        // element after it, or the peer when it is the last.
        result = peer;
        anchor_next = true;
      } else if (!trusted.contains(*ip)) {
        result = *ip;
        anchor_next = false;
      } else if (anchor_next) {
        result = *ip;
        anchor_next = false;
      }
      if (comma == std::string_view::npos) {
        break;
      }
      value.remove_prefix(comma + 1);
    }
  });
  return result;
}

void prepare_upstream_request(RequestHead& head, const ForwardContext& ctx) {
  HeaderList& h = head.headers;
  remove_hop_by_hop(h, head.upgrade_websocket);

  // One pass drops what is about to be written: X-Real-IP always, and
  // X-Forwarded-Proto/-Host unless a trusted proxy sent them (anyone else
  // could have forged them). X-Forwarded-For is always extended: apps that
  // read it must take the rightmost untrusted entry, or use X-Real-IP.
  const bool trusted = ctx.peer_trusted;
  bool kept_proto = false;
  bool kept_host = false;
  h.remove_if([&](const HeaderList::Field& f) {
    switch (f.name.size()) {
      case 9:
        return iequals(f.name, "x-real-ip");
      case 16:
        if (iequals(f.name, "x-forwarded-host")) {
          kept_host = trusted;
          return !trusted;
        }
        return false;
      case 17:
        if (iequals(f.name, "x-forwarded-proto")) {
          kept_proto = trusted;
          return !trusted;
        }
        return false;
      default:
        return false;
    }
  });

  IpText peer(ctx.peer);
  h.append_to_list("X-Forwarded-For", peer.view);
  if (!kept_proto) {
    h.add("X-Forwarded-Proto", ctx.tls ? "https" : "http");
  }
  if (!kept_host) {
    if (auto host = h.get("Host")) {
      h.add("X-Forwarded-Host", *host);  // add() copes with a view into the list
    }
  }
  if (ctx.client == ctx.peer) {
    h.add("X-Real-IP", peer.view);
  } else {
    IpText client(ctx.client);
    h.add("X-Real-IP", client.view);
  }
}

void prepare_downstream_response(ResponseHead& head) {
  // RFC 9110 15.2.2: a 101 carries Upgrade and "Connection: upgrade" to the
  // client (RFC 6455 4.2.2 requires both for WebSocket).
  remove_hop_by_hop(head.headers, head.status == 101);
}

}  // namespace ward::http
