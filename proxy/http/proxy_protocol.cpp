#include "proxy/http/proxy_protocol.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace ward::http {

namespace {

constexpr std::string_view kV1Signature = "PROXY ";
constexpr std::string_view kV2Signature{"\r\n\r\n\0\r\nQUIT\n", 12};
constexpr size_t kV2FixedSize = 16;  // signature, ver_cmd, fam, len

// v2 byte 13: version (high nibble) and command (low nibble).
constexpr uint8_t kV2Version = 0x2;
constexpr uint8_t kCommandLocal = 0x0;
constexpr uint8_t kCommandProxy = 0x1;
// v2 byte 14: address family (high nibble) and transport (low nibble).
constexpr uint8_t kFamilyUnspec = 0x0;
constexpr uint8_t kFamilyInet = 0x1;
constexpr uint8_t kFamilyInet6 = 0x2;
constexpr uint8_t kFamilyUnix = 0x3;
constexpr uint8_t kTransportUnspec = 0x0;
constexpr uint8_t kTransportStream = 0x1;
constexpr uint8_t kTransportDgram = 0x2;

constexpr uint8_t kTlvCrc32c = 0x03;
constexpr size_t kTlvHeaderSize = 3;  // type, length (2 bytes, network order)

constexpr std::array<uint8_t, 12> kV4MappedPrefix{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

// The reasons proxy_error_kind tells apart (compared by address).
constexpr const char* kNoSignature = "PROXY: no PROXY protocol signature";
constexpr const char* kV1TooLong = "PROXY v1: no CRLF within 107 bytes";
constexpr const char* kV2TooLarge = "PROXY v2: header larger than the limit";

ProxyParseResult fail(const char* reason) {
  ProxyParseResult r;
  r.status = ProxyProtocolStatus::error;
  r.reason = reason;
  return r;
}

ProxyParseResult incomplete() {
  return ProxyParseResult{};
}

ProxyParseResult done(ProxyHeader h) {
  ProxyParseResult r;
  r.status = ProxyProtocolStatus::ok;
  r.header = h;
  return r;
}

uint16_t be16(const char* p) {
  return static_cast<uint16_t>((static_cast<uint8_t>(p[0]) << 8) | static_cast<uint8_t>(p[1]));
}

util::IpAddress v4_address(const char* p) {
  util::IpAddress ip;
  std::copy(kV4MappedPrefix.begin(), kV4MappedPrefix.end(), ip.bytes.begin());
  std::memcpy(ip.bytes.data() + 12, p, 4);
  return ip;
}

util::IpAddress v6_address(const char* p) {
  util::IpAddress ip;
  std::memcpy(ip.bytes.data(), p, 16);
  return ip;
}

// ---------------------------------------------------------------------------
// Version 1: "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n"

// Exactly four decimal numbers 0-255 separated by single dots, no leading
// zeros (spec 2.1: "to avoid any possible confusion with octal numbers").
bool parse_v1_ipv4(std::string_view s, util::IpAddress& out) {
  char bytes[4];
  for (int part = 0; part < 4; ++part) {
    size_t n = 0;
    unsigned value = 0;
    while (n < s.size() && n < 4 && s[n] >= '0' && s[n] <= '9') {
      value = value * 10 + static_cast<unsigned>(s[n] - '0');
      ++n;
    }
    if (n == 0 || n > 3 || value > 255 || (n > 1 && s[0] == '0')) {
      return false;
    }
    bytes[part] = static_cast<char>(value);
    s.remove_prefix(n);
    if (part < 3) {
      if (s.empty() || s[0] != '.') {
        return false;
      }
      s.remove_prefix(1);
    }
  }
  if (!s.empty()) {
    return false;
  }
  out = v4_address(bytes);
  return true;
}

// Hex digits and colons (and dots, for an embedded IPv4 tail), as inet_pton
// reads them; "the total number of decoded bits must exactly be 128".
bool parse_v1_ipv6(std::string_view s, util::IpAddress& out) {
  constexpr size_t kMaxText = 45;  // INET6_ADDRSTRLEN - 1
  if (s.empty() || s.size() > kMaxText || s.find(':') == std::string_view::npos) {
    return false;
  }
  for (char c : s) {
    bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
              c == ':' || c == '.';
    if (!ok) {
      return false;
    }
  }
  char text[kMaxText + 1];
  std::memcpy(text, s.data(), s.size());
  text[s.size()] = '\0';
  char bytes[16];
  if (inet_pton(AF_INET6, text, bytes) != 1) {
    return false;
  }
  out = v6_address(bytes);
  return true;
}

// 0-65535 in decimal, no leading zeros.
bool parse_v1_port(std::string_view s, uint16_t& out) {
  if (s.empty() || s.size() > 5 || (s.size() > 1 && s[0] == '0')) {
    return false;
  }
  uint32_t value = 0;
  for (char c : s) {
    if (c < '0' || c > '9') {
      return false;
    }
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (value > 65535) {
    return false;
  }
  out = static_cast<uint16_t>(value);
  return true;
}

// Splits off the text up to the next single space. False when there is no
// space, or the token is empty (two spaces in a row).
bool next_token(std::string_view& rest, std::string_view& token) {
  size_t sp = rest.find(' ');
  if (sp == std::string_view::npos || sp == 0) {
    return false;
  }
  token = rest.substr(0, sp);
  rest.remove_prefix(sp + 1);
  return true;
}

// `line` is what lies between "PROXY " and the CRLF.
ProxyParseResult parse_v1_line(std::string_view line, size_t size) {
  ProxyHeader h;
  h.version = 1;
  h.size = size;
  // "UNKNOWN", alone or followed by anything the receiver must ignore.
  if (line == "UNKNOWN" || line.substr(0, 8) == "UNKNOWN ") {
    h.local = true;
    return done(h);
  }
  std::string_view rest = line;
  std::string_view proto, src, dst, sport;
  if (!next_token(rest, proto)) {
    return fail("PROXY v1: malformed line");
  }
  bool v4 = proto == "TCP4";
  if (!v4 && proto != "TCP6") {
    return fail("PROXY v1: protocol is not TCP4, TCP6 or UNKNOWN");
  }
  if (!next_token(rest, src) || !next_token(rest, dst) || !next_token(rest, sport)) {
    return fail("PROXY v1: malformed line");
  }
  std::string_view dport = rest;  // the last field runs to the CRLF
  bool addresses_ok = v4 ? parse_v1_ipv4(src, h.source) && parse_v1_ipv4(dst, h.destination)
                         : parse_v1_ipv6(src, h.source) && parse_v1_ipv6(dst, h.destination);
  if (!addresses_ok) {
    return fail(v4 ? "PROXY v1: bad IPv4 address" : "PROXY v1: bad IPv6 address");
  }
  if (!parse_v1_port(sport, h.source_port) || !parse_v1_port(dport, h.destination_port)) {
    return fail("PROXY v1: bad port");
  }
  return done(h);
}

ProxyParseResult parse_v1(std::string_view buf) {
  // The spec's receiver waits for the CRLF before decoding, and must not
  // take a lone CR or LF as the end of the line.
  size_t limit = std::min(buf.size(), kProxyV1MaxSize);
  for (size_t i = kV1Signature.size(); i < limit; ++i) {
    if (buf[i] == '\n') {
      return fail("PROXY v1: LF without CR");
    }
    if (buf[i] != '\r') {
      continue;
    }
    if (i + 1 >= kProxyV1MaxSize) {
      return fail(kV1TooLong);
    }
    if (i + 1 == buf.size()) {
      return incomplete();
    }
    if (buf[i + 1] != '\n') {
      return fail("PROXY v1: CR without LF");
    }
    return parse_v1_line(buf.substr(kV1Signature.size(), i - kV1Signature.size()), i + 2);
  }
  if (buf.size() >= kProxyV1MaxSize) {
    return fail(kV1TooLong);
  }
  return incomplete();
}

// ---------------------------------------------------------------------------
// Version 2: 16 fixed bytes, then `len` bytes of addresses and TLVs.

// Verifies the TLVs in [begin, end) of the header `h` (the whole header, for
// the CRC). Each must fit in the announced length: a TLV running past it
// would mean the sender and we disagree where the client's bytes start.
const char* check_tlvs(std::string_view h, size_t begin) {
  bool seen_crc = false;
  size_t i = begin;
  while (i < h.size()) {
    if (h.size() - i < kTlvHeaderSize) {
      return "PROXY v2: truncated TLV";
    }
    auto type = static_cast<uint8_t>(h[i]);
    size_t len = be16(h.data() + i + 1);
    if (len > h.size() - i - kTlvHeaderSize) {
      return "PROXY v2: TLV longer than the header";
    }
    size_t value = i + kTlvHeaderSize;
    if (type == kTlvCrc32c) {
      // Spec 2.2.3: the receiver that supports it MUST verify the CRC over
      // the whole header with the CRC field itself taken as zero.
      if (len != 4 || seen_crc) {
        return "PROXY v2: bad CRC32C TLV";
      }
      seen_crc = true;
      constexpr char kZeros[4] = {0, 0, 0, 0};
      uint32_t crc = crc32c(h.substr(0, value));
      crc = crc32c(std::string_view(kZeros, 4), crc);
      crc = crc32c(h.substr(value + 4), crc);
      uint32_t sent =
          (static_cast<uint32_t>(be16(h.data() + value)) << 16) | be16(h.data() + value + 2);
      if (crc != sent) {
        return "PROXY v2: CRC32C mismatch";
      }
    }
    i = value + len;
  }
  return nullptr;
}

ProxyParseResult parse_v2(std::string_view buf, size_t max_size) {
  // Judge each fixed byte as soon as it arrives.
  if (buf.size() > 12) {
    auto ver_cmd = static_cast<uint8_t>(buf[12]);
    if ((ver_cmd >> 4) != kV2Version) {
      return fail("PROXY v2: version is not 2");
    }
    if ((ver_cmd & 0x0f) != kCommandLocal && (ver_cmd & 0x0f) != kCommandProxy) {
      return fail("PROXY v2: unknown command");
    }
  }
  if (buf.size() > 13) {
    auto fam = static_cast<uint8_t>(buf[13]);
    if ((fam >> 4) > kFamilyUnix || (fam & 0x0f) > kTransportDgram) {
      return fail("PROXY v2: unknown address family or transport");
    }
  }
  if (buf.size() < kV2FixedSize) {
    return incomplete();
  }
  size_t size = kV2FixedSize + be16(buf.data() + 14);
  if (size > max_size) {
    return fail(kV2TooLarge);
  }
  if (buf.size() < size) {
    return incomplete();
  }
  std::string_view h = buf.substr(0, size);
  ProxyHeader out;
  out.version = 2;
  out.size = size;
  out.local = true;
  uint8_t command = static_cast<uint8_t>(h[12]) & 0x0f;
  if (command == kCommandLocal) {
    // Spec: "discard the protocol block including the family".
    return done(out);
  }
  uint8_t family = static_cast<uint8_t>(h[13]) >> 4;
  uint8_t transport = static_cast<uint8_t>(h[13]) & 0x0f;
  if (family == kFamilyUnspec || transport == kTransportUnspec) {
    // No address layout is defined, so where TLVs would start is unknown:
    // the whole block is skipped and the socket's addresses are used.
    return done(out);
  }
  size_t address_size = family == kFamilyInet ? 12 : family == kFamilyInet6 ? 36 : 216;
  if (size - kV2FixedSize < address_size) {
    return fail("PROXY v2: address block longer than the header");
  }
  if (const char* bad = check_tlvs(h, kV2FixedSize + address_size)) {
    return fail(bad);
  }
  if (transport != kTransportStream || family == kFamilyUnix) {
    return done(out);  // UDP or UNIX: valid, but not a TCP client to relay
  }
  const char* a = h.data() + kV2FixedSize;
  size_t ip_size = family == kFamilyInet ? 4 : 16;
  out.local = false;
  out.source = family == kFamilyInet ? v4_address(a) : v6_address(a);
  out.destination = family == kFamilyInet ? v4_address(a + ip_size) : v6_address(a + ip_size);
  out.source_port = be16(a + 2 * ip_size);
  out.destination_port = be16(a + 2 * ip_size + 2);
  return done(out);
}

}  // namespace

uint32_t crc32c(std::string_view data, uint32_t crc) {
  constexpr uint32_t kPolynomial = 0x82f63b78;  // Castagnoli, bit-reflected
  crc = ~crc;
  for (char c : data) {
    crc ^= static_cast<uint8_t>(c);
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc >> 1) ^ (kPolynomial & (0u - (crc & 1u)));
    }
  }
  return ~crc;
}

ProxyParseResult parse_proxy_protocol(std::string_view buf, size_t max_v2_size) {
  if (buf.empty()) {
    return incomplete();
  }
  // The first byte tells the versions apart: 'P' (v1) or CR (v2).
  std::string_view signature = buf[0] == '\r' ? kV2Signature : kV1Signature;
  size_t n = std::min(buf.size(), signature.size());
  if (buf.substr(0, n) != signature.substr(0, n)) {
    return fail(kNoSignature);
  }
  if (buf.size() < signature.size()) {
    return incomplete();
  }
  return buf[0] == '\r' ? parse_v2(buf, max_v2_size) : parse_v1(buf);
}

std::string_view proxy_error_kind(const ProxyParseResult& r) {
  if (r.status != ProxyProtocolStatus::error) {
    return "";
  }
  if (r.reason == kNoSignature) {
    return "not_proxy";
  }
  if (r.reason == kV1TooLong || r.reason == kV2TooLarge) {
    return "too_large";
  }
  return "malformed";
}

}  // namespace ward::http
