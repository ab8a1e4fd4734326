#include "proxy/router/router.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ward::router {
namespace {

config::Route route(std::string host, std::string path_prefix = "/",
                    std::vector<std::string> methods = {}) {
  config::Route r;
  r.match.host = std::move(host);
  r.match.path_prefix = std::move(path_prefix);
  r.match.methods = std::move(methods);
  r.upstream = "backend";
  return r;
}

class RouterTest : public ::testing::Test {};

TEST_F(RouterTest, ExactHostMatchesOnlyThatHost) {
  const Router router({route("api.example.com")});
  EXPECT_EQ(router.match("api.example.com", "/", "GET"), 0);
  EXPECT_EQ(router.match("www.example.com", "/", "GET"), -1);
  EXPECT_EQ(router.match("api.example.com.evil", "/", "GET"), -1);
  EXPECT_EQ(router.match("xapi.example.com", "/", "GET"), -1);
}

TEST_F(RouterTest, WildcardMatchesAnyDepthOfSubdomainButNotTheApex) {
  const Router router({route("*.example.com")});
  EXPECT_EQ(router.match("a.example.com", "/", "GET"), 0);
  EXPECT_EQ(router.match("a.b.example.com", "/", "GET"), 0);
  EXPECT_EQ(router.match("example.com", "/", "GET"), -1);
  EXPECT_EQ(router.match("badexample.com", "/", "GET"), -1);
  EXPECT_EQ(router.match(".example.com", "/", "GET"), -1);  // no label before the suffix
  EXPECT_EQ(router.match("a.example.org", "/", "GET"), -1);
}

TEST_F(RouterTest, PortIsIgnored) {
  const Router router({route("api.example.com"), route("*.example.org")});
  EXPECT_EQ(router.match("api.example.com:8080", "/", "GET"), 0);
  EXPECT_EQ(router.match("api.example.com:", "/", "GET"), 0);
  EXPECT_EQ(router.match("x.example.org:443", "/", "GET"), 1);
  EXPECT_EQ(router.match("example.org:443", "/", "GET"), -1);
}

TEST_F(RouterTest, HostIsCaseInsensitive) {
  const Router router({route("api.example.com"), route("*.Example.ORG")});
  EXPECT_EQ(router.match("API.Example.COM", "/", "GET"), 0);
  EXPECT_EQ(router.match("Www.EXAMPLE.org", "/", "GET"), 1);
}

TEST_F(RouterTest, TrailingDotIsIgnored) {
  const Router router({route("api.example.com"), route("*.example.org")});
  EXPECT_EQ(router.match("api.example.com.", "/", "GET"), 0);
  EXPECT_EQ(router.match("api.example.com.:8443", "/", "GET"), 0);
  EXPECT_EQ(router.match("a.example.org.", "/", "GET"), 1);
  EXPECT_EQ(router.match("example.org.", "/", "GET"), -1);
}

TEST_F(RouterTest, BracketedIpv6HostWithPort) {
  const Router router({route("[::1]"), route("127.0.0.1")});
  EXPECT_EQ(router.match("[::1]:8080", "/", "GET"), 0);
  EXPECT_EQ(router.match("[::1]", "/", "GET"), 0);
  EXPECT_EQ(router.match("[::2]:8080", "/", "GET"), -1);
  EXPECT_EQ(router.match("127.0.0.1:80", "/", "GET"), 1);
}

TEST_F(RouterTest, RouteWithoutHostMatchesAnyHostIncludingNone) {
  const Router router({route("api.example.com", "/"), route("", "/")});
  EXPECT_EQ(router.match("", "/", "GET"), 1);
  EXPECT_EQ(router.match("other.test", "/x", "GET"), 1);
}

TEST_F(RouterTest, MethodsRestrictTheRoute) {
  const Router router({route("", "/api/", {"GET", "POST"}), route("", "/")});
  EXPECT_EQ(router.match("h", "/api/x", "GET"), 0);
  EXPECT_EQ(router.match("h", "/api/x", "POST"), 0);
  EXPECT_EQ(router.match("h", "/api/x", "DELETE"), 1);
  // RFC 9110 9.1: methods are case-sensitive.
  EXPECT_EQ(router.match("h", "/api/x", "get"), 1);
}

TEST_F(RouterTest, FirstMatchWinsInFileOrder) {
  const Router specific_first({route("", "/api/"), route("", "/")});
  EXPECT_EQ(specific_first.match("h", "/api/users", "GET"), 0);
  EXPECT_EQ(specific_first.match("h", "/about", "GET"), 1);
  const Router catch_all_first({route("", "/"), route("", "/api/")});
  EXPECT_EQ(catch_all_first.match("h", "/api/users", "GET"), 0);
}

TEST_F(RouterTest, HostRoutesAndPathRoutesCombine) {
  const Router router(
      {route("api.example.com", "/v2/"), route("api.example.com", "/"), route("", "/v2/")});
  EXPECT_EQ(router.match("api.example.com", "/v2/x", "GET"), 0);
  EXPECT_EQ(router.match("api.example.com", "/v1/x", "GET"), 1);
  EXPECT_EQ(router.match("www.example.com", "/v2/x", "GET"), 2);
  EXPECT_EQ(router.match("www.example.com", "/v1/x", "GET"), -1);
}

TEST_F(RouterTest, PathPrefixIsAPlainStringPrefix) {
  const Router router({route("", "/api")});
  EXPECT_EQ(router.match("h", "/api", "GET"), 0);
  EXPECT_EQ(router.match("h", "/api/x", "GET"), 0);
  EXPECT_EQ(router.match("h", "/apix", "GET"), 0);  // CONFIG.md: write /api/ for a segment
  EXPECT_EQ(router.match("h", "/ap", "GET"), -1);
  EXPECT_EQ(router.match("h", "/API", "GET"), -1);  // paths are case-sensitive
}

TEST_F(RouterTest, NoMatchReturnsMinusOne) {
  const Router router({route("api.example.com", "/api/", {"GET"})});
  EXPECT_EQ(router.match("api.example.com", "/other", "GET"), -1);
  const Router empty({});
  EXPECT_EQ(empty.match("api.example.com", "/", "GET"), -1);
}

TEST(StripPrefixTest, RemovesThePrefixAndKeepsTheQuery) {
  EXPECT_EQ(strip_prefix("/api/x?q=1", "/api/"), "/x?q=1");
  EXPECT_EQ(strip_prefix("/api/x/y", "/api/"), "/x/y");
  EXPECT_EQ(strip_prefix("/api/x", "/api"), "/x");
}

TEST(StripPrefixTest, EmptyPathBecomesSlash) {
  EXPECT_EQ(strip_prefix("/api/", "/api/"), "/");
  EXPECT_EQ(strip_prefix("/api", "/api"), "/");
  EXPECT_EQ(strip_prefix("/api/?a", "/api/"), "/?a");
  EXPECT_EQ(strip_prefix("/api?a=1&b", "/api"), "/?a=1&b");
}

TEST(StripPrefixTest, ResultAlwaysStartsWithSlash) {
  EXPECT_EQ(strip_prefix("/apix", "/api"), "/x");
  EXPECT_EQ(strip_prefix("/x", "/"), "/x");
  EXPECT_EQ(strip_prefix("/", "/"), "/");
}

TEST(StripPrefixTest, TargetWithoutThePrefixIsLeftAlone) {
  EXPECT_EQ(strip_prefix("/other/x", "/api/"), "/other/x");
}

}  // namespace
}  // namespace ward::router
