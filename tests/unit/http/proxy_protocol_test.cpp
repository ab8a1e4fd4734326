#include "proxy/http/proxy_protocol.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ward::http {
namespace {

using util::IpAddress;

// A v2 header: signature, the two type bytes, the length, then `body`.
std::string v2(uint8_t ver_cmd, uint8_t fam, const std::string& body) {
  std::string h("\r\n\r\n\0\r\nQUIT\n", 12);
  h += static_cast<char>(ver_cmd);
  h += static_cast<char>(fam);
  h += static_cast<char>((body.size() >> 8) & 0xff);
  h += static_cast<char>(body.size() & 0xff);
  return h + body;
}

std::string bytes(std::initializer_list<int> list) {
  std::string s;
  for (int b : list) {
    s += static_cast<char>(b);
  }
  return s;
}

std::string tlv(uint8_t type, const std::string& value) {
  return bytes({type, static_cast<int>(value.size() >> 8), static_cast<int>(value.size() & 0xff)}) +
         value;
}

// 192.0.2.1:56324 -> 198.51.100.7:443
const std::string kTcp4Addresses = bytes({192, 0, 2, 1, 198, 51, 100, 7, 0xdc, 0x04, 0x01, 0xbb});

// 2001:db8::1:1234 -> 2001:db8::2:443
std::string tcp6_addresses() {
  std::string a = bytes({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1});
  std::string b = bytes({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2});
  return a + b + bytes({0x04, 0xd2, 0x01, 0xbb});
}

IpAddress ip(const char* text) {
  return *IpAddress::parse(text);
}

class ProxyProtocolTest : public ::testing::Test {
 protected:
  // Whole buffer, then every shorter prefix: a valid header is `incomplete`
  // until its last byte arrives, never an error.
  ProxyParseResult parse_ok(const std::string& header, const std::string& after = "GET / ") {
    for (size_t n = 0; n < header.size(); ++n) {
      ProxyParseResult partial = parse_proxy_protocol(header.substr(0, n));
      EXPECT_EQ(partial.status, ProxyProtocolStatus::incomplete)
          << "prefix " << n << ": " << partial.reason;
    }
    ProxyParseResult r = parse_proxy_protocol(header + after);
    EXPECT_EQ(r.status, ProxyProtocolStatus::ok) << r.reason;
    EXPECT_EQ(r.header.size, header.size());
    return r;
  }

