#include "filters/request_id.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <thread>
#include <vector>

namespace ward::filters {
namespace {

using ::testing::HasSubstr;

// 8-4-4-4-12 lower-case hex, version 4, variant 10xx (RFC 9562 5.4).
bool is_uuid_v4(std::string_view id) {
  if (id.size() != 36) {
    return false;
  }
  for (size_t i = 0; i < id.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    const char c = id[i];
    if (dash != (c == '-')) {
      return false;
    }
    if (!dash && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return id[14] == '4' && std::string_view("89ab").find(id[19]) != std::string_view::npos;
}

class RequestIdTest : public ::testing::Test {
 protected:
  void SetUp() override { start_request(); }

  // The codec's per-request reset on a reused context.
  void start_request() {
    ctx_.reset();
    request_.clear();
    response_.clear();
    ctx_.request_headers = &request_;
    ctx_.response_headers = &response_;
    ctx_.state = &state_;
  }

  std::unique_ptr<Filter> build(const std::string& yaml) {
    spec_.name = "request_id";
    spec_.options = YAML::Load(yaml);
    BuildContext build{spec_, reader_, metrics_, runtime_, "global", "global.request_id"};
    return make_request_id_filter(build);
  }

  config::ConfigError refused(const std::string& yaml) {
    EXPECT_EQ(build(yaml), nullptr) << yaml;
    auto errors = reader_.take_errors();
    EXPECT_EQ(errors.size(), 1u) << yaml;
    return errors.empty() ? config::ConfigError{} : errors[0];
  }

  // One request through `filter`, answered by the upstream; returns the id.
  std::string run(Filter& filter) {
    EXPECT_EQ(filter.on_request(ctx_), FilterStatus::next);
    ctx_.status = 200;
    filter.on_response(ctx_);
    return ctx_.request_id;
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

TEST_F(RequestIdTest, KeepsAWellFormedIncomingId) {
  auto filter = build("{}");
  ASSERT_NE(filter, nullptr);
  request_.add("x-request-id", "client-42:abc.DEF_9");
  EXPECT_EQ(run(*filter), "client-42:abc.DEF_9");
  EXPECT_EQ(request_.count("X-Request-ID"), 1u);
  EXPECT_EQ(request_.get("X-Request-ID"), "client-42:abc.DEF_9");
  EXPECT_EQ(response_.get("X-Request-ID"), "client-42:abc.DEF_9");
}

TEST_F(RequestIdTest, KeepsAnIdOfExactly128Characters) {
  auto filter = build("{}");
  ASSERT_NE(filter, nullptr);
  const std::string longest(128, 'a');
  request_.add("X-Request-ID", longest);
  EXPECT_EQ(run(*filter), longest);
}

TEST_F(RequestIdTest, GeneratesAUuidV4WhenTheRequestHasNone) {
  auto filter = build("{}");
  ASSERT_NE(filter, nullptr);
  std::string id = run(*filter);
  EXPECT_TRUE(is_uuid_v4(id)) << id;
  EXPECT_EQ(request_.get("X-Request-ID"), id);
  EXPECT_EQ(response_.get("X-Request-ID"), id);
}

TEST_F(RequestIdTest, ReplacesAMalformedIncomingIdUpstreamToo) {
  auto filter = build("{}");
  ASSERT_NE(filter, nullptr);
  for (const std::string& bad :
       {std::string(), std::string(129, 'a'), std::string("has space"), std::string("a/b"),
        std::string("quote\"d"), std::string("caf\xc3\xa9"), std::string("semi;colon")}) {
    start_request();
    request_.add("X-Request-ID", bad);
    std::string id = run(*filter);
    EXPECT_TRUE(is_uuid_v4(id)) << "for '" << bad << "' got " << id;
    EXPECT_EQ(request_.count("X-Request-ID"), 1u);
    EXPECT_EQ(request_.get("X-Request-ID"), id);
  }
}

TEST_F(RequestIdTest, ReplacesARepeatedIncomingId) {
  auto filter = build("{}");
  ASSERT_NE(filter, nullptr);
  request_.add("X-Request-ID", "first");
  request_.add("X-Request-ID", "second");
  std::string id = run(*filter);
  EXPECT_TRUE(is_uuid_v4(id)) << id;
  EXPECT_EQ(request_.count("X-Request-ID"), 1u);
}

TEST_F(RequestIdTest, EveryRequestGetsADifferentId) {
  auto filter = build("{}");
  ASSERT_NE(filter, nullptr);
  std::set<std::string> seen;
  for (int i = 0; i < 10000; ++i) {
    start_request();
    std::string id = run(*filter);
    ASSERT_TRUE(is_uuid_v4(id)) << id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 10000u);
}

TEST_F(RequestIdTest, ThreadsDoNotRepeatEachOthersIds) {
  // Each worker has its own generator: they must be seeded apart.
  auto filter = build("{}");
  ASSERT_NE(filter, nullptr);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2000;
  std::vector<std::vector<std::string>> ids(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      http::HeaderList request;
      RequestContext ctx;
      for (int i = 0; i < kPerThread; ++i) {
        ctx.reset();
        request.clear();
        ctx.request_headers = &request;
        filter->on_request(ctx);
        ids[t].push_back(ctx.request_id);
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  std::set<std::string> all;
  for (const auto& list : ids) {
    all.insert(list.begin(), list.end());
  }
  EXPECT_EQ(all.size(), static_cast<size_t>(kThreads * kPerThread));
}

TEST_F(RequestIdTest, TheResponseCarriesOurIdNotTheUpstreams) {
  auto filter = build("{}");
  ASSERT_NE(filter, nullptr);
  request_.add("X-Request-ID", "from-client");
  EXPECT_EQ(filter->on_request(ctx_), FilterStatus::next);
  response_.add("x-request-id", "made-up-by-upstream");
  filter->on_response(ctx_);
  EXPECT_EQ(response_.count("X-Request-ID"), 1u);
  EXPECT_EQ(response_.get("X-Request-ID"), "from-client");
}

TEST_F(RequestIdTest, ALocalReplyCarriesTheId) {
  auto filter = build("{}");
  ASSERT_NE(filter, nullptr);
  EXPECT_EQ(filter->on_request(ctx_), FilterStatus::next);
  // The rate limiter later in the chain answered 429.
  ctx_.local_reply = true;
  ctx_.status = 429;
  filter->on_response(ctx_);
  EXPECT_TRUE(is_uuid_v4(*response_.get("X-Request-ID")));
  EXPECT_EQ(response_.get("X-Request-ID"), ctx_.request_id);
}

TEST_F(RequestIdTest, UsesTheConfiguredHeader) {
  auto filter = build("{header: X-Correlation-ID}");
  ASSERT_NE(filter, nullptr);
  request_.add("X-Request-ID", "ignored");
  request_.add("X-Correlation-ID", "corr-1");
  EXPECT_EQ(run(*filter), "corr-1");
  EXPECT_EQ(response_.get("X-Correlation-ID"), "corr-1");
  EXPECT_FALSE(response_.get("X-Request-ID"));
  EXPECT_EQ(request_.get("X-Request-ID"), "ignored");
}

TEST_F(RequestIdTest, ASecondFilterReusesTheIdTheFirstChose) {
  auto global = build("{}");
  auto route = build("{header: X-Correlation-ID}");
  ASSERT_NE(global, nullptr);
  ASSERT_NE(route, nullptr);
  request_.add("X-Correlation-ID", "would-be-kept-alone");
  global->on_request(ctx_);
  route->on_request(ctx_);
  const std::string id = ctx_.request_id;
  EXPECT_TRUE(is_uuid_v4(id)) << id;
  EXPECT_EQ(request_.get("X-Correlation-ID"), id);
  route->on_response(ctx_);
  global->on_response(ctx_);
  EXPECT_EQ(response_.get("X-Correlation-ID"), id);
  EXPECT_EQ(response_.get("X-Request-ID"), id);
}

TEST_F(RequestIdTest, AReusedContextKeepsTheIdsBuffer) {
  // ctx.request_id keeps its capacity across reset(): a generated id must
  // reuse it rather than allocate a new string per request.
  auto filter = build("{}");
  ASSERT_NE(filter, nullptr);
  run(*filter);
  const char* buffer = ctx_.request_id.data();
  for (int i = 0; i < 100; ++i) {
    start_request();
    run(*filter);
    ASSERT_EQ(ctx_.request_id.data(), buffer);
  }
}

TEST_F(RequestIdTest, ValidatesIdsByTheDocumentedRule) {
  EXPECT_TRUE(is_valid_request_id("a"));
  EXPECT_TRUE(is_valid_request_id("AZaz09._:-"));
  EXPECT_TRUE(is_valid_request_id(std::string(128, '-')));
  EXPECT_FALSE(is_valid_request_id(""));
  EXPECT_FALSE(is_valid_request_id(std::string(129, 'x')));
  EXPECT_FALSE(is_valid_request_id("a b"));
  EXPECT_FALSE(is_valid_request_id("a\tb"));
  EXPECT_FALSE(is_valid_request_id("a+b"));
}

TEST_F(RequestIdTest, RefusesABadHeaderName) {
  auto error = refused(R"(
header: "X Request Id"
)");
  EXPECT_EQ(error.line, 2);
  EXPECT_EQ(error.column, 9);
  EXPECT_THAT(error.message,
              HasSubstr("request_id.header: 'X Request Id' is not a valid header name"));
  EXPECT_THAT(refused("{header: Connection}").message, HasSubstr("framing or hop-by-hop"));
  EXPECT_THAT(refused("{header: [X-Id]}").message,
              HasSubstr("request_id.header: expected a string"));
}

TEST_F(RequestIdTest, RefusesAnUnknownOption) {
  auto error = refused("{headers: X-Id}");
  EXPECT_THAT(error.message,
              HasSubstr("unknown key 'headers' in request_id (did you mean 'header'?)"));
}

}  // namespace
}  // namespace ward::filters
