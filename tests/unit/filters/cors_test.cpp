#include "filters/cors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ward::filters {
namespace {

using ::testing::HasSubstr;

class CorsTest : public ::testing::Test {
 protected:
  void SetUp() override { start_request("GET", {}); }

  // A fresh request on the reused context; `origin` empty = no Origin field.
  void start_request(std::string_view method, std::string_view origin) {
    ctx_.reset();
    request_.clear();
    response_.clear();
    state_ = FilterState{};
    ctx_.method = method;
    ctx_.request_headers = &request_;
    ctx_.response_headers = &response_;
    ctx_.state = &state_;
    if (!origin.empty()) {
      request_.add("Origin", origin);
    }
  }
  void preflight(std::string_view origin, std::string_view method, std::string_view headers = {}) {
    start_request("OPTIONS", origin);
    request_.add("Access-Control-Request-Method", method);
    if (!headers.empty()) {
      request_.add("Access-Control-Request-Headers", headers);
    }
  }

  std::unique_ptr<Filter> build(const std::string& yaml) {
    spec_.name = "cors";
    spec_.options = YAML::Load(yaml);
    BuildContext build{spec_, reader_, metrics_, runtime_, "api", "api.cors"};
    return make_cors_filter(build);
  }

  config::ConfigError refused(const std::string& yaml) {
    EXPECT_EQ(build(yaml), nullptr) << yaml;
    auto errors = reader_.take_errors();
    EXPECT_EQ(errors.size(), 1u) << yaml;
    return errors.empty() ? config::ConfigError{} : errors[0];
  }

  // Both phases, as the chain runs them: the upstream answers 200 with
  // whatever the test put in response_, unless the filter answered itself.
  FilterStatus run(Filter& filter) {
    FilterStatus status = filter.on_request(ctx_);
    if (status == FilterStatus::stop) {
      EXPECT_TRUE(ctx_.replied());
      ctx_.local_reply = true;
      ctx_.status = ctx_.reply_status;
    } else {
      EXPECT_FALSE(ctx_.replied());
      ctx_.status = 200;
    }
    filter.on_response(ctx_);
    return status;
  }