  // An error, and the same error (never ok) however much of it has arrived
  // once it can be told apart.
  std::string parse_error(const std::string& input) {
    ProxyParseResult r = parse_proxy_protocol(input);
    EXPECT_EQ(r.status, ProxyProtocolStatus::error) << testing::PrintToString(input);
    for (size_t n = 0; n < input.size(); ++n) {
      EXPECT_NE(parse_proxy_protocol(input.substr(0, n)).status, ProxyProtocolStatus::ok);
    }
    return r.reason;
  }
};

// ---------------------------------------------------------------------------
// Version 1

TEST_F(ProxyProtocolTest, V1Tcp4GivesTheClientAndTheDestination) {
  ProxyParseResult r = parse_ok("PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n");
  EXPECT_EQ(r.header.version, 1);
  EXPECT_FALSE(r.header.local);
  EXPECT_EQ(r.header.source, ip("192.0.2.1"));
  EXPECT_EQ(r.header.source_port, 56324);
  EXPECT_EQ(r.header.destination, ip("198.51.100.7"));
  EXPECT_EQ(r.header.destination_port, 443);
  EXPECT_TRUE(r.header.source.is_v4());
}

TEST_F(ProxyProtocolTest, V1Tcp6GivesTheClientAndTheDestination) {
  ProxyParseResult r = parse_ok("PROXY TCP6 2001:db8::1 2001:DB8::2 1234 443\r\n");
  EXPECT_EQ(r.header.source, ip("2001:db8::1"));
  EXPECT_EQ(r.header.destination, ip("2001:db8::2"));
  EXPECT_EQ(r.header.source_port, 1234);
  EXPECT_FALSE(r.header.source.is_v4());
}

TEST_F(ProxyProtocolTest, V1PortAndOctetBoundsAreAccepted) {
  ProxyParseResult r = parse_ok("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n");
  EXPECT_EQ(r.header.source, ip("0.0.0.0"));
  EXPECT_EQ(r.header.destination, ip("255.255.255.255"));
  EXPECT_EQ(r.header.source_port, 0);
  EXPECT_EQ(r.header.destination_port, 65535);
}

TEST_F(ProxyProtocolTest, V1LongestTcp6LineIsAccepted) {
  std::string full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
  std::string line = "PROXY TCP6 " + full + " " + full + " 65535 65535\r\n";
  EXPECT_EQ(line.size(), 104u);  // spec 2.1
  parse_ok(line);
}

TEST_F(ProxyProtocolTest, V1UnknownMeansUseTheSocketAddresses) {
  ProxyParseResult r = parse_ok("PROXY UNKNOWN\r\n");
  EXPECT_TRUE(r.header.local);
  EXPECT_EQ(r.header.size, 15u);
  // "the receiver must ignore anything presented before the CRLF"
  std::string full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
  std::string worst = "PROXY UNKNOWN " + full + " " + full + " 65535 65535\r\n";
  EXPECT_EQ(worst.size(), kProxyV1MaxSize);
  EXPECT_TRUE(parse_ok(worst).header.local);
}

TEST_F(ProxyProtocolTest, V1ClientBytesAfterTheHeaderAreNotConsumed) {
  std::string header = "PROXY TCP4 192.0.2.1 198.51.100.7 1 2\r\n";
  ProxyParseResult r = parse_proxy_protocol(header + "PROXY TCP4 6.6.6.6 6.6.6.6 1 2\r\n");
  ASSERT_EQ(r.status, ProxyProtocolStatus::ok);
  EXPECT_EQ(r.header.size, header.size());
  EXPECT_EQ(r.header.source, ip("192.0.2.1"));
}

TEST_F(ProxyProtocolTest, V1MalformedLinesAreRejected) {
  const std::vector<std::string> bad = {
      "PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\n",     // LF without CR
      "PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\rX",    // CR without LF
      "PROXY TCP4 192.0.2.1 198.51.100.7 56324 443 \r\n",  // trailing space
      "PROXY TCP4  192.0.2.1 198.51.100.7 56324 443\r\n",  // two spaces
      "PROXY TCP4 192.0.2.1 198.51.100.7 56324\r\n",       // a field missing
      "PROXY TCP4 192.0.2.1 198.51.100.7 1 2 3\r\n",       // a field too many
      "PROXY TCP4\r\n",
      "PROXY \r\n",
      "PROXY tcp4 192.0.2.1 198.51.100.7 1 2\r\n",  // protocol is case-sensitive
      "PROXY TCP5 192.0.2.1 198.51.100.7 1 2\r\n",
      "PROXY UDP4 192.0.2.1 198.51.100.7 1 2\r\n",
      "PROXY UNKNOWNX\r\n",
      "PROXY TCP4\t192.0.2.1 198.51.100.7 1 2\r\n",
  };
  for (const auto& in : bad) {
    parse_error(in);
  }
}

TEST_F(ProxyProtocolTest, V1BadAddressesAreRejected) {
  const std::vector<std::string> bad = {
      "PROXY TCP4 192.0.2.01 198.51.100.7 1 2\r\n",  // leading zero: octal?
      "PROXY TCP4 192.0.2.256 198.51.100.7 1 2\r\n",
      "PROXY TCP4 192.0.2 198.51.100.7 1 2\r\n",
      "PROXY TCP4 192.0.2.1.5 198.51.100.7 1 2\r\n",
      "PROXY TCP4 192.0.2.1. 198.51.100.7 1 2\r\n",
      "PROXY TCP4 2001:db8::1 198.51.100.7 1 2\r\n",  // v6 under TCP4
      "PROXY TCP6 192.0.2.1 2001:db8::2 1 2\r\n",     // v4 under TCP6
      "PROXY TCP6 2001:db8::1::2 2001:db8::2 1 2\r\n",
      "PROXY TCP6 [2001:db8::1] 2001:db8::2 1 2\r\n",
      "PROXY TCP6 2001:db8::1%eth0 2001:db8::2 1 2\r\n",
      "PROXY TCP4 +1.2.3.4 198.51.100.7 1 2\r\n",
  };
  for (const auto& in : bad) {
    EXPECT_NE(std::string(parse_error(in)).find("address"), std::string::npos) << in;
  }
}

TEST_F(ProxyProtocolTest, V1BadPortsAreRejected) {
  const std::vector<std::string> bad = {
      "PROXY TCP4 192.0.2.1 198.51.100.7 0443 443\r\n",  // leading zero
      "PROXY TCP4 192.0.2.1 198.51.100.7 65536 443\r\n",
      "PROXY TCP4 192.0.2.1 198.51.100.7 -1 443\r\n",
      "PROXY TCP4 192.0.2.1 198.51.100.7 1 443x\r\n",
      "PROXY TCP4 192.0.2.1 198.51.100.7 123456 443\r\n",
  };
  for (const auto& in : bad) {
    EXPECT_STREQ(parse_error(in).c_str(), "PROXY v1: bad port") << in;
  }
}

TEST_F(ProxyProtocolTest, V1WithoutCrlfWithin107BytesIsRejected) {
  std::string line = "PROXY UNKNOWN " + std::string(200, 'a');
  EXPECT_EQ(parse_proxy_protocol(line.substr(0, 106)).status, ProxyProtocolStatus::incomplete);
  EXPECT_STREQ(parse_proxy_protocol(line.substr(0, 107)).reason,
               "PROXY v1: no CRLF within 107 bytes");
  // A CR as the 107th byte leaves no room for the LF.
  std::string cr_last = line.substr(0, 106) + "\r\n";
  EXPECT_EQ(parse_proxy_protocol(cr_last).status, ProxyProtocolStatus::error);
}

TEST_F(ProxyProtocolTest, ClientThatSentNoHeaderIsRejectedOnItsFirstByte) {
  EXPECT_EQ(parse_proxy_protocol("G").status, ProxyProtocolStatus::error);
  EXPECT_EQ(parse_proxy_protocol("\x16\x03\x01").status, ProxyProtocolStatus::error);  // TLS
  // "PRI * HTTP/2.0" and "POST" share a first byte with "PROXY".
  EXPECT_EQ(parse_proxy_protocol("PR").status, ProxyProtocolStatus::incomplete);
  EXPECT_EQ(parse_proxy_protocol("PRI").status, ProxyProtocolStatus::error);
  EXPECT_EQ(parse_proxy_protocol("PO").status, ProxyProtocolStatus::error);
  EXPECT_EQ(parse_proxy_protocol("PROXY").status, ProxyProtocolStatus::incomplete);
  EXPECT_EQ(parse_proxy_protocol("PROXY\r\n").status, ProxyProtocolStatus::error);
  EXPECT_EQ(parse_proxy_protocol("").status, ProxyProtocolStatus::incomplete);
}

// ---------------------------------------------------------------------------
// Version 2

TEST_F(ProxyProtocolTest, V2Tcp4GivesTheClientAndTheDestination) {
  ProxyParseResult r = parse_ok(v2(0x21, 0x11, kTcp4Addresses));
  EXPECT_EQ(r.header.version, 2);
  EXPECT_FALSE(r.header.local);
  EXPECT_EQ(r.header.source, ip("192.0.2.1"));
  EXPECT_EQ(r.header.source_port, 56324);
  EXPECT_EQ(r.header.destination, ip("198.51.100.7"));
  EXPECT_EQ(r.header.destination_port, 443);
  EXPECT_EQ(r.header.size, 28u);
}

TEST_F(ProxyProtocolTest, V2Tcp6GivesTheClientAndTheDestination) {
  ProxyParseResult r = parse_ok(v2(0x21, 0x21, tcp6_addresses()));
  EXPECT_EQ(r.header.source, ip("2001:db8::1"));
  EXPECT_EQ(r.header.destination, ip("2001:db8::2"));
  EXPECT_EQ(r.header.source_port, 1234);
  EXPECT_EQ(r.header.destination_port, 443);
  EXPECT_EQ(r.header.size, 52u);
}

TEST_F(ProxyProtocolTest, V2LocalCommandMeansUseTheSocketAddresses) {
  EXPECT_TRUE(parse_ok(v2(0x20, 0x00, "")).header.local);
  // Whatever block follows is skipped unread, family included (spec 2.2).
  ProxyParseResult r = parse_ok(v2(0x20, 0x11, kTcp4Addresses + "junk"));
  EXPECT_TRUE(r.header.local);
  EXPECT_EQ(r.header.size, 32u);
  EXPECT_EQ(r.header.source, IpAddress{});
}

TEST_F(ProxyProtocolTest, V2TransportsWardDoesNotRelayFallBackToTheSocketAddresses) {
  EXPECT_TRUE(parse_ok(v2(0x21, 0x12, kTcp4Addresses)).header.local);         // UDP over IPv4
  EXPECT_TRUE(parse_ok(v2(0x21, 0x22, tcp6_addresses())).header.local);       // UDP over IPv6
  EXPECT_TRUE(parse_ok(v2(0x21, 0x31, std::string(216, 'u'))).header.local);  // UNIX stream
  EXPECT_TRUE(parse_ok(v2(0x21, 0x00, "anything")).header.local);             // UNSPEC
  EXPECT_TRUE(parse_ok(v2(0x21, 0x10, "anything")).header.local);             // INET, UNSPEC
}

TEST_F(ProxyProtocolTest, V2TlvsAreSkippedWithinTheLength) {
  std::string tlvs = tlv(0x02, "example.com") + tlv(0x04, "") + tlv(0xEA, std::string(300, 'x')) +
                     tlv(0x20, bytes({0x01, 0, 0, 0, 0}) + tlv(0x21, "TLSv1.3"));
  ProxyParseResult r = parse_ok(v2(0x21, 0x11, kTcp4Addresses + tlvs));
  EXPECT_EQ(r.header.source, ip("192.0.2.1"));
  EXPECT_EQ(r.header.size, 28u + tlvs.size());
}

TEST_F(ProxyProtocolTest, V2MalformedTlvsAreRejected) {
  EXPECT_STREQ(parse_error(v2(0x21, 0x11, kTcp4Addresses + bytes({0x04, 0x00}))).c_str(),
               "PROXY v2: truncated TLV");
  EXPECT_STREQ(parse_error(v2(0x21, 0x11, kTcp4Addresses + bytes({0x04, 0x00, 0x05, 'a'}))).c_str(),
               "PROXY v2: TLV longer than the header");
  // A TLV reaching past the header into the client's bytes.
  std::string h = v2(0x21, 0x11, kTcp4Addresses + bytes({0x02, 0x00, 0x03, 'a'}));
  EXPECT_EQ(parse_proxy_protocol(h + "GET").status, ProxyProtocolStatus::error);
}

// A header with a CRC32C TLV filled in as the spec says.
std::string with_crc(const std::string& addresses, const std::string& more_tlvs = "") {
  std::string h = v2(0x21, 0x11, addresses + tlv(0x03, bytes({0, 0, 0, 0})) + more_tlvs);
  uint32_t crc = crc32c(h);
  size_t at = 16 + addresses.size() + 3;
  h[at] = static_cast<char>(crc >> 24);
  h[at + 1] = static_cast<char>(crc >> 16);
  h[at + 2] = static_cast<char>(crc >> 8);
  h[at + 3] = static_cast<char>(crc);
  return h;
}

TEST_F(ProxyProtocolTest, V2Crc32cIsVerified) {
  parse_ok(with_crc(kTcp4Addresses));
  parse_ok(with_crc(kTcp4Addresses, tlv(0x02, "example.com")));
  std::string corrupted = with_crc(kTcp4Addresses);
  corrupted[16] ^= 1;  // the client address, as a broken hop might flip it
  EXPECT_STREQ(parse_error(corrupted).c_str(), "PROXY v2: CRC32C mismatch");
}

TEST_F(ProxyProtocolTest, V2MalformedCrcTlvIsRejected) {
  EXPECT_STREQ(parse_error(v2(0x21, 0x11, kTcp4Addresses + tlv(0x03, "abc"))).c_str(),
               "PROXY v2: bad CRC32C TLV");
  std::string twice = with_crc(kTcp4Addresses, tlv(0x03, bytes({0, 0, 0, 0})));
  EXPECT_EQ(parse_proxy_protocol(twice).status, ProxyProtocolStatus::error);
}

TEST(Crc32cTest, MatchesTheCastagnoliCheckValue) {
  EXPECT_EQ(crc32c("123456789"), 0xe3069283u);  // RFC 3720 B.4 / the usual check value
  EXPECT_EQ(crc32c(""), 0u);
  EXPECT_EQ(crc32c("6789", crc32c("12345")), 0xe3069283u);
}

TEST_F(ProxyProtocolTest, V2BadFixedBytesAreRejectedAsSoonAsTheyArrive) {
  std::string sig("\r\n\r\n\0\r\nQUIT\n", 12);
  EXPECT_STREQ(parse_proxy_protocol(sig + "\x11").reason, "PROXY v2: version is not 2");
  EXPECT_STREQ(parse_proxy_protocol(sig + "\x31").reason, "PROXY v2: version is not 2");
  EXPECT_STREQ(parse_proxy_protocol(sig + "\x22").reason, "PROXY v2: unknown command");
  EXPECT_STREQ(parse_proxy_protocol(sig + "\x2f").reason, "PROXY v2: unknown command");
  EXPECT_STREQ(parse_proxy_protocol(sig + "\x21\x41").reason,
               "PROXY v2: unknown address family or transport");
  EXPECT_STREQ(parse_proxy_protocol(sig + "\x21\x13").reason,
               "PROXY v2: unknown address family or transport");
  EXPECT_EQ(parse_proxy_protocol(sig + "\x21\x11").status, ProxyProtocolStatus::incomplete);
}

TEST_F(ProxyProtocolTest, V2SignatureMustMatchExactly) {
  std::string sig("\r\n\r\n\0\r\nQUIT\n", 12);
  for (size_t i = 1; i < sig.size(); ++i) {
    std::string bad = v2(0x21, 0x11, kTcp4Addresses);
    bad[i] ^= 0x20;
    EXPECT_STREQ(parse_error(bad).c_str(), "PROXY: no PROXY protocol signature") << i;
  }
}

TEST_F(ProxyProtocolTest, V2AddressBlockMustFitTheLength) {
  EXPECT_STREQ(parse_error(v2(0x21, 0x11, kTcp4Addresses.substr(0, 11))).c_str(),
               "PROXY v2: address block longer than the header");
  EXPECT_STREQ(parse_error(v2(0x21, 0x21, tcp6_addresses().substr(0, 35))).c_str(),
               "PROXY v2: address block longer than the header");
  EXPECT_EQ(parse_proxy_protocol(v2(0x21, 0x31, std::string(215, 'u'))).status,
            ProxyProtocolStatus::error);
}

TEST_F(ProxyProtocolTest, V2HeaderOverTheSizeLimitIsRejectedBeforeItArrives) {
  std::string big = v2(0x21, 0x11, kTcp4Addresses + tlv(0xEA, std::string(5000, 'x')));
  // Judged from the 16 fixed bytes alone: no need to buffer 5 KB first.
  EXPECT_STREQ(parse_proxy_protocol(big.substr(0, 16)).reason,
               "PROXY v2: header larger than the limit");
  EXPECT_EQ(parse_proxy_protocol(big, big.size()).status, ProxyProtocolStatus::ok);
  EXPECT_EQ(parse_proxy_protocol(big, big.size() - 1).status, ProxyProtocolStatus::error);
}

TEST_F(ProxyProtocolTest, V2IncompleteAtEveryLengthBeforeTheEnd) {
  std::string h = v2(0x21, 0x21, tcp6_addresses() + tlv(0x02, "example.com"));
  parse_ok(h, "");
  parse_ok(h, std::string("\0\0\0", 3));
}

// ---------------------------------------------------------------------------
// What the session relies on

// The session takes every byte of an `incomplete` prefix off the socket: so a
// buffer holding a whole header and anything after it must never be
// `incomplete`, or client bytes would be consumed as header bytes.
TEST_F(ProxyProtocolTest, IncompleteNeverCoversBytesAfterTheHeader) {
  const std::string after = "\x16\x03\x01\x02\x10GET / HTTP/1.1\r\n\r\n";
  const std::vector<std::string> headers = {
      "PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n",
      "PROXY UNKNOWN\r\n",
      v2(0x21, 0x11, kTcp4Addresses),
      v2(0x21, 0x21, tcp6_addresses()),
      v2(0x20, 0x00, ""),
  };
  for (const auto& h : headers) {
    std::string buf = h + after;
    for (size_t n = 0; n <= buf.size(); ++n) {
      ProxyParseResult r = parse_proxy_protocol(std::string_view(buf).substr(0, n));
      if (n < h.size()) {
        EXPECT_EQ(r.status, ProxyProtocolStatus::incomplete) << n;
      } else {
        EXPECT_EQ(r.status, ProxyProtocolStatus::ok) << n;
        EXPECT_EQ(r.header.size, h.size());
      }
    }
  }
}

TEST_F(ProxyProtocolTest, ErrorKindsAreShortFixedLabels) {
  EXPECT_EQ(proxy_error_kind(parse_proxy_protocol("GET / HTTP/1.1\r\n")), "not_proxy");
  EXPECT_EQ(proxy_error_kind(parse_proxy_protocol("\x16\x03\x01")), "not_proxy");  // a ClientHello
  EXPECT_EQ(proxy_error_kind(parse_proxy_protocol("PROXY TCP4 " + std::string(120, '1'))),
            "too_large");
  std::string big = v2(0x21, 0x11, kTcp4Addresses + std::string(kProxyV2DefaultMaxSize, 'x'));
  EXPECT_EQ(proxy_error_kind(parse_proxy_protocol(big.substr(0, 16))), "too_large");
  EXPECT_EQ(proxy_error_kind(parse_proxy_protocol("PROXY TCP5 a b 1 2\r\n")), "malformed");
  EXPECT_EQ(proxy_error_kind(parse_proxy_protocol(v2(0x31, 0x11, kTcp4Addresses))), "malformed");
  EXPECT_EQ(proxy_error_kind(parse_proxy_protocol("PROXY ")), "");  // incomplete
  EXPECT_EQ(proxy_error_kind(parse_proxy_protocol("PROXY UNKNOWN\r\n")), "");
}

}  // namespace
}  // namespace ward::http
