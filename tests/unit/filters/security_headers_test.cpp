#include "filters/security_headers.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace ward::filters {
namespace {

using ::testing::HasSubstr;
using Fields = std::vector<std::pair<std::string, std::string>>;

const Fields kDefaultsWithoutHsts{
    {"X-Frame-Options", "SAMEORIGIN"},
    {"X-Content-Type-Options", "nosniff"},
    {"X-XSS-Protection", "1; mode=block"},
    {"Referrer-Policy", "strict-origin-when-cross-origin"},
};

class SecurityHeadersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ctx_.request_headers = &request_;
    ctx_.response_headers = &response_;
    ctx_.state = &state_;
    ctx_.status = 200;
  }

  std::unique_ptr<Filter> build(const std::string& yaml) {
    spec_.name = "security_headers";
    spec_.options = YAML::Load(yaml);
    BuildContext build{spec_, reader_, metrics_, runtime_, "global", "global.security_headers"};
    return make_security_headers_filter(build);
  }

  config::ConfigError refused(const std::string& yaml) {
    EXPECT_EQ(build(yaml), nullptr) << yaml;
    auto errors = reader_.take_errors();
    EXPECT_EQ(errors.size(), 1u) << yaml;
    return errors.empty() ? config::ConfigError{} : errors[0];
  }

  // Runs both phases of one request with `filter` and returns the response.
  Fields respond(Filter& filter) {
    EXPECT_EQ(filter.on_request(ctx_), FilterStatus::next);
    filter.on_response(ctx_);
    Fields out;
    response_.for_each([&](const http::HeaderList::Field& f) {
      out.emplace_back(std::string(f.name), std::string(f.value));
    });
    return out;
  }

  config::FilterSpec spec_;
  config::Reader reader_{"test.yaml"};
  observe::Registry metrics_{1};
  RuntimeState runtime_;
  http::HeaderList request_;
  http::HeaderList response_;
  FilterState state_;
  RequestContext ctx_;
};

TEST_F(SecurityHeadersTest, DefaultsOnPlainHttpLeaveOutHsts) {
  auto filter = build("{}");
  ASSERT_NE(filter, nullptr);
  ctx_.tls = false;
  EXPECT_EQ(respond(*filter), kDefaultsWithoutHsts);
}

TEST_F(SecurityHeadersTest, DefaultsOnTlsIncludeHsts) {
  auto filter = build("{}");
  ASSERT_NE(filter, nullptr);
  ctx_.tls = true;
  Fields expected{{"Strict-Transport-Security", "max-age=31536000; includeSubDomains"}};
  expected.insert(expected.end(), kDefaultsWithoutHsts.begin(), kDefaultsWithoutHsts.end());
  EXPECT_EQ(respond(*filter), expected);
}

TEST_F(SecurityHeadersTest, NullOptionsMeanTheDefaults) {
  auto filter = build("~");
  ASSERT_NE(filter, nullptr);
  EXPECT_EQ(respond(*filter), kDefaultsWithoutHsts);
}

TEST_F(SecurityHeadersTest, KeepsAFieldTheUpstreamAlreadySentInAnyCase) {
  auto filter = build("{}");
  ASSERT_NE(filter, nullptr);
  response_.add("x-frame-options", "DENY");
  Fields got = respond(*filter);
  EXPECT_EQ(response_.count("X-Frame-Options"), 1u);
  EXPECT_EQ(response_.get("X-Frame-Options"), "DENY");
  EXPECT_EQ(got.size(), 4u);
}

TEST_F(SecurityHeadersTest, OverrideReplacesTheUpstreamsField) {
  auto filter = build("{override: true}");
  ASSERT_NE(filter, nullptr);
  response_.add("x-frame-options", "ALLOWALL");
  response_.add("X-Frame-Options", "DENY");
  respond(*filter);
  EXPECT_EQ(response_.count("X-Frame-Options"), 1u);
  EXPECT_EQ(response_.get("X-Frame-Options"), "SAMEORIGIN");
}

TEST_F(SecurityHeadersTest, AGivenValueReplacesTheDefault) {
  auto filter = build(R"(
X-Frame-Options: DENY
Strict-Transport-Security: "max-age=63072000; includeSubDomains; preload"
)");
  ASSERT_NE(filter, nullptr);
  ctx_.tls = true;
  respond(*filter);
  EXPECT_EQ(response_.get("X-Frame-Options"), "DENY");
  EXPECT_EQ(response_.get("Strict-Transport-Security"),
            "max-age=63072000; includeSubDomains; preload");
  EXPECT_EQ(response_.size(), 5u);
}

TEST_F(SecurityHeadersTest, NullRemovesADefaultMatchedCaseInsensitively) {
  auto filter = build("{strict-transport-security: null, x-xss-protection: ~}");
  ASSERT_NE(filter, nullptr);
  ctx_.tls = true;
  respond(*filter);
  EXPECT_FALSE(response_.get("Strict-Transport-Security"));
  EXPECT_FALSE(response_.get("X-XSS-Protection"));
  EXPECT_EQ(response_.get("X-Frame-Options"), "SAMEORIGIN");
  EXPECT_EQ(response_.size(), 3u);
}