  std::optional<std::string> field(std::string_view name) {
    EXPECT_LE(response_.count(name), 1u) << name;
    auto v = response_.get(name);
    return v ? std::optional<std::string>(*v) : std::nullopt;
  }
  // Access-Control-* fields in the response.
  size_t cors_fields() {
    size_t n = 0;
    response_.for_each([&](const http::HeaderList::Field& f) {
      n += http::iequals(f.name.substr(0, 15), "Access-Control-") ? 1 : 0;
    });
    return n;
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

const std::string kApp = "{allow_origins: ['https://app.example.com', 'http://localhost:3000']}";

// ---- actual requests ---------------------------------------------------------

TEST_F(CorsTest, AnAllowedOriginGetsAllowOriginAndVary) {
  auto filter = build(kApp);
  ASSERT_NE(filter, nullptr);
  start_request("GET", "https://app.example.com");
  EXPECT_EQ(run(*filter), FilterStatus::next);
  EXPECT_EQ(field("Access-Control-Allow-Origin"), "https://app.example.com");
  EXPECT_EQ(field("Vary"), "Origin");
  EXPECT_FALSE(field("Access-Control-Allow-Credentials"));
  EXPECT_FALSE(field("Access-Control-Expose-Headers"));
  EXPECT_EQ(cors_fields(), 1u);

  start_request("POST", "http://localhost:3000");
  run(*filter);
  EXPECT_EQ(field("Access-Control-Allow-Origin"), "http://localhost:3000");
}

TEST_F(CorsTest, OriginsMatchCaseInsensitivelyWithDefaultPortsImplied) {
  auto filter = build("{allow_origins: ['HTTPS://App.Example.COM:443']}");
  ASSERT_NE(filter, nullptr);
  for (std::string_view origin : {"https://app.example.com", "https://APP.example.com:443"}) {
    start_request("GET", origin);
    run(*filter);
    // Answered as browsers serialise the origin, whatever the spelling.
    EXPECT_EQ(field("Access-Control-Allow-Origin"), "https://app.example.com") << origin;
  }
}

TEST_F(CorsTest, AnotherSchemeOrPortIsAnotherOrigin) {
  auto filter = build(kApp);
  ASSERT_NE(filter, nullptr);
  for (std::string_view origin :
       {"http://app.example.com", "https://app.example.com:8443", "http://localhost:3001",
        "http://localhost", "https://app.example.com.evil.com", "https://evilapp.example.com"}) {
    start_request("GET", origin);
    run(*filter);
    EXPECT_EQ(cors_fields(), 0u) << origin;
  }
}

TEST_F(CorsTest, ADisallowedOriginGetsNoCorsFieldsButStillVary) {
  auto filter = build(kApp);
  ASSERT_NE(filter, nullptr);
  start_request("GET", "https://evil.com");
  EXPECT_EQ(run(*filter), FilterStatus::next);  // CORS is the browser's check, not a 403
  EXPECT_EQ(cors_fields(), 0u);
  EXPECT_EQ(field("Vary"), "Origin");
}

TEST_F(CorsTest, ARequestWithoutOriginGetsOnlyVary) {
  // The cached copy must not be served to a cross-origin request later.
  auto filter = build(kApp);
  ASSERT_NE(filter, nullptr);
  run(*filter);
  EXPECT_EQ(cors_fields(), 0u);
  EXPECT_EQ(field("Vary"), "Origin");
}

TEST_F(CorsTest, MalformedOrNullOriginsAreNotAllowed) {
  auto filter = build("{allow_origins: ['https://app.example.com'], allow_credentials: true}");
  ASSERT_NE(filter, nullptr);
  for (std::string_view origin :
       {"null", "https://app.example.com/", "https://user@app.example.com", "app.example.com",
        "https://app.example.com:0", "https://app.example.com:99999"}) {
    start_request("GET", origin);
    run(*filter);
    EXPECT_EQ(cors_fields(), 0u) << origin;
  }
}

TEST_F(CorsTest, TwoOriginFieldsAreNotAllowed) {
  auto filter = build(kApp);
  ASSERT_NE(filter, nullptr);
  start_request("GET", "https://app.example.com");
  request_.add("Origin", "https://evil.com");
  run(*filter);
  EXPECT_EQ(cors_fields(), 0u);
}

TEST_F(CorsTest, TheUpstreamsCorsFieldsAreReplacedOrDropped) {
  auto filter = build(kApp);
  ASSERT_NE(filter, nullptr);
  // An upstream that reflects any origin must not widen the allow list.
  start_request("GET", "https://evil.com");
  response_.add("Access-Control-Allow-Origin", "https://evil.com");
  response_.add("access-control-allow-credentials", "true");
  run(*filter);
  EXPECT_EQ(cors_fields(), 0u);

  start_request("GET", "https://app.example.com");
  response_.add("Access-Control-Allow-Origin", "*");
  response_.add("Access-Control-Expose-Headers", "X-Secret");
  run(*filter);
  EXPECT_EQ(field("Access-Control-Allow-Origin"), "https://app.example.com");
  EXPECT_EQ(cors_fields(), 1u);
}

TEST_F(CorsTest, AnyOriginWithoutCredentialsAnswersStarToEveryoneWithoutVary) {
  auto filter = build("{allow_origins: '*'}");
  ASSERT_NE(filter, nullptr);
  for (std::string_view origin : {"https://anything.test", "null", ""}) {
    start_request("GET", origin);
    run(*filter);
    EXPECT_EQ(field("Access-Control-Allow-Origin"), "*") << origin;
    EXPECT_FALSE(field("Vary")) << origin;
  }
  EXPECT_NE(build("{allow_origins: ['*']}"), nullptr);  // the list form
}

TEST_F(CorsTest, WithCredentialsAnAllowedOriginIsEchoedNeverStar) {
  auto filter = build("{allow_origins: ['https://app.example.com'], allow_credentials: true}");
  ASSERT_NE(filter, nullptr);
  start_request("GET", "https://app.example.com");
  run(*filter);
  EXPECT_EQ(field("Access-Control-Allow-Origin"), "https://app.example.com");
  EXPECT_EQ(field("Access-Control-Allow-Credentials"), "true");
  EXPECT_EQ(field("Vary"), "Origin");
}

TEST_F(CorsTest, AnyOriginWithCredentialsEchoesEachOriginAndVaries) {
  auto filter = build("{allow_origins: '*', allow_credentials: true}");
  ASSERT_NE(filter, nullptr);
  start_request("GET", "https://anything.test:8443");
  run(*filter);
  EXPECT_EQ(field("Access-Control-Allow-Origin"), "https://anything.test:8443");
  EXPECT_EQ(field("Access-Control-Allow-Credentials"), "true");
  EXPECT_EQ(field("Vary"), "Origin");

  start_request("GET", "null");  // sandboxed documents: never with credentials
  run(*filter);
  EXPECT_EQ(cors_fields(), 0u);

  start_request("GET", "");
  run(*filter);
  EXPECT_EQ(cors_fields(), 0u);
  EXPECT_EQ(field("Vary"), "Origin");
}

TEST_F(CorsTest, ExposeHeadersGoOnActualResponses) {
  auto filter = build(
      "{allow_origins: ['https://app.example.com'], expose_headers: [X-Request-ID, "
      "RateLimit-Remaining]}");
  ASSERT_NE(filter, nullptr);
  start_request("GET", "https://app.example.com");
  run(*filter);
  EXPECT_EQ(field("Access-Control-Expose-Headers"), "X-Request-ID, RateLimit-Remaining");

  preflight("https://app.example.com", "PUT");
  run(*filter);
  EXPECT_FALSE(field("Access-Control-Expose-Headers"));
}

TEST_F(CorsTest, ExposeHeadersStarIsSentAsIsWithoutCredentials) {
  auto filter = build("{allow_origins: '*', expose_headers: '*'}");
  ASSERT_NE(filter, nullptr);
  start_request("GET", "https://a.test");
  run(*filter);
  EXPECT_EQ(field("Access-Control-Expose-Headers"), "*");
}

TEST_F(CorsTest, WildcardMatchesSubdomainsAtAnyDepthButNotTheDomainItself) {
  auto filter = build("{allow_origins: ['https://*.example.com']}");
  ASSERT_NE(filter, nullptr);
  for (std::string_view origin : {"https://app.example.com", "https://a.b.Example.com"}) {
    start_request("GET", origin);
    run(*filter);
    EXPECT_EQ(field("Access-Control-Allow-Origin"), origin);
  }
  for (std::string_view origin :
       {"https://example.com", "https://badexample.com", "https://app.example.com.evil.com",
        "http://app.example.com", "https://app.example.com:8443"}) {
    start_request("GET", origin);
    run(*filter);
    EXPECT_EQ(cors_fields(), 0u) << origin;
  }
}

TEST_F(CorsTest, WildcardKeepsItsPort) {
  auto filter = build("{allow_origins: ['http://*.dev.test:8080']}");
  ASSERT_NE(filter, nullptr);
  start_request("GET", "http://a.dev.test:8080");
  run(*filter);
  EXPECT_EQ(field("Access-Control-Allow-Origin"), "http://a.dev.test:8080");
  start_request("GET", "http://a.dev.test");
  run(*filter);
  EXPECT_EQ(cors_fields(), 0u);
}

TEST_F(CorsTest, AnEchoedOriginIsCheckedAgainIfEditedAfterTheRequestPhase) {
  auto filter = build("{allow_origins: ['https://*.example.com']}");
  ASSERT_NE(filter, nullptr);
  start_request("GET", "https://app.example.com");
  EXPECT_EQ(filter->on_request(ctx_), FilterStatus::next);
  request_.set("Origin", "https://evil.com");  // a later filter rewrote it
  filter->on_response(ctx_);
  EXPECT_EQ(cors_fields(), 0u);
}

TEST_F(CorsTest, ALocalReplyOfALaterFilterGetsCorsFields) {
  // A page must be able to read the 429 or 401 it caused.
  auto filter = build(kApp);
  ASSERT_NE(filter, nullptr);
  start_request("GET", "https://app.example.com");
  EXPECT_EQ(filter->on_request(ctx_), FilterStatus::next);
  ctx_.local_reply = true;
  ctx_.status = 429;
  filter->on_response(ctx_);
  EXPECT_EQ(field("Access-Control-Allow-Origin"), "https://app.example.com");
}

TEST_F(CorsTest, VaryIsAppendedToTheUpstreamsVaryOnce) {
  auto filter = build(kApp);
  ASSERT_NE(filter, nullptr);
  start_request("GET", "https://app.example.com");
  response_.add("Vary", "Accept-Encoding");
  run(*filter);
  EXPECT_EQ(field("Vary"), "Accept-Encoding, Origin");

  start_request("GET", "https://app.example.com");
  response_.add("Vary", "Accept-Encoding");
  response_.add("vary", "origin");
  run(*filter);
  EXPECT_EQ(response_.count("Vary"), 2u);
  EXPECT_EQ(*response_.get("Vary"), "Accept-Encoding");

  start_request("GET", "https://app.example.com");
  response_.add("Vary", "*");
  run(*filter);
  EXPECT_EQ(field("Vary"), "*");
}

// ---- preflights --------------------------------------------------------------

TEST_F(CorsTest, APreflightIsAnsweredHereWith204AndTheDefaults) {
  auto filter = build(kApp);
  ASSERT_NE(filter, nullptr);
  preflight("https://app.example.com", "PATCH", "content-type,x-api-key");
  EXPECT_EQ(run(*filter), FilterStatus::stop);
  EXPECT_EQ(ctx_.reply_status, 204);
  EXPECT_EQ(field("Access-Control-Allow-Origin"), "https://app.example.com");
  EXPECT_EQ(field("Access-Control-Allow-Methods"), "GET, HEAD, POST, PUT, PATCH, DELETE");
  EXPECT_EQ(field("Access-Control-Allow-Headers"), "content-type,x-api-key");
  EXPECT_EQ(field("Access-Control-Max-Age"), "600");
  EXPECT_EQ(field("Vary"), "Origin");
  EXPECT_FALSE(field("Access-Control-Allow-Credentials"));
}

TEST_F(CorsTest, APreflightWithoutRequestedHeadersGetsNoAllowHeaders) {
  auto filter = build(kApp);
  ASSERT_NE(filter, nullptr);
  preflight("https://app.example.com", "PUT");
  run(*filter);
  EXPECT_FALSE(field("Access-Control-Allow-Headers"));
}

TEST_F(CorsTest, MalformedRequestedHeadersAreNotReflected) {
  auto filter = build(kApp);
  ASSERT_NE(filter, nullptr);
  preflight("https://app.example.com", "PUT", "x-ok, bad header");
  run(*filter);
  EXPECT_FALSE(field("Access-Control-Allow-Headers"));
  EXPECT_TRUE(field("Access-Control-Allow-Origin"));
}

TEST_F(CorsTest, ConfiguredMethodsAndHeadersAreSentAsLists) {
  auto filter = build(R"(
allow_origins: ['https://app.example.com']
allow_methods: [GET, PUT]
allow_headers: [Content-Type, Authorization]
allow_credentials: true
max_age: 1h
)");
  ASSERT_NE(filter, nullptr);
  preflight("https://app.example.com", "DELETE", "x-other");
  EXPECT_EQ(run(*filter), FilterStatus::stop);
  EXPECT_EQ(field("Access-Control-Allow-Methods"), "GET, PUT");
  EXPECT_EQ(field("Access-Control-Allow-Headers"), "Content-Type, Authorization");
  EXPECT_EQ(field("Access-Control-Allow-Credentials"), "true");
  EXPECT_EQ(field("Access-Control-Max-Age"), "3600");
}

TEST_F(CorsTest, AnEmptyAllowHeadersListAllowsOnlySafelistedHeaders) {
  auto filter = build("{allow_origins: '*', allow_headers: []}");
  ASSERT_NE(filter, nullptr);
  preflight("https://a.test", "PUT", "x-custom");
  run(*filter);
  EXPECT_FALSE(field("Access-Control-Allow-Headers"));
  EXPECT_EQ(field("Access-Control-Allow-Origin"), "*");
}

TEST_F(CorsTest, StarMethodsReflectTheRequestedMethod) {
  auto filter = build("{allow_origins: '*', allow_methods: '*', max_age: 0s}");
  ASSERT_NE(filter, nullptr);
  preflight("https://a.test", "PROPFIND");
  run(*filter);
  EXPECT_EQ(field("Access-Control-Allow-Methods"), "PROPFIND");
  EXPECT_EQ(field("Access-Control-Max-Age"), "0");
}

TEST_F(CorsTest, APreflightFromADisallowedOriginIsAnsweredWithoutCorsFields) {
  auto filter = build(kApp);
  ASSERT_NE(filter, nullptr);
  preflight("https://evil.com", "DELETE");
  EXPECT_EQ(run(*filter), FilterStatus::stop);
  EXPECT_EQ(ctx_.reply_status, 204);
  EXPECT_EQ(cors_fields(), 0u);
  EXPECT_EQ(field("Vary"), "Origin");
}

TEST_F(CorsTest, OptionsWithoutARequestedMethodIsNotAPreflight) {
  auto filter = build(kApp);
  ASSERT_NE(filter, nullptr);
  start_request("OPTIONS", "https://app.example.com");
  EXPECT_EQ(run(*filter), FilterStatus::next);
  EXPECT_EQ(field("Access-Control-Allow-Origin"), "https://app.example.com");
  EXPECT_FALSE(field("Access-Control-Allow-Methods"));

  start_request("OPTIONS", "");
  request_.add("Access-Control-Request-Method", "PUT");
  EXPECT_EQ(run(*filter), FilterStatus::next);  // no Origin: not CORS at all
}

// ---- option errors -----------------------------------------------------------

TEST_F(CorsTest, RefusesMissingAllowOrigins) {
  auto error = refused("{allow_credentials: true}");
  EXPECT_EQ(error.line, 1);
  EXPECT_EQ(error.message, "missing required key 'allow_origins' in cors");
}

TEST_F(CorsTest, RefusesAnOriginWithAPathSuggestingTheFix) {
  auto error = refused(R"(
allow_origins:
  - https://app.example.com
  - https://app.example.com/
)");
  EXPECT_EQ(error.line, 4);
  EXPECT_EQ(error.column, 5);
  EXPECT_EQ(error.message,
            "cors.allow_origins[1]: an origin has no path; write 'https://app.example.com'");
}

TEST_F(CorsTest, RefusesOriginsThatAreNotOrigins) {
  EXPECT_THAT(refused("{allow_origins: [app.example.com]}").message,
              HasSubstr("cors.allow_origins[0]: expected an origin such as https://example.com"));
  EXPECT_THAT(refused("{allow_origins: ['https://a.com:99999']}").message,
              HasSubstr("expected an origin"));
  EXPECT_THAT(refused("{allow_origins: ['https://*']}").message, HasSubstr("expected an origin"));
  EXPECT_THAT(refused("{allow_origins: ['null']}").message,
              HasSubstr("cors.allow_origins[0]: 'null' cannot be allowed"));
}

TEST_F(CorsTest, RefusesAWildcardOverATopLevelDomain) {
  EXPECT_THAT(refused("{allow_origins: ['https://*.com']}").message,
              HasSubstr("a wildcard needs a domain of two labels or more"));
}

TEST_F(CorsTest, RefusesStarMixedWithOrigins) {
  EXPECT_THAT(refused("{allow_origins: ['*', 'https://a.com']}").message,
              HasSubstr("cors.allow_origins[0]: '*' allows every origin; give it alone"));
  EXPECT_THAT(refused("{allow_origins: '*', allow_methods: [GET, '*']}").message,
              HasSubstr("cors.allow_methods[1]: '*' stands for everything"));
}

TEST_F(CorsTest, RefusesAllowOriginsOfTheWrongShape) {
  EXPECT_THAT(refused("{allow_origins: https://a.com}").message,
              HasSubstr("cors.allow_origins: expected a list of origins or '*'"));
  EXPECT_THAT(refused("{allow_origins: []}").message,
              HasSubstr("cors.allow_origins: needs at least one origin"));
}

TEST_F(CorsTest, RefusesBadMethodAndHeaderLists) {
  EXPECT_THAT(refused("{allow_origins: '*', allow_methods: ['GET POST']}").message,
              HasSubstr("cors.allow_methods[0]: 'GET POST' is not a valid method"));
  EXPECT_THAT(refused("{allow_origins: '*', allow_methods: []}").message,
              HasSubstr("cors.allow_methods: needs at least one method"));
  EXPECT_THAT(refused("{allow_origins: '*', allow_headers: Content-Type}").message,
              HasSubstr("cors.allow_headers: expected a list or '*'"));
  EXPECT_THAT(refused("{allow_origins: '*', expose_headers: ['X:Y']}").message,
              HasSubstr("cors.expose_headers[0]: 'X:Y' is not a valid"));
}

TEST_F(CorsTest, RefusesExposeStarWithCredentials) {
  auto error = refused("{allow_origins: '*', allow_credentials: true, expose_headers: '*'}");
  EXPECT_THAT(error.message,
              HasSubstr("cors.expose_headers: '*' does not work with allow_credentials"));
}

TEST_F(CorsTest, RefusesAMaxAgeThatIsNotWholeSeconds) {
  EXPECT_THAT(refused("{allow_origins: '*', max_age: 1500ms}").message,
              HasSubstr("cors.max_age: must be whole seconds, got 1500ms"));
  EXPECT_THAT(refused("{allow_origins: '*', max_age: 600}").message,
              HasSubstr("cors.max_age: expected a duration"));
}

TEST_F(CorsTest, RefusesANonBooleanAllowCredentials) {
  EXPECT_THAT(refused("{allow_origins: '*', allow_credentials: 'yes please'}").message,
              HasSubstr("cors.allow_credentials: expected true or false"));
}

TEST_F(CorsTest, RefusesAnUnknownOption) {
  EXPECT_THAT(refused("{allow_origins: '*', allow_origin: x}").message,
              HasSubstr("unknown key 'allow_origin' in cors (did you mean 'allow_origins'?)"));
}

}  // namespace
}  // namespace ward::filters
