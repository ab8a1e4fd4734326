#pragma once

// The "always on" header rules of CONFIG.md for a request going upstream and
// a response coming back, and the decision of who the client is.

#include <string>
#include <string_view>

#include "proxy/http/h1_parser.h"
#include "proxy/http/proxy_protocol.h"
#include "proxy/util/cidr.h"

namespace ward::http {

// The client IP: the socket peer, unless the peer is in `trusted`, in which
// case X-Forwarded-For is walked from the right, skipping trusted addresses;
// the first untrusted one is the client (all trusted: the leftmost). Garbage
// entries stop the walk at the last good address.
util::IpAddress decide_client_ip(const HeaderList& headers, const util::IpAddress& peer,
                                 const util::CidrSet& trusted);

// What a listener with `proxy_protocol: true` does with a parsed PROXY header.
enum class ProxySource {
  use,        // the header's source replaces the socket peer as "the peer"
  local,      // LOCAL / UNKNOWN / not TCP: the header names no client; keep the socket peer
  untrusted,  // the socket peer is not in a non-empty trusted_proxies: keep it
};

// The header is believed when `trusted` is empty (a listener that opts into
// the PROXY protocol believes the balancer in front of it) or contains the
// socket peer. A believed source then stands for the socket peer everywhere:
// X-Forwarded-For, X-Real-IP, decide_client_ip (whose X-Forwarded-For walk
// starts only if that source is itself trusted), filters and logs.
ProxySource decide_proxy_source(const ProxyHeader& header, const util::IpAddress& socket_peer,
                                const util::CidrSet& trusted);

struct ForwardContext {
  util::IpAddress peer;       // socket peer (or PROXY protocol source)
  util::IpAddress client;     // from decide_client_ip
  bool peer_trusted = false;  // peer in trusted_proxies
  bool tls = false;           // the downstream connection is TLS
};

// Removes hop-by-hop fields: Connection and every name it lists, Keep-Alive,
// Proxy-Connection, TE, Trailer, Transfer-Encoding, and Upgrade (kept, with
// "Connection: upgrade", when head.upgrade_websocket). Then:
//  - X-Forwarded-For: the incoming list (joined into one field) with the
//    peer appended, from any peer, as CONFIG.md says ("appends the client");
//    whether the list is believed is decided by decide_client_ip, which is
//    what X-Real-IP, logs and filters use;
//  - X-Forwarded-Proto / X-Forwarded-Host: kept from a trusted peer when
//    present, otherwise set to "https"/"http" and the Host header;
//  - X-Real-IP: the decided client IP.
// Host is kept as received.
void prepare_upstream_request(RequestHead& head, const ForwardContext& ctx);

// Removes hop-by-hop fields from an upstream response (as above; Upgrade is
// kept on a 101 Switching Protocols).
void prepare_downstream_response(ResponseHead& head);

}  // namespace ward::http