TEST_F(SecurityHeadersTest, AddsHeadersThatAreNotDefaults) {
  auto filter = build(R"yaml(
Content-Security-Policy: "default-src 'self'"
Permissions-Policy: "geolocation=()"
)yaml");
  ASSERT_NE(filter, nullptr);
  Fields got = respond(*filter);
  ASSERT_EQ(got.size(), 6u);
  EXPECT_EQ(got[4],
            (std::pair<std::string, std::string>{"Content-Security-Policy", "default-src 'self'"}));
  EXPECT_EQ(got[5], (std::pair<std::string, std::string>{"Permissions-Policy", "geolocation=()"}));
}

TEST_F(SecurityHeadersTest, AnHstsValueGivenByTheUserIsStillSentOnTlsOnly) {
  auto filter = build("{strict-transport-security: max-age=60}");
  ASSERT_NE(filter, nullptr);
  ctx_.tls = false;
  respond(*filter);
  EXPECT_FALSE(response_.get("Strict-Transport-Security"));
}

TEST_F(SecurityHeadersTest, HideServerRemovesServerAndPoweredByInAnyCase) {
  auto filter = build("{hide_server: true}");
  ASSERT_NE(filter, nullptr);
  response_.add("Server", "Apache/2.4.1");
  response_.add("x-powered-by", "PHP/5.6");
  response_.add("X-Powered-By", "Express");
  response_.add("Content-Type", "text/html");
  respond(*filter);
  EXPECT_FALSE(response_.get("Server"));
  EXPECT_FALSE(response_.get("X-Powered-By"));
  EXPECT_EQ(response_.get("Content-Type"), "text/html");
}

TEST_F(SecurityHeadersTest, ServerIsKeptByDefault) {
  auto filter = build("{hide_server: false}");
  ASSERT_NE(filter, nullptr);
  response_.add("Server", "Apache");
  respond(*filter);
  EXPECT_EQ(response_.get("Server"), "Apache");
}

TEST_F(SecurityHeadersTest, ALocalReplyGetsTheHeadersToo) {
  auto filter = build("{}");
  ASSERT_NE(filter, nullptr);
  ctx_.tls = true;
  EXPECT_EQ(filter->on_request(ctx_), FilterStatus::next);
  // A later filter (the rate limiter) answered: the response phase still runs.
  ctx_.local_reply = true;
  ctx_.status = 429;
  filter->on_response(ctx_);
  EXPECT_EQ(response_.get("X-Content-Type-Options"), "nosniff");
  EXPECT_TRUE(response_.get("Strict-Transport-Security"));
}

TEST_F(SecurityHeadersTest, RefusesNullForAHeaderThatIsNotADefault) {
  auto error = refused(R"(
X-Frame-Options: DENY
Content-Security-Policy:
)");
  EXPECT_EQ(error.line, 3);
  EXPECT_THAT(error.message, HasSubstr("security_headers.Content-Security-Policy: null removes "
                                       "a default header, and 'Content-Security-Policy' is "
                                       "not one"));
}

TEST_F(SecurityHeadersTest, RefusesAValueThatWouldInjectAField) {
  auto error = refused("{X-Frame-Options: \"DENY\\r\\nSet-Cookie: a=b\"}");
  EXPECT_THAT(error.message, HasSubstr("security_headers.X-Frame-Options: the value contains a "
                                       "carriage return (CR)"));
}

TEST_F(SecurityHeadersTest, RefusesANameThatIsNotAToken) {
  auto error = refused("{\"X Frame\": DENY}");
  EXPECT_THAT(error.message, HasSubstr("security_headers: 'X Frame' is not a valid header name"));
}

TEST_F(SecurityHeadersTest, RefusesAConnectionField) {
  auto error = refused("{Transfer-Encoding: chunked}");
  EXPECT_THAT(error.message, HasSubstr("framing or hop-by-hop"));
}

TEST_F(SecurityHeadersTest, RefusesANonBooleanOption) {
  auto error = refused(R"(
override: sometimes
)");
  EXPECT_EQ(error.line, 2);
  EXPECT_EQ(error.column, 11);
  EXPECT_THAT(error.message,
              HasSubstr("security_headers.override: expected true or false, got 'sometimes'"));
  EXPECT_THAT(refused("{hide_server: [true]}").message,
              HasSubstr("security_headers.hide_server: expected true or false"));
}

TEST_F(SecurityHeadersTest, RefusesAnOptionNameWrittenInAnotherCase) {
  auto error = refused("{Override: true}");
  EXPECT_THAT(error.message, HasSubstr("'Override' is not a header; option names are lower case"));
}

TEST_F(SecurityHeadersTest, RefusesTheSameHeaderTwiceInAnotherCase) {
  auto error = refused(R"(
X-Frame-Options: DENY
x-frame-options: SAMEORIGIN
)");
  EXPECT_EQ(error.line, 3);
  EXPECT_THAT(error.message, HasSubstr("duplicate header 'x-frame-options' (first at line 2)"));
}

TEST_F(SecurityHeadersTest, RefusesAValueThatIsNotAString) {
  auto error = refused("{X-Frame-Options: [DENY]}");
  EXPECT_THAT(error.message, HasSubstr("security_headers.X-Frame-Options: expected a string"));
}

TEST_F(SecurityHeadersTest, RefusesOptionsThatAreNotAMap) {
  auto error = refused("[X-Frame-Options]");
  EXPECT_THAT(error.message, HasSubstr("security_headers: expected a map, got a list"));
}

}  // namespace
}  // namespace ward::filters
