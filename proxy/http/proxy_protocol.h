#pragma once

// A strict parser of the PROXY protocol header (HAProxy's proxy-protocol.txt,
// versions 1 and 2) that a load balancer in front of ward sends before the
// first byte of the client's connection (`proxy_protocol: true`).
//
// Why strict: the header decides the client address that rate limits,
// ip_access and logs trust, and the spec (section 2) asks the receiver to
// abort on "any sequence which does not exactly match". So: exact
// signatures, single spaces, no leading zeros, a CRLF within 107 bytes (v1);
// known version, command, family and protocol nibbles, the address block and
// every TLV within the announced length, a CRC32C TLV verified when present
// (v2). Which of the two versions is expected is never guessed from a listener
// setting: both are accepted, told apart by their first byte.
//
// Incremental without state: call parse_proxy_protocol with everything
// received so far until it is not `incomplete`. Re-parsing is bounded (v1 is
// at most 107 bytes; a v2 header is judged incomplete from its 16 fixed bytes
// alone). A prefix that can no longer become a valid header is an error at
// once (a plain "GET /" fails on its first byte), so a client that did not
// send a header is told at once rather than after the header timeout.
//
// Nothing here allocates, throws or reads past `buf`.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "proxy/util/cidr.h"

namespace ward::http {

enum class ProxyProtocolStatus {
  incomplete,  // a valid prefix: read more (the session's header_timeout bounds the wait)
  ok,          // `header` is set; drop header.size bytes, the client's bytes follow
  error,       // malformed: close the connection (nothing is sent back)
};

struct ProxyHeader {
  size_t size = 0;  // bytes of the header at the start of the buffer
  int version = 0;  // 1 or 2
  // true: the header names no client to use (v2 LOCAL: the balancer's own
  // health check; v1 UNKNOWN; a v2 family or protocol other than TCP over
  // IPv4/IPv6, which the spec says to treat as UNSPEC): use the socket's
  // addresses. The address fields are then unset.
  bool local = false;
  util::IpAddress source;  // the client (IPv4 stored v4-mapped, as everywhere)
  uint16_t source_port = 0;
  util::IpAddress destination;  // the address the client connected to
  uint16_t destination_port = 0;
};

struct ProxyParseResult {
  ProxyProtocolStatus status = ProxyProtocolStatus::incomplete;
  const char* reason = "";  // for errors: a short fixed text for the log
  ProxyHeader header;       // when ok
};

// v1 lines are at most 107 bytes, CRLF included (spec 2.1).
inline constexpr size_t kProxyV1MaxSize = 107;
// A v2 header may announce up to 16 + 65535 bytes; real ones (addresses and
// a few TLVs: AWS VPC endpoint id, Azure link id, GCP PSC data) are well
// under 1 KiB. The bound keeps one connection from holding 64 KiB.
inline constexpr size_t kProxyV2DefaultMaxSize = 4096;

// Parses the header at the start of `buf`. A v2 header longer than
// `max_v2_size` bytes is an error.
ProxyParseResult parse_proxy_protocol(std::string_view buf,
                                      size_t max_v2_size = kProxyV2DefaultMaxSize);

// A short fixed name for an error result, for a metric label: "not_proxy"
// (no PROXY signature: a client that sent no header, or a balancer not set up
// to send one), "too_large" (a v1 line without CRLF within 107 bytes, a v2
// header over `max_v2_size`), "malformed" (any other error). "" when
// `r` is not an error.
std::string_view proxy_error_kind(const ProxyParseResult& r);

// CRC32C (Castagnoli, RFC 3720 B.4), as the PP2_TYPE_CRC32C TLV uses; public
// for the tests and the fuzzer, which build headers.
uint32_t crc32c(std::string_view data, uint32_t crc = 0);

}  // namespace ward::http
