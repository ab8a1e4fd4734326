#include "filters/headers.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ward::filters {
namespace {

using ::testing::HasSubstr;

class HeadersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ctx_.request_headers = &request_;
    ctx_.response_headers = &response_;
    ctx_.state = &state_;
  }

  std::unique_ptr<Filter> build(const std::string& yaml) {
    spec_.name = "headers";
    spec_.options = YAML::Load(yaml);
    BuildContext build{spec_, reader_, metrics_, runtime_, "global", "global.headers"};
    return make_headers_filter(build);
  }

  // Builds options that must be refused with exactly one error; returns it.
  config::ConfigError refused(const std::string& yaml) {
    auto filter = build(yaml);
    EXPECT_EQ(filter, nullptr);
    auto errors = reader_.take_errors();
    EXPECT_EQ(errors.size(), 1u) << yaml;
    return errors.empty() ? config::ConfigError{} : errors[0];
  }

  std::vector<std::string> values(const http::HeaderList& list, std::string_view name) {
    std::vector<std::string> out;
    list.for_each([&](const http::HeaderList::Field& f) {
      if (http::iequals(f.name, name)) {
        out.emplace_back(f.value);
      }
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

TEST_F(HeadersTest, RequestSetReplacesEveryFieldOfThatNameInAnyCase) {
  auto filter = build("{request_set: {X-Env: prod}}");
  ASSERT_NE(filter, nullptr);
  request_.add("x-env", "dev");
  request_.add("X-ENV", "test");
  request_.add("Accept", "*/*");
  EXPECT_EQ(filter->on_request(ctx_), FilterStatus::next);
  EXPECT_EQ(values(request_, "X-Env"), std::vector<std::string>{"prod"});
  EXPECT_EQ(request_.get("Accept"), "*/*");
  EXPECT_TRUE(response_.empty());
}

TEST_F(HeadersTest, RequestRemoveDropsEveryFieldOfThatName) {
  auto filter = build("{request_remove: [Cookie, x-debug]}");
  ASSERT_NE(filter, nullptr);
  request_.add("Cookie", "a=1");
  request_.add("cookie", "b=2");
  request_.add("X-Debug", "1");
  request_.add("Accept", "*/*");
  filter->on_request(ctx_);
  EXPECT_FALSE(request_.get("Cookie"));
  EXPECT_FALSE(request_.get("X-Debug"));
  EXPECT_EQ(request_.size(), 1u);
}

TEST_F(HeadersTest, HostMayBeSet) {
  auto filter = build("{request_set: {Host: internal.svc}}");
  ASSERT_NE(filter, nullptr);
  request_.add("Host", "api.example.com");
  filter->on_request(ctx_);
  EXPECT_EQ(values(request_, "host"), std::vector<std::string>{"internal.svc"});
}

TEST_F(HeadersTest, ResponseEditsApplyToTheUpstreamResponseOnly) {
  auto filter = build(R"(
response_set: {Cache-Control: no-store, X-Served-By: ward}
response_remove: [X-Backend-Version]
)");
  ASSERT_NE(filter, nullptr);
  request_.add("X-Backend-Version", "kept on the request");
  filter->on_request(ctx_);
  EXPECT_EQ(request_.get("X-Backend-Version"), "kept on the request");
  EXPECT_FALSE(request_.get("Cache-Control"));

  ctx_.status = 200;
  response_.add("Cache-Control", "max-age=60");
  response_.add("X-Backend-Version", "1.2.3");
  filter->on_response(ctx_);
  EXPECT_EQ(values(response_, "Cache-Control"), std::vector<std::string>{"no-store"});
  EXPECT_EQ(response_.get("X-Served-By"), "ward");
  EXPECT_FALSE(response_.get("X-Backend-Version"));
}

TEST_F(HeadersTest, ResponseEditsApplyToLocalReplies) {
  auto filter = build("{response_set: {X-Served-By: ward}}");
  ASSERT_NE(filter, nullptr);
  ctx_.local_reply = true;
  ctx_.status = 429;
  filter->on_response(ctx_);
  EXPECT_EQ(response_.get("X-Served-By"), "ward");
}

TEST_F(HeadersTest, ScalarValuesAreSentAsWritten) {
  auto filter = build("{response_set: {X-Retries: 3, X-Enabled: true, X-Empty: ''}}");
  ASSERT_NE(filter, nullptr);
  filter->on_response(ctx_);
  EXPECT_EQ(response_.get("X-Retries"), "3");
  EXPECT_EQ(response_.get("X-Enabled"), "true");
  EXPECT_EQ(response_.get("X-Empty"), "");
}

TEST_F(HeadersTest, EmptyOptionsChangeNothing) {
  auto filter = build("{}");
  ASSERT_NE(filter, nullptr);
  request_.add("A", "1");
  response_.add("B", "2");
  filter->on_request(ctx_);
  filter->on_response(ctx_);
  EXPECT_EQ(request_.size(), 1u);
  EXPECT_EQ(response_.size(), 1u);
  EXPECT_TRUE(reader_.take_errors().empty());
}

// Every option refuses every framing and hop-by-hop name, in any case.
class HeadersConnectionFieldTest
    : public HeadersTest,
      public ::testing::WithParamInterface<std::tuple<std::string, std::string>> {};

TEST_P(HeadersConnectionFieldTest, IsRefusedInEveryOption) {
  const auto& [option, name] = GetParam();
  const bool is_set = option.ends_with("_set");
  std::string yaml =
      is_set ? "{" + option + ": {" + name + ": x}}" : "{" + option + ": [" + name + "]}";
  auto error = refused(yaml);
  EXPECT_EQ(error.line, 1);
  std::string path = "headers." + option + (is_set ? "" : "[0]");
  EXPECT_THAT(error.message, HasSubstr(path + ": '" + name + "'"));
  EXPECT_THAT(error.message, HasSubstr("framing or hop-by-hop"));
}

INSTANTIATE_TEST_SUITE_P(AllNames, HeadersConnectionFieldTest,
                         ::testing::Combine(::testing::Values("request_set", "request_remove",
                                                              "response_set", "response_remove"),
                                            ::testing::Values("Content-Length", "transfer-encoding",
                                                              "Connection", "Keep-Alive", "Upgrade",
                                                              "TE", "Trailer",
                                                              "PROXY-CONNECTION")));

TEST_F(HeadersTest, RefusesANameThatIsNotAToken) {
  auto error = refused(R"(
request_set:
  X-Ok: fine
  "Bad Name": x
)");
  EXPECT_EQ(error.line, 4);
  EXPECT_EQ(error.column, 3);
  EXPECT_THAT(error.message,
              HasSubstr("headers.request_set: 'Bad Name' is not a valid header name"));
}

TEST_F(HeadersTest, RefusesANonTokenNameInARemoveList) {
  auto error = refused("{response_remove: ['X:Y']}");
  EXPECT_THAT(error.message, HasSubstr("headers.response_remove[0]: 'X:Y' is not a valid"));
}

TEST_F(HeadersTest, RefusesValuesThatWouldSplitTheHeader) {
  EXPECT_THAT(refused(R"({request_set: {X-A: "ok\r\nX-Injected: 1"}})").message,
              HasSubstr("headers.request_set.X-A: the value contains a carriage return (CR)"));
  EXPECT_THAT(refused(R"({response_set: {X-A: "ok\nX-Injected: 1"}})").message,
              HasSubstr("headers.response_set.X-A: the value contains a line feed (LF)"));
  EXPECT_THAT(refused(R"({response_set: {X-A: "a\0b"}})").message,
              HasSubstr("the value contains a NUL byte"));
  EXPECT_THAT(refused(R"({response_set: {X-A: "a\x1bb"}})").message,
              HasSubstr("the value contains the control character 0x1b"));
}

TEST_F(HeadersTest, RefusesValuesWithSurroundingWhitespace) {
  auto error = refused(R"({response_set: {X-A: " padded"}})");
  EXPECT_THAT(error.message, HasSubstr("leading or trailing whitespace"));
}

TEST_F(HeadersTest, AllowsTabsInsideValues) {
  EXPECT_NE(build("{response_set: {X-A: \"a\\tb\"}}"), nullptr);
}

TEST_F(HeadersTest, RefusesASetWithoutAValue) {
  auto error = refused(R"(
request_set:
  X-A:
)");
  EXPECT_EQ(error.line, 3);
  EXPECT_THAT(error.message,
              HasSubstr("headers.request_set.X-A: expected a value (remove a header with "
                        "request_remove)"));
}

TEST_F(HeadersTest, RefusesANameBothSetAndRemoved) {
  auto error = refused(R"(
response_set: {X-A: "1"}
response_remove: [x-a]
)");
  EXPECT_EQ(error.line, 3);
  EXPECT_THAT(error.message,
              HasSubstr("headers.response_remove[0]: 'x-a' is also in headers.response_set"));
}

TEST_F(HeadersTest, RefusesTheSameNameTwiceInAnotherCase) {
  auto error = refused(R"(
request_set:
  X-A: "1"
  x-a: "2"
)");
  EXPECT_EQ(error.line, 4);
  EXPECT_THAT(error.message,
              HasSubstr("headers.request_set: duplicate header 'x-a' (first at line 3)"));
}

TEST_F(HeadersTest, RefusesWrongShapes) {
  EXPECT_THAT(refused("{request_set: [X-A]}").message,
              HasSubstr("headers.request_set: expected a map of header name to value"));
  EXPECT_THAT(refused("{request_remove: X-A}").message,
              HasSubstr("headers.request_remove: expected a list"));
  EXPECT_THAT(refused("{response_set: {X-A: [1, 2]}}").message,
              HasSubstr("headers.response_set.X-A: expected a string"));
}

TEST_F(HeadersTest, RefusesAnUnknownOptionWithASuggestion) {
  auto error = refused("{request_sets: {X-A: b}}");
  EXPECT_THAT(error.message, HasSubstr("unknown key 'request_sets' in headers"));
  EXPECT_THAT(error.message, HasSubstr("did you mean 'request_set'?"));
}

}  // namespace
}  // namespace ward::filters
