#include "proxy/http/h2_request.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "tests/unit/http/alloc_counter.h"

namespace ward::http {
namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;

struct Built {
  int status = 0;
  RequestHead head;
  bool expect_continue = false;
};

Built build(const Fields& fields, bool end_stream = true, size_t max_bytes = 16384,
            size_t max_uri = 8192) {
  Built b;
  H2RequestBuilder builder(b.head, max_bytes, max_uri);
  for (const auto& [n, v] : fields) {
    builder.add(n, v);
  }
  b.status = builder.finish(end_stream);
  b.expect_continue = builder.expect_continue();
  return b;
}

const Fields kGet = {{":method", "GET"},
                     {":scheme", "https"},
                     {":authority", "api.example:8443"},
                     {":path", "/items?page=2"}};

Fields with(Fields base, const Fields& more) {
  base.insert(base.end(), more.begin(), more.end());
  return base;
}

TEST(H2RequestBuilderTest, PseudoHeadersBecomeAnHttp11Head) {
  auto b = build(with(kGet, {{"accept", "*/*"}, {"user-agent", "curl/8"}}));
  ASSERT_EQ(b.status, 0);
  EXPECT_EQ(b.head.method, Method::get);
  EXPECT_EQ(b.head.method_text, "GET");
  EXPECT_EQ(b.head.target, "/items?page=2");
  EXPECT_EQ(b.head.path(), "/items");
  EXPECT_EQ(b.head.query(), "page=2");
  EXPECT_EQ(b.head.version_minor, 1);
  EXPECT_EQ(b.head.headers.get("host"), "api.example:8443");
  EXPECT_EQ(b.head.headers.get("accept"), "*/*");
  EXPECT_EQ(b.head.body, BodyKind::none);
  // Pseudo-headers are not fields of the HTTP/1.1 head.
  EXPECT_EQ(b.head.headers.count(":method"), 0u);
  EXPECT_EQ(b.head.headers.count(":scheme"), 0u);
}

TEST(H2RequestBuilderTest, AuthorityWinsOverHostAndHostIsTheFallback) {
  auto b = build(with(kGet, {{"host", "other.example"}}));
  ASSERT_EQ(b.status, 0);
  EXPECT_EQ(b.head.headers.count("host"), 1u);
  EXPECT_EQ(b.head.headers.get("host"), "api.example:8443");
  b = build({{":method", "GET"}, {":path", "/"}, {"host", "fallback.example"}});
  ASSERT_EQ(b.status, 0);
  EXPECT_EQ(b.head.headers.get("host"), "fallback.example");
}

TEST(H2RequestBuilderTest, NoAuthorityAtAllIs400) {
  EXPECT_EQ(build({{":method", "GET"}, {":path", "/"}}).status, 400);
}

TEST(H2RequestBuilderTest, MissingMethodOrPathIs400) {
  EXPECT_EQ(build({{":authority", "a"}, {":path", "/"}}).status, 400);
  EXPECT_EQ(build({{":authority", "a"}, {":method", "GET"}}).status, 400);
}

TEST(H2RequestBuilderTest, CookieCrumbsAreJoined) {
  auto b = build(with(kGet, {{"cookie", "a=1"}, {"x", "y"}, {"cookie", "b=2"}}));
  ASSERT_EQ(b.status, 0);
  EXPECT_EQ(b.head.headers.count("cookie"), 1u);
  EXPECT_EQ(b.head.headers.get("cookie"), "a=1; b=2");
}

TEST(H2RequestBuilderTest, BodyFramingFollowsEndStreamAndContentLength) {
  EXPECT_EQ(build(kGet, true).head.body, BodyKind::none);
  auto b = build(with(kGet, {{"content-length", "42"}}), false);
  ASSERT_EQ(b.status, 0);
  EXPECT_EQ(b.head.body, BodyKind::content_length);
  EXPECT_EQ(b.head.content_length, 42u);
  EXPECT_EQ(build(kGet, false).head.body, BodyKind::chunked);  // length unknown
}

TEST(H2RequestBuilderTest, BadContentLengthIs400) {
  EXPECT_EQ(build(with(kGet, {{"content-length", "4x"}}), false).status, 400);
  EXPECT_EQ(build(with(kGet, {{"content-length", ""}}), false).status, 400);
  EXPECT_EQ(build(with(kGet, {{"content-length", "-1"}}), false).status, 400);
  EXPECT_EQ(build(with(kGet, {{"content-length", "1"}, {"content-length", "2"}}), false).status,
            400);
}

TEST(H2RequestBuilderTest, ExpectContinueIsTakenOutAndReported) {
  auto b = build(with(kGet, {{"expect", "100-continue"}}), false);
  ASSERT_EQ(b.status, 0);
  EXPECT_TRUE(b.expect_continue);
  EXPECT_TRUE(b.head.expect_continue);
  EXPECT_EQ(b.head.headers.count("expect"), 0u);
  b = build(with(kGet, {{"expect", "something-else"}}), false);
  EXPECT_FALSE(b.expect_continue);
  EXPECT_EQ(b.head.headers.get("expect"), "something-else");
}

TEST(H2RequestBuilderTest, HeaderListOverTheLimitIs431) {
  // RFC 9113 6.5.2: name + value + 32 per field.
  auto b = build(with(kGet, {{"x-big", std::string(16384, 'v')}}));
  EXPECT_EQ(b.status, 431);
  b = build(with(kGet, {{"x-a", std::string(100, 'v')}}), true, 200);
  EXPECT_EQ(b.status, 431);
}

TEST(H2RequestBuilderTest, LongPathIs414) {
  auto b = build({{":method", "GET"}, {":authority", "a"}, {":path", "/" + std::string(100, 'p')}},
                 true, 16384, 50);
  EXPECT_EQ(b.status, 414);
}

TEST(H2RequestBuilderTest, ConnectAndExtendedConnectAre501) {
  EXPECT_EQ(build({{":method", "CONNECT"}, {":authority", "a:443"}}).status, 501);
  EXPECT_EQ(build(with(kGet, {{":protocol", "websocket"}})).status, 501);
}

// nghttp2 refuses these before ward sees them; the builder does not rely on it.
TEST(H2RequestBuilderTest, FieldsThatWouldBreakAnHttp11HeadAre400) {
  EXPECT_EQ(build(with(kGet, {{"x-a", "v\r\nInjected: 1"}})).status, 400);
  EXPECT_EQ(build(with(kGet, {{"x-a", std::string("v\0w", 3)}})).status, 400);
  EXPECT_EQ(build(with(kGet, {{"X-Upper", "v"}})).status, 400);
  EXPECT_EQ(build(with(kGet, {{"bad name", "v"}})).status, 400);
  EXPECT_EQ(build(with(kGet, {{"", "v"}})).status, 400);
  EXPECT_EQ(build({{":method", "GET /x"}, {":authority", "a"}, {":path", "/"}}).status, 400);
  EXPECT_EQ(build({{":method", "GET"}, {":authority", "a"}, {":path", "/a b"}}).status, 400);
  EXPECT_EQ(build({{":method", "GET"}, {":authority", "a"}, {":path", "http://x/"}}).status, 400);
  EXPECT_EQ(build({{":method", "OPTIONS"}, {":authority", "a"}, {":path", "*"}}).status, 0);
}

TEST(H2RequestBuilderTest, AfterARefusalNothingMoreIsKept) {
  auto b = build(with(kGet, {{"x-big", std::string(20000, 'v')}, {"x-after", "1"}}));
  EXPECT_EQ(b.status, 431);
  EXPECT_EQ(b.head.headers.count("x-after"), 0u);
}

// An HTTP/2 connection reuses a stream's builder and head for its next
// stream: nothing of the first request may show in the second, and once the
// strings have grown, a like request allocates nothing.
TEST(H2RequestBuilderTest, ResetForgetsTheLastRequestAndKeepsItsMemory) {
  RequestHead head;
  H2RequestBuilder builder(head, 16384, 8192);
  auto run = [&](const Fields& fields, bool end_stream) {
    head.clear();
    builder.reset(4096);
    for (const auto& [n, v] : fields) {
      builder.add(n, v);
    }
    return builder.finish(end_stream);
  };
  // A refused request with every kind of state: cookies, Host, Expect.
  Fields first = with(kGet, {{"cookie", "a=1"},
                             {"host", "other.example"},
                             {"expect", "100-continue"},
                             {"content-length", "5"},
                             {"x-big", std::string(20000, 'v')}});
  EXPECT_EQ(run(first, false), 431);
  EXPECT_TRUE(builder.expect_continue());

  Fields second = {{":method", "POST"}, {":path", "/b"}, {"host", "h.example"}};
  EXPECT_EQ(run(second, true), 0);
  EXPECT_FALSE(builder.expect_continue());
  EXPECT_EQ(head.method_text, "POST");
  EXPECT_EQ(head.target, "/b");
  EXPECT_EQ(head.headers.get("host"), "h.example");  // no :authority left over
  EXPECT_EQ(head.headers.count("cookie"), 0u);
  EXPECT_EQ(head.body, BodyKind::none);

  Fields third = with(kGet, {{"cookie", "a=1"}, {"cookie", "b=2"}, {"user-agent", "t"}});
  EXPECT_EQ(run(third, true), 0);
  EXPECT_EQ(head.headers.get("cookie"), "a=1; b=2");
  EXPECT_EQ(head.headers.get("host"), "api.example:8443");
  testing::AllocationScope scope;
  EXPECT_EQ(run(third, true), 0);
  EXPECT_EQ(scope.allocations(), 0u);
  EXPECT_EQ(head.headers.get("cookie"), "a=1; b=2");
}

}  // namespace
}  // namespace ward::http
