#include "proxy/http/forwarding.h"

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <vector>

#include "tests/unit/http/alloc_counter.h"

namespace ward::http {
namespace {

util::IpAddress ip(std::string_view text) {
  auto a = util::IpAddress::parse(text);
  EXPECT_TRUE(a.has_value()) << text;
  return a.value_or(util::IpAddress{});
}

util::CidrSet cidrs(std::initializer_list<std::string_view> list) {
  util::CidrSet set;
  for (auto c : list) {
    auto parsed = util::Cidr::parse(c);
    EXPECT_TRUE(parsed.has_value()) << c;
    set.add(*parsed);
  }
  return set;
}

using Fields = std::vector<std::pair<std::string, std::string>>;

Fields fields_of(const HeaderList& h) {
  Fields out;
  h.for_each([&](const HeaderList::Field& f) {
    out.emplace_back(std::string(f.name), std::string(f.value));
  });
  return out;
}

class ClientIpTest : public ::testing::Test {
 protected:
  std::string client(std::initializer_list<std::string_view> xff, std::string_view peer) {
    HeaderList h;
    h.add("Host", "a");
    for (auto v : xff) {
      h.add("X-Forwarded-For", v);
    }
    return decide_client_ip(h, ip(peer), trusted_).to_string();
  }

  util::CidrSet trusted_ = cidrs({"10.0.0.0/8", "fd00::/8"});
};

TEST_F(ClientIpTest, UntrustedPeerIsTheClientWhateverXffSays) {
  EXPECT_EQ(client({"1.2.3.4"}, "203.0.113.9"), "203.0.113.9");
  EXPECT_EQ(client({}, "203.0.113.9"), "203.0.113.9");
}

TEST_F(ClientIpTest, TrustedPeerWithoutXffIsTheClient) {
  EXPECT_EQ(client({}, "10.0.0.1"), "10.0.0.1");
}

TEST_F(ClientIpTest, TrustedPeerGivesTheRightmostUntrustedAddress) {
  EXPECT_EQ(client({"1.1.1.1"}, "10.0.0.1"), "1.1.1.1");
  // The leftmost entries are whatever the client wrote: not believed.
  EXPECT_EQ(client({"6.6.6.6, 1.1.1.1, 10.0.0.7"}, "10.0.0.1"), "1.1.1.1");
  EXPECT_EQ(client({"6.6.6.6,1.1.1.1 ,\t10.0.0.7,10.9.9.9"}, "10.0.0.1"), "1.1.1.1");
}

TEST_F(ClientIpTest, AllTrustedGivesTheLeftmost) {
  EXPECT_EQ(client({"10.1.1.1, 10.2.2.2"}, "10.0.0.1"), "10.1.1.1");
}

TEST_F(ClientIpTest, GarbageStopsTheWalkAtTheLastGoodAddress) {
  EXPECT_EQ(client({"1.1.1.1, unknown, 10.2.2.2"}, "10.0.0.1"), "10.2.2.2");
  EXPECT_EQ(client({"1.1.1.1, 10.3.3.3, garbage"}, "10.0.0.1"), "10.0.0.1");
  EXPECT_EQ(client({"1.1.1.1, , 10.2.2.2"}, "10.0.0.1"), "10.2.2.2");
  EXPECT_EQ(client({"garbage, 10.2.2.2, 10.3.3.3"}, "10.0.0.1"), "10.2.2.2");
}

TEST_F(ClientIpTest, SeveralXffFieldsFormOneList) {
  EXPECT_EQ(client({"6.6.6.6, 1.1.1.1", "10.2.2.2"}, "10.0.0.1"), "1.1.1.1");
  EXPECT_EQ(client({"1.1.1.1", "2.2.2.2"}, "10.0.0.1"), "2.2.2.2");
  EXPECT_EQ(client({"10.5.5.5", "10.2.2.2"}, "10.0.0.1"), "10.5.5.5");
}

TEST_F(ClientIpTest, Ipv6AndPortsAreUnderstood) {
  EXPECT_EQ(client({"2001:db8::1, fd00::2"}, "fd00::1"), "2001:db8::1");
  EXPECT_EQ(client({"[2001:db8::1]:4711"}, "10.0.0.1"), "2001:db8::1");
  EXPECT_EQ(client({"[2001:db8::1]"}, "10.0.0.1"), "2001:db8::1");
  EXPECT_EQ(client({"1.2.3.4:5678"}, "10.0.0.1"), "1.2.3.4");
  EXPECT_EQ(client({"1.2.3.4:5678:9"}, "10.0.0.1"), "10.0.0.1");
}

// ---------------------------------------------------------------------------

class ForwardingTest : public ::testing::Test {
 protected:
  void parse(std::string_view fields, std::string_view start = "GET / HTTP/1.1") {
    std::string head(start);
    head += "\r\nHost: app.example\r\n";
    head += fields;
    head += "\r\n";
    ParseError e = parse_request_head(head, HeadLimits{}, req_);
    ASSERT_EQ(e.status, ParseStatus::ok) << e.reason;
  }
  void forward(std::string_view peer, bool trusted, bool tls = false) {
    ForwardContext ctx;
    ctx.peer = ip(peer);
    ctx.peer_trusted = trusted;
    ctx.tls = tls;
    ctx.client = decide_client_ip(req_.headers, ctx.peer, trusted_);
    prepare_upstream_request(req_, ctx);
  }
  std::string get(std::string_view name) const {
    return std::string(req_.headers.get(name).value_or("<none>"));
  }

