// libFuzzer target for the PROXY protocol parser. Beyond "no crash, no read
// past the input" (ASan), it traps on broken invariants:
//  - a header never claims more bytes than it was given, and a v1 header
//    ends in CRLF within 107 bytes;
//  - the answer depends only on the header's own bytes: what follows it
//    does not change it, and every shorter prefix is `incomplete`;
//  - once a prefix is an error, every longer input is an error too (the
//    session may close at the first error without reading more);
//  - the addresses parsed, written back as v1 and v2 headers, parse to the
//    same addresses and ports.

#include <arpa/inet.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "proxy/http/proxy_protocol.h"

namespace {

using namespace ward::http;

void check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

bool same(const ProxyParseResult& a, const ProxyParseResult& b) {
  if (a.status != b.status) {
    return false;
  }
  if (a.status != ProxyProtocolStatus::ok) {
    return true;
  }
  const ProxyHeader& x = a.header;
  const ProxyHeader& y = b.header;
  return x.size == y.size && x.version == y.version && x.local == y.local && x.source == y.source &&
         x.destination == y.destination && x.source_port == y.source_port &&
         x.destination_port == y.destination_port;
}

std::string v6_text(const ward::util::IpAddress& ip) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(AF_INET6, ip.bytes.data(), buf, sizeof buf);
  return buf;
}

void put16(std::string& out, uint16_t v) {
  out += static_cast<char>(v >> 8);
  out += static_cast<char>(v & 0xff);
}

// The header as a v1 line and as a v2 block; both must parse back the same.
void check_round_trip(const ProxyHeader& h) {
  bool v4 = h.source.is_v4() && h.destination.is_v4();
  std::string line = std::string("PROXY ") + (v4 ? "TCP4 " : "TCP6 ") +
                     (v4 ? h.source.to_string() : v6_text(h.source)) + " " +
                     (v4 ? h.destination.to_string() : v6_text(h.destination)) + " " +
                     std::to_string(h.source_port) + " " + std::to_string(h.destination_port) +
                     "\r\n";
  ProxyParseResult one = parse_proxy_protocol(line);
  check(one.status == ProxyProtocolStatus::ok && !one.header.local);
  check(one.header.size == line.size());
  check(one.header.source == h.source && one.header.destination == h.destination);
  check(one.header.source_port == h.source_port);
  check(one.header.destination_port == h.destination_port);

  std::string block("\r\n\r\n\0\r\nQUIT\n\x21", 13);
  block += v4 ? '\x11' : '\x21';
  put16(block, v4 ? 12 : 36);
  size_t offset = v4 ? 12 : 0;  // v4 addresses are the last 4 of the mapped 16
  block.append(reinterpret_cast<const char*>(h.source.bytes.data()) + offset, 16 - offset);
  block.append(reinterpret_cast<const char*>(h.destination.bytes.data()) + offset, 16 - offset);
  put16(block, h.source_port);
  put16(block, h.destination_port);
  ProxyParseResult two = parse_proxy_protocol(block);
  check(two.status == ProxyProtocolStatus::ok && !two.header.local);
  check(two.header.source == h.source && two.header.destination == h.destination);
  check(two.header.source_port == h.source_port);
  check(two.header.destination_port == h.destination_port);
}

void fuzz(std::string_view in, size_t max_v2) {
  ProxyParseResult whole = parse_proxy_protocol(in, max_v2);
  switch (whole.status) {
    case ProxyProtocolStatus::ok: {
      const ProxyHeader& h = whole.header;
      check(h.size > 0 && h.size <= in.size());
      check(h.version == 1 || h.version == 2);
      if (h.version == 1) {
        check(h.size <= kProxyV1MaxSize && in.substr(h.size - 2, 2) == "\r\n");
      } else {
        check(h.size >= 16 && h.size <= max_v2);
      }
      if (h.local) {
        check(h.source == ward::util::IpAddress{} && h.source_port == 0);
      }
      // Only the header's bytes decide; none of them may be missing.
      check(same(parse_proxy_protocol(in.substr(0, h.size), max_v2), whole));
      for (size_t n = 0; n < h.size; ++n) {
        check(parse_proxy_protocol(in.substr(0, n), max_v2).status ==
              ProxyProtocolStatus::incomplete);
      }
      if (!h.local) {
        check_round_trip(h);
      }
      break;
    }
    case ProxyProtocolStatus::error:
      check(whole.reason != nullptr && whole.reason[0] != '\0');
      break;
    case ProxyProtocolStatus::incomplete:
      break;
  }
  // Errors are final: no prefix is an error unless every longer one is.
  bool seen_error = false;
  for (size_t n = 0; n <= in.size(); n += n < 256 ? 1 : 61) {
    ProxyProtocolStatus s = parse_proxy_protocol(in.substr(0, n), max_v2).status;
    if (seen_error) {
      check(s == ProxyProtocolStatus::error);
    }
    seen_error = s == ProxyProtocolStatus::error;
    if (s == ProxyProtocolStatus::ok) {
      break;
    }
  }
  if (seen_error) {
    check(whole.status == ProxyProtocolStatus::error);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  fuzz(in, kProxyV2DefaultMaxSize);
  // A small limit too, so the size check is reached by small inputs.
  fuzz(in, 64);
  return 0;
}