  util::CidrSet trusted_ = cidrs({"10.0.0.0/8"});
  RequestHead req_;
  ResponseHead resp_;
};

TEST_F(ForwardingTest, XffFromUntrustedPeerIsExtendedWithThePeer) {
  parse("X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 7.7.7.7\r\n");
  forward("203.0.113.5", false);
  EXPECT_EQ(get("X-Forwarded-For"), "6.6.6.6, 7.7.7.7, 203.0.113.5");
  EXPECT_EQ(req_.headers.count("x-forwarded-for"), 1u);
  EXPECT_EQ(get("X-Real-IP"), "203.0.113.5");
}

TEST_F(ForwardingTest, XffFromTrustedPeerIsExtendedWithThePeer) {
  parse("X-Forwarded-For: 1.1.1.1, 10.3.3.3\r\nX-Forwarded-For: 10.4.4.4\r\n");
  forward("10.0.0.1", true);
  EXPECT_EQ(get("X-Forwarded-For"), "1.1.1.1, 10.3.3.3, 10.4.4.4, 10.0.0.1");
  EXPECT_EQ(req_.headers.count("x-forwarded-for"), 1u);
  EXPECT_EQ(get("X-Real-IP"), "1.1.1.1");
}

TEST_F(ForwardingTest, XffIsCreatedWhenAbsent) {
  parse("");
  forward("10.0.0.1", true);
  EXPECT_EQ(get("X-Forwarded-For"), "10.0.0.1");
  EXPECT_EQ(get("X-Real-IP"), "10.0.0.1");
}

TEST_F(ForwardingTest, Ipv6PeerIsWrittenInTextForm) {
  parse("");
  forward("2001:db8::7", false);
  EXPECT_EQ(get("X-Forwarded-For"), "2001:db8::7");
  EXPECT_EQ(get("X-Real-IP"), "2001:db8::7");
}

TEST_F(ForwardingTest, Ipv4PeerIsWrittenInDottedDecimal) {
  for (const char* addr :
       {"0.10.100.255", "1.2.3.4", "255.255.255.255", "0.0.0.0", "99.199.209.9"}) {
    parse("");
    forward(addr, false);
    EXPECT_EQ(get("X-Forwarded-For"), addr);
    EXPECT_EQ(get("X-Real-IP"), addr);
  }
}

TEST_F(ForwardingTest, ProtoAndHostAreSetForUntrustedPeers) {
  parse("X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n");
  forward("203.0.113.5", false, false);
  EXPECT_EQ(get("X-Forwarded-Proto"), "http");
  EXPECT_EQ(get("X-Forwarded-Host"), "app.example");
  EXPECT_EQ(req_.headers.count("x-forwarded-proto"), 1u);
  EXPECT_EQ(req_.headers.count("x-forwarded-host"), 1u);

  parse("");
  forward("203.0.113.5", false, true);
  EXPECT_EQ(get("X-Forwarded-Proto"), "https");
}

TEST_F(ForwardingTest, ProtoAndHostFromTrustedPeersAreKept) {
  parse("X-Forwarded-Proto: https\r\nX-Forwarded-Host: public.example\r\n");
  forward("10.0.0.1", true, false);
  EXPECT_EQ(get("X-Forwarded-Proto"), "https");
  EXPECT_EQ(get("X-Forwarded-Host"), "public.example");

  parse("");
  forward("10.0.0.1", true, false);
  EXPECT_EQ(get("X-Forwarded-Proto"), "http");
  EXPECT_EQ(get("X-Forwarded-Host"), "app.example");
}

TEST_F(ForwardingTest, Http10WithoutHostGetsNoForwardedHost) {
  ASSERT_EQ(parse_request_head("GET / HTTP/1.0\r\nX-Forwarded-Host: x\r\n\r\n", HeadLimits{}, req_)
                .status,
            ParseStatus::ok);
  forward("203.0.113.5", false);
  EXPECT_EQ(get("X-Forwarded-Host"), "<none>");
}

TEST_F(ForwardingTest, HostIsKept) {
  parse("");
  forward("203.0.113.5", false);
  EXPECT_EQ(get("Host"), "app.example");
}

TEST_F(ForwardingTest, HopByHopFieldsAreRemoved) {
  parse(
      "Connection: keep-alive, X-Secret, x-other\r\nKeep-Alive: timeout=5\r\n"
      "Proxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: Expires\r\n"
      "Upgrade: h2c\r\nX-Secret: 1\r\nX-Other: 2\r\nX-Kept: 3\r\n"
      "Transfer-Encoding: chunked\r\n",
      "POST / HTTP/1.1");
  forward("203.0.113.5", false);
  for (const char* name : {"Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer",
                           "Upgrade", "X-Secret", "X-Other", "Transfer-Encoding"}) {
    EXPECT_EQ(req_.headers.count(name), 0u) << name;
  }
  EXPECT_EQ(get("X-Kept"), "3");
  EXPECT_EQ(get("Host"), "app.example");
}

TEST_F(ForwardingTest, ConnectionCannotStripFramingOrHost) {
  parse("Content-Length: 5\r\nConnection: Content-Length, Host, X-Forwarded-For, X-Real-IP\r\n",
        "POST / HTTP/1.1");
  forward("203.0.113.5", false);
  EXPECT_EQ(get("Content-Length"), "5");
  EXPECT_EQ(get("Host"), "app.example");
  EXPECT_EQ(get("X-Forwarded-For"), "203.0.113.5");
  EXPECT_EQ(get("X-Real-IP"), "203.0.113.5");
  EXPECT_EQ(req_.headers.count("connection"), 0u);
}

TEST_F(ForwardingTest, WebSocketUpgradeKeepsUpgrade) {
  parse(
      "Upgrade: websocket\r\nConnection: Upgrade, X-Hop\r\nX-Hop: 1\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n");
  ASSERT_TRUE(req_.upgrade_websocket);
  forward("203.0.113.5", false);
  EXPECT_EQ(get("Upgrade"), "websocket");
  EXPECT_EQ(get("Connection"), "upgrade");
  EXPECT_EQ(req_.headers.count("connection"), 1u);
  EXPECT_EQ(get("X-Hop"), "<none>");
  EXPECT_EQ(get("Sec-WebSocket-Key"), "dGhlIHNhbXBsZSBub25jZQ==");
}

TEST_F(ForwardingTest, ForwardingAReusedHeadAllocatesNothing) {
  std::string head =
      "GET /x HTTP/1.1\r\nHost: app.example\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
      "X-Forwarded-For: 198.51.100.1, 10.1.1.1\r\nX-Forwarded-Proto: https\r\n\r\n";
  ForwardContext ctx;
  ctx.peer = ip("10.0.0.1");
  ctx.client = ip("198.51.100.1");
  ctx.peer_trusted = true;
  auto round = [&] {
    ASSERT_EQ(parse_request_head(head, HeadLimits{}, req_).status, ParseStatus::ok);
    prepare_upstream_request(req_, ctx);
  };
  round();
  testing::AllocationScope scope;
  for (int i = 0; i < 10; ++i) {
    round();
  }
  EXPECT_EQ(scope.allocations(), 0u);
  EXPECT_EQ(get("X-Forwarded-For"), "198.51.100.1, 10.1.1.1, 10.0.0.1");
}

// ---------------------------------------------------------------------------

class DownstreamResponseTest : public ::testing::Test {
 protected:
  void parse(std::string_view status_line, std::string_view fields) {
    std::string head(status_line);
    head += "\r\n";
    head += fields;
    head += "\r\n";
    ParseError e = parse_response_head(head, Method::get, resp_);
    ASSERT_EQ(e.status, ParseStatus::ok) << e.reason;
  }

  ResponseHead resp_;
};

TEST_F(DownstreamResponseTest, HopByHopFieldsAreRemoved) {
  parse("HTTP/1.1 200 OK",
        "Connection: keep-alive, X-Internal\r\nKeep-Alive: timeout=5\r\nX-Internal: 1\r\n"
        "Transfer-Encoding: chunked\r\nTrailer: X\r\nUpgrade: h2c\r\nProxy-Connection: x\r\n"
        "TE: trailers\r\nContent-Type: text/plain\r\n");
  prepare_downstream_response(resp_);
  EXPECT_EQ(fields_of(resp_.headers), (Fields{{"Content-Type", "text/plain"}}));
}

TEST_F(DownstreamResponseTest, ConnectionCannotStripContentLength) {
  parse("HTTP/1.1 200 OK", "Content-Length: 3\r\nConnection: Content-Length\r\n");
  prepare_downstream_response(resp_);
  EXPECT_EQ(fields_of(resp_.headers), (Fields{{"Content-Length", "3"}}));
}

TEST_F(DownstreamResponseTest, SwitchingProtocolsKeepsUpgrade) {
  parse("HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n");
  prepare_downstream_response(resp_);
  EXPECT_EQ(fields_of(resp_.headers),
            (Fields{{"Upgrade", "websocket"},
                    {"Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="},
                    {"Connection", "upgrade"}}));
}

// --- PROXY protocol source -----------------------------------------------------------

ProxyHeader proxied(std::string_view source) {
  ProxyHeader h;
  h.version = 2;
  h.source = ip(source);
  h.source_port = 1234;
  return h;
}

TEST(ProxySourceTest, EmptyTrustedProxiesBelievesTheBalancer) {
  EXPECT_EQ(decide_proxy_source(proxied("203.0.113.9"), ip("127.0.0.1"), cidrs({})),
            ProxySource::use);
}

TEST(ProxySourceTest, TrustedPeerIsBelievedUntrustedIsNot) {
  auto trusted = cidrs({"10.0.0.0/8", "fd00::/8"});
  EXPECT_EQ(decide_proxy_source(proxied("203.0.113.9"), ip("10.1.2.3"), trusted), ProxySource::use);
  EXPECT_EQ(decide_proxy_source(proxied("2001:db8::1"), ip("fd00::1"), trusted), ProxySource::use);
  EXPECT_EQ(decide_proxy_source(proxied("203.0.113.9"), ip("127.0.0.1"), trusted),
            ProxySource::untrusted);
  EXPECT_EQ(decide_proxy_source(proxied("10.9.9.9"), ip("192.0.2.1"), trusted),
            ProxySource::untrusted);  // the source being trusted does not matter
}

TEST(ProxySourceTest, LocalOrUnknownKeepsTheSocketPeer) {
  ProxyHeader local;
  local.local = true;
  EXPECT_EQ(decide_proxy_source(local, ip("127.0.0.1"), cidrs({})), ProxySource::local);
  EXPECT_EQ(decide_proxy_source(local, ip("10.0.0.1"), cidrs({"10.0.0.0/8"})), ProxySource::local);
}

}  // namespace
}  // namespace ward::http
