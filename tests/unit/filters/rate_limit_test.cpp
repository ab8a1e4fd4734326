#include "filters/rate_limit.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "filters/bucket_table.h"

namespace ward::filters {
namespace {

constexpr int64_t kMs = 1'000'000;  // ns
constexpr int64_t kSecond = 1'000 * kMs;
constexpr int64_t kT0 = 1'000 * kSecond;  // an arbitrary steady-clock reading

class RateLimitTest : public ::testing::Test {
 protected:
  // Builds a filter from inline YAML options, as the registry would for the
  // chain `chain` (label "<chain>.rate_limit").
  std::unique_ptr<Filter> build(const std::string& yaml, const std::string& chain = "api") {
    config::FilterSpec spec;
    spec.name = "rate_limit";
    spec.options = YAML::Load(yaml);
    BuildContext ctx{spec, reader_, metrics_, runtime_, chain, chain + ".rate_limit"};
    return make_rate_limit_filter(ctx);
  }

  // Both phases of one request, as the chain runs them; a refusal becomes
  // the local reply. Returns the response status. The request carries
  // request_headers_; the response's fields are in response_headers_.
  int send(Filter& filter, int64_t now_ns, std::string_view client_ip = "10.0.0.1") {
    begin(now_ns, client_ip);
    FilterStatus status = filter.on_request(ctx_);
    EXPECT_EQ(status == FilterStatus::stop, ctx_.replied());
    ctx_.response_headers = &response_headers_;
    response_headers_.clear();
    for (const auto& [name, value] : upstream_fields_) {
      response_headers_.add(name, value);
    }
    ctx_.status = ctx_.replied() ? ctx_.reply_status : 200;
    ctx_.local_reply = ctx_.replied();
    filter.on_response(ctx_);
    return ctx_.status;
  }

  // A fresh context for a request from `client_ip` at `now_ns`, as the
  // codec prepares it for the request phase.
  void begin(int64_t now_ns, std::string_view client_ip) {
    ctx_.reset();
    ctx_.method = "GET";
    ctx_.path = "/";
    ctx_.request_headers = &request_headers_;
    ctx_.client_ip_text = client_ip;
    ctx_.now_ns = now_ns;
    state_ = FilterState{};
    ctx_.state = &state_;
  }

  // Sends until a request is refused (at most `limit`); returns how many passed.
  int drain(Filter& filter, int64_t now_ns, std::string_view client_ip = "10.0.0.1",
            int limit = 1'000) {
    int passed = 0;
    while (passed < limit && send(filter, now_ns, client_ip) == 200) {
      ++passed;
    }
    return passed;
  }

  std::string response(std::string_view name) const {
    EXPECT_LE(response_headers_.count(name), 1u) << name;
    auto v = response_headers_.get(name);
    return v ? std::string(*v) : "<absent>";
  }

  uint64_t requests(std::string_view filter, std::string_view result) {
    return metrics_.counter("ward_ratelimit_requests_total", "", {"filter", "result"})
        .value({filter, result});
  }
  int64_t keys(std::string_view filter) {
    return metrics_.gauge("ward_ratelimit_keys", "", {"filter"}).value({filter});
  }
  uint64_t evictions(std::string_view filter) {
    return metrics_.counter("ward_ratelimit_evictions_total", "", {"filter"}).value({filter});
  }
  // The table a filter uses, without creating one.
  std::shared_ptr<BucketTable> table(const std::string& name) {
    return runtime_.get_or_create<BucketTable>("rate_limit:" + name, [] {
      ADD_FAILURE() << "no such table";
      return std::make_shared<BucketTable>();
    });
  }

  // "line:column: message" of every reported error.
  std::vector<std::string> errors() {
    std::vector<std::string> out;
    for (const auto& e : reader_.take_errors()) {
      out.push_back(std::to_string(e.line) + ":" + std::to_string(e.column) + ": " + e.message);
    }
    return out;
  }

  observe::Registry metrics_{4};
  RuntimeState runtime_;
  config::Reader reader_{"test.yaml"};
  http::HeaderList request_headers_;
  http::HeaderList response_headers_;
  // Fields the response has before on_response (the upstream's).
  std::vector<std::pair<std::string, std::string>> upstream_fields_;
  FilterState state_;
  RequestContext ctx_;
};

constexpr const char* kThirtyPerMinute = "rate: 30/minute\nburst: 10\n";

// ---------------------------------------------------------------------------
// The bucket

TEST_F(RateLimitTest, BurstPassesAtOnceThenTheNextRequestAnswers429) {
  auto f = build(kThirtyPerMinute);
  ASSERT_TRUE(f);
  for (int i = 1; i <= 10; ++i) {
    ASSERT_EQ(send(*f, kT0), 200) << "request " << i;
  }
  EXPECT_EQ(send(*f, kT0), 429);
  EXPECT_EQ(ctx_.reply_error, "rate_limited");
}

TEST_F(RateLimitTest, OneTokenReturnsEveryIntervalOfTheRate) {
  auto f = build(kThirtyPerMinute);  // T = 60 s / 30 = 2 s
  ASSERT_EQ(drain(*f, kT0), 10);
  EXPECT_EQ(send(*f, kT0 + 2 * kSecond - 1), 429);  // one nanosecond early
  EXPECT_EQ(send(*f, kT0 + 2 * kSecond), 200);
  EXPECT_EQ(send(*f, kT0 + 2 * kSecond), 429);
  EXPECT_EQ(drain(*f, kT0 + 8 * kSecond), 3);  // tokens at 4, 6 and 8 s
}

TEST_F(RateLimitTest, RefusedRequestsDoNotDelayTheNextToken) {
  auto f = build(kThirtyPerMinute);
  ASSERT_EQ(drain(*f, kT0), 10);
  for (int i = 0; i < 50; ++i) {
    ASSERT_EQ(send(*f, kT0 + kSecond), 429);
  }
  EXPECT_EQ(send(*f, kT0 + 2 * kSecond), 200);
}

TEST_F(RateLimitTest, IdleClientGetsAFullBurstAndNoMore) {
  auto f = build(kThirtyPerMinute);
  ASSERT_EQ(drain(*f, kT0), 10);
  EXPECT_EQ(drain(*f, kT0 + 3600 * kSecond), 10);
}

TEST_F(RateLimitTest, DefaultBurstIsOneSecondOfRateAndAtLeastOne) {
  struct Case {
    const char* rate;
    const char* limit;
    const char* policy;
  };
  for (const Case& c : {Case{"100/second", "100", "100;w=1"}, Case{"120/minute", "2", "2;w=1"},
                        Case{"90/minute", "1", "1;w=1"}, Case{"30/minute", "1", "1;w=2"},
                        Case{"5000/hour", "1", "1;w=1"}, Case{"1/hour", "1", "1;w=3600"}}) {
    auto f = build(std::string("rate: ") + c.rate, c.rate);  // a table per case
    ASSERT_TRUE(f) << c.rate;
    ASSERT_EQ(send(*f, kT0), 200);
    EXPECT_EQ(response("RateLimit-Limit"), c.limit) << c.rate;
    EXPECT_EQ(response("RateLimit-Policy"), c.policy) << c.rate;
  }
}

// ---------------------------------------------------------------------------
// Response headers

TEST_F(RateLimitTest, AllowedResponseCarriesTheRateLimitHeaders) {
  auto f = build(kThirtyPerMinute);
  ASSERT_EQ(send(*f, kT0), 200);
  EXPECT_EQ(response("RateLimit-Limit"), "10");
  EXPECT_EQ(response("RateLimit-Remaining"), "9");
  EXPECT_EQ(response("RateLimit-Reset"), "2");         // the token just taken returns in 2 s
  EXPECT_EQ(response("RateLimit-Policy"), "10;w=20");  // 10 tokens at one per 2 s
  EXPECT_EQ(response("Retry-After"), "<absent>");
  ASSERT_EQ(drain(*f, kT0, "10.0.0.1", 8), 8);
  EXPECT_EQ(response("RateLimit-Remaining"), "1");
  ASSERT_EQ(send(*f, kT0), 200);
  EXPECT_EQ(response("RateLimit-Remaining"), "0");
  EXPECT_EQ(response("RateLimit-Reset"), "2");
}

// An upstream's own RateLimit-* fields would contradict ward's: each is
// replaced (any case), once, and the response's other fields stay; so does
// its Retry-After unless ward refuses the request.
TEST_F(RateLimitTest, EachOwnFieldReplacesTheUpstreamsRetryAfterOnlyOnRefusal) {
  auto f = build(kThirtyPerMinute);
  upstream_fields_ = {
      {"X-App", "1"},         {"ratelimit-remaining", "999"},   {"RATELIMIT-LIMIT", "5000"},
      {"Retry-After", "120"}, {"RateLimit-Policy", "5000;w=1"}, {"RateLimit-Reset", "60"}};
  ASSERT_EQ(send(*f, kT0), 200);
  EXPECT_EQ(response("RateLimit-Limit"), "10");
  EXPECT_EQ(response("RateLimit-Remaining"), "9");
  EXPECT_EQ(response("RateLimit-Reset"), "2");
  EXPECT_EQ(response("RateLimit-Policy"), "10;w=20");
  EXPECT_EQ(response("Retry-After"), "120");  // allowed: the upstream's own (a 503's) stays
  EXPECT_EQ(response("X-App"), "1");
  upstream_fields_ = {{"X-App", "1"}, {"retry-after", "0"}};
  ASSERT_EQ(drain(*f, kT0), 9);  // refused: ward's Retry-After, once
  EXPECT_EQ(response("Retry-After"), "2");
  EXPECT_EQ(response("RateLimit-Remaining"), "0");
}

TEST_F(RateLimitTest, EmptyBucketAnswers429WithRetryAfter) {
  auto f = build(kThirtyPerMinute);
  ASSERT_EQ(drain(*f, kT0), 10);  // the refusal that ended the drain:
  EXPECT_EQ(ctx_.status, 429);
  EXPECT_TRUE(ctx_.local_reply);
  EXPECT_EQ(response("RateLimit-Limit"), "10");
  EXPECT_EQ(response("RateLimit-Remaining"), "0");
  EXPECT_EQ(response("RateLimit-Reset"), "2");
  EXPECT_EQ(response("RateLimit-Policy"), "10;w=20");
  EXPECT_EQ(response("Retry-After"), "2");
}

TEST_F(RateLimitTest, RetryAfterCountsDownToTheNextTokenRoundedUp) {
  auto f = build(kThirtyPerMinute);
  ASSERT_EQ(drain(*f, kT0), 10);
  ASSERT_EQ(send(*f, kT0 + 2 * kSecond), 200);  // the next token: due at 4 s
  ASSERT_EQ(send(*f, kT0 + 2500 * kMs), 429);   // 1.5 s to go
  EXPECT_EQ(response("Retry-After"), "2");
  EXPECT_EQ(response("RateLimit-Reset"), "2");
  ASSERT_EQ(send(*f, kT0 + 3500 * kMs), 429);  // 0.5 s to go
  EXPECT_EQ(response("Retry-After"), "1");
  EXPECT_EQ(response("RateLimit-Reset"), "1");
}

TEST_F(RateLimitTest, RetryAfterIsNeverZero) {
  auto f = build("rate: 1000/second\nburst: 1\n");  // T = 1 ms
  ASSERT_EQ(send(*f, kT0), 200);
  ASSERT_EQ(send(*f, kT0 + 999'999), 429);  // 1 ns to go
  EXPECT_EQ(response("Retry-After"), "1");
  EXPECT_EQ(response("RateLimit-Reset"), "1");
  EXPECT_EQ(response("RateLimit-Policy"), "1;w=1");
}

TEST_F(RateLimitTest, HeadersReplaceTheUpstreamsOwn) {
  auto f = build(kThirtyPerMinute);
  ctx_.reset();
  ctx_.request_headers = &request_headers_;
  ctx_.client_ip_text = "10.0.0.1";
  ctx_.now_ns = kT0;
  ctx_.state = &state_;
  ASSERT_EQ(f->on_request(ctx_), FilterStatus::next);
  response_headers_.add("RateLimit-Limit", "1000");
  response_headers_.add("ratelimit-remaining", "999");
  response_headers_.add("Content-Type", "text/plain");
  ctx_.response_headers = &response_headers_;
  ctx_.status = 503;  // whatever the upstream said
  f->on_response(ctx_);
  EXPECT_EQ(response("RateLimit-Limit"), "10");  // response() also checks there is one
  EXPECT_EQ(response("RateLimit-Remaining"), "9");
  EXPECT_EQ(response("Content-Type"), "text/plain");
}

// ---------------------------------------------------------------------------
// Keys

TEST_F(RateLimitTest, ClientsHaveIndependentBuckets) {
  auto f = build(kThirtyPerMinute);
  ASSERT_EQ(drain(*f, kT0, "10.0.0.1"), 10);
  EXPECT_EQ(drain(*f, kT0, "10.0.0.2"), 10);
  EXPECT_EQ(drain(*f, kT0, "2001:db8::1"), 10);
}

TEST_F(RateLimitTest, HeaderKeyGivesEachValueItsOwnBucket) {
  auto f = build(std::string(kThirtyPerMinute) + "key: header:X-User\n");
  ASSERT_TRUE(f);
  request_headers_.add("x-user", "alice");  // header names are case-insensitive
  ASSERT_EQ(drain(*f, kT0, "10.0.0.1"), 10);
  EXPECT_EQ(send(*f, kT0, "10.0.0.2"), 429);  // alice from elsewhere: same bucket
  request_headers_.set("X-User", "bob");
  EXPECT_EQ(drain(*f, kT0, "10.0.0.1"), 10);  // bob from alice's address: his own
}

TEST_F(RateLimitTest, RequestWithoutTheHeaderCountsUnderTheClientIp) {
  auto f = build(std::string(kThirtyPerMinute) + "key: header:X-User\n");
  ASSERT_EQ(drain(*f, kT0, "10.0.0.1"), 10);
  request_headers_.add("X-User", "  ");  // empty once trimmed: no key either
  EXPECT_EQ(send(*f, kT0, "10.0.0.1"), 429);
  EXPECT_EQ(send(*f, kT0, "10.0.0.2"), 200);
  request_headers_.set("X-User", "carol");
  EXPECT_EQ(send(*f, kT0, "10.0.0.1"), 200);
}

TEST_F(RateLimitTest, CookieKeyReadsTheNamedCookie) {
  auto f = build(std::string(kThirtyPerMinute) + "key: cookie:session\n");
  ASSERT_TRUE(f);
  request_headers_.add("Cookie", "theme=dark; session=abc123; lang=en");
  ASSERT_EQ(drain(*f, kT0, "10.0.0.1"), 10);
  EXPECT_EQ(send(*f, kT0, "10.0.0.2"), 429);  // same session, other address
  // Cookie names are case-sensitive, and may come in separate fields (HTTP/2).
  request_headers_.clear();
  request_headers_.add("Cookie", "Session=abc123");
  request_headers_.add("cookie", "session=abc123");
  EXPECT_EQ(send(*f, kT0, "10.0.0.3"), 429);
  request_headers_.clear();
  request_headers_.add("Cookie", "session=xyz");
  EXPECT_EQ(send(*f, kT0, "10.0.0.1"), 200);
}

TEST_F(RateLimitTest, RequestWithoutTheCookieCountsUnderTheClientIp) {
  auto f = build(std::string(kThirtyPerMinute) + "key: cookie:session\n");
  request_headers_.add("Cookie", "theme=dark");
  ASSERT_EQ(drain(*f, kT0, "10.0.0.1"), 10);
  request_headers_.clear();
  EXPECT_EQ(send(*f, kT0, "10.0.0.1"), 429);  // no Cookie at all: the same bucket
  request_headers_.add("Cookie", "session=");
  EXPECT_EQ(send(*f, kT0, "10.0.0.1"), 429);  // an empty value is no key
}

TEST_F(RateLimitTest, NamespacesKeepHeaderCookieAndIpBucketsApart) {
  // Three filters on one table, each reading its key from somewhere else.
  auto by_ip = build(std::string(kThirtyPerMinute) + "share: s\n", "a");
  auto by_header = build(std::string(kThirtyPerMinute) + "share: s\nkey: header:X-Id\n", "b");
  auto by_cookie = build(std::string(kThirtyPerMinute) + "share: s\nkey: cookie:X-Id\n", "c");
  ASSERT_TRUE(by_ip && by_header && by_cookie);
  ASSERT_EQ(drain(*by_ip, kT0, "10.0.0.9"), 10);
  // A header or cookie whose value is that IP is not that client.
  request_headers_.add("X-Id", "10.0.0.9");
  EXPECT_EQ(drain(*by_header, kT0, "10.0.0.1"), 10);
  request_headers_.clear();
  request_headers_.add("Cookie", "X-Id=10.0.0.9");
  EXPECT_EQ(drain(*by_cookie, kT0, "10.0.0.1"), 10);
  // Without its header the request counts under the client IP: the bucket
  // the client_ip filter drained.
  request_headers_.clear();
  EXPECT_EQ(send(*by_header, kT0, "10.0.0.9"), 429);
}

TEST_F(RateLimitTest, LongKeysAreHashedNotStored) {
  auto f = build(std::string(kThirtyPerMinute) + "key: header:X-Token\n");
  std::string long_value(8'000, 'a');
  request_headers_.add("X-Token", long_value);
  ASSERT_EQ(drain(*f, kT0), 10);
  long_value.back() = 'b';  // differs only in its last byte: another key
  request_headers_.set("X-Token", long_value);
  EXPECT_EQ(drain(*f, kT0), 10);
  EXPECT_EQ(table("api.rate_limit")->size(), 2u);
}

// ---------------------------------------------------------------------------
// Options that change the answer

TEST_F(RateLimitTest, DryRunCountsButPassesAndChangesNothing) {
  auto f = build(std::string(kThirtyPerMinute) + "dry_run: true\n");
  ASSERT_TRUE(f);
  for (int i = 0; i < 15; ++i) {
    ASSERT_EQ(send(*f, kT0), 200);
    EXPECT_FALSE(ctx_.replied());
    EXPECT_EQ(response_headers_.size(), 0u);  // no RateLimit-* either
  }
  EXPECT_EQ(requests("api.rate_limit", "allowed"), 10u);
  EXPECT_EQ(requests("api.rate_limit", "dry_run"), 5u);
  EXPECT_EQ(requests("api.rate_limit", "limited"), 0u);
  // What would have been refused took no token: the next one is due at 2 s.
  send(*f, kT0 + 2 * kSecond);
  send(*f, kT0 + 2 * kSecond);
  EXPECT_EQ(requests("api.rate_limit", "allowed"), 11u);
  EXPECT_EQ(requests("api.rate_limit", "dry_run"), 6u);
}

TEST_F(RateLimitTest, CustomStatusIsUsedForRefusals) {
  auto f = build(std::string(kThirtyPerMinute) + "status: 503\n");
  ASSERT_EQ(drain(*f, kT0), 10);
  EXPECT_EQ(ctx_.reply_status, 503);
  EXPECT_EQ(ctx_.reply_error, "rate_limited");
  EXPECT_EQ(response("Retry-After"), "2");
}

TEST_F(RateLimitTest, FiltersSharingANameShareBuckets) {
  auto api = build(std::string(kThirtyPerMinute) + "share: login\n", "api");
  auto web = build(std::string(kThirtyPerMinute) + "share: login\n", "web");
  ASSERT_TRUE(api && web);
  ASSERT_EQ(drain(*api, kT0, "10.0.0.1", 4), 4);
  ASSERT_EQ(drain(*web, kT0, "10.0.0.1"), 6);  // 10 for both together
  EXPECT_EQ(send(*api, kT0), 429);
  // One table, one set of numbers, named after the share.
  EXPECT_EQ(requests("login", "allowed"), 10u);
  EXPECT_EQ(requests("login", "limited"), 2u);
  EXPECT_EQ(keys("login"), 1);
}

TEST_F(RateLimitTest, FiltersWithoutShareHaveTheirOwnBuckets) {
  auto api = build(kThirtyPerMinute, "api");
  auto web = build(kThirtyPerMinute, "web");
  ASSERT_EQ(drain(*api, kT0), 10);
  EXPECT_EQ(drain(*web, kT0), 10);
  EXPECT_EQ(requests("api.rate_limit", "limited"), 1u);
  EXPECT_EQ(requests("web.rate_limit", "limited"), 1u);
}

TEST_F(RateLimitTest, RebuiltFilterKeepsItsBuckets) {
  auto before = build(kThirtyPerMinute);
  ASSERT_EQ(drain(*before, kT0), 10);
  // A reload builds the route's filters again with the same runtime state:
  // clients must not get a fresh burst out of it.
  auto after = build(kThirtyPerMinute);
  before.reset();
  EXPECT_EQ(send(*after, kT0), 429);
}

// ---------------------------------------------------------------------------
// Option errors

TEST_F(RateLimitTest, EveryBadOptionIsReportedAtItsValue) {
  struct Case {
    std::string yaml;
    std::string error;
  };
  const std::vector<Case> cases = {
      {"burst: 5", "1:1: missing required key 'rate' in rate_limit"},
      {"rate: 30/fortnight",
       "1:7: rate_limit.rate: expected a rate such as 30/minute, 100/second or 5000/hour, got "
       "'30/fortnight'"},
      {"rate: 0/second",
       "1:7: rate_limit.rate: expected a rate such as 30/minute, 100/second or 5000/hour, got "
       "'0/second'"},
      {"rate: [30, minute]",
       "1:7: rate_limit.rate: expected a rate such as 30/minute, 100/second or 5000/hour, got a "
       "list"},
      {"rate: 1/s\nburst: 0",
       "2:8: rate_limit.burst: expected a whole number from 1 to 1000000000, got '0'"},
      {"rate: 1/s\nburst: ten",
       "2:8: rate_limit.burst: expected a whole number from 1 to 1000000000, got 'ten'"},
      {"rate: 1/h\nburst: 100000",
       "2:8: rate_limit.burst: 100000 tokens at 1/h take more than 10 years to refill; lower "
       "burst or raise rate"},
      {"rate: 1/s\nkey: client-ip",
       "2:6: rate_limit.key: expected client_ip, header:NAME or cookie:NAME, got 'client-ip'"},
      {"rate: 1/s\nkey: 'header:'",
       "2:6: rate_limit.key: '' is not a header name (letters, digits and !#$%&'*+-.^_`|~)"},
      {"rate: 1/s\nkey: header:X User",
       "2:6: rate_limit.key: 'X User' is not a header name (letters, digits and "
       "!#$%&'*+-.^_`|~)"},
      {"rate: 1/s\nkey: cookie:a;b",
       "2:6: rate_limit.key: 'a;b' is not a cookie name (letters, digits and !#$%&'*+-.^_`|~)"},
      {"rate: 1/s\nstatus: 200",
       "2:9: rate_limit.status: expected a whole number from 400 to 599, got '200'"},
      {"rate: 1/s\nstatus: 600",
       "2:9: rate_limit.status: expected a whole number from 400 to 599, got '600'"},
      {"rate: 1/s\nshare: api.login",
       "2:8: rate_limit.share: expected a name of 1 to 64 letters, digits, '_' or '-', got "
       "'api.login'"},
      {"rate: 1/s\nshare: ''",
       "2:8: rate_limit.share: expected a name of 1 to 64 letters, digits, '_' or '-', got ''"},
      {"rate: 1/s\ndry_run: maybe",
       "2:10: rate_limit.dry_run: expected true or false, got 'maybe'"},
      {"rate: 1/s\nstore: rediss://cache:6379",
       "2:8: rate_limit.store: rediss:// (TLS) is not supported yet"},
      {"rate: 1/s\nstore: redis://cache:99999",
       "2:8: rate_limit.store: expected a port from 1 to 65535 after ':'"},
      {"rate: 1/s\nstore_timeout: 0ms", "2:16: rate_limit.store_timeout: must be greater than 0"},
      {"rate: 1/s\nstore: memcached",
       "2:8: rate_limit.store: expected local or redis://host:port, got 'memcached'"},
      {"rate: 1/s\nmax_keys: 10",
       "2:11: rate_limit.max_keys: expected a whole number from 64 to 100000000, got '10'"},
      {"rate: 1/s\nbrust: 5", "2:1: unknown key 'brust' in rate_limit (did you mean 'burst'?)"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(build(c.yaml), nullptr) << c.yaml;
    EXPECT_EQ(errors(), std::vector<std::string>{c.error}) << c.yaml;
  }
}

TEST_F(RateLimitTest, AllBadOptionsAreReportedTogether) {
  EXPECT_EQ(build("rate: 1/s\nburst: 0\nkey: ip\nstatus: 200\n"), nullptr);
  EXPECT_EQ(errors().size(), 3u);
}

TEST_F(RateLimitTest, EveryGoodOptionIsAccepted) {
  auto f = build(
      "rate: 100/second\nburst: 20\nkey: header:X-API-Key\nstatus: 503\nshare: api\n"
      "dry_run: false\nstore: local\nmax_keys: 1000000\n");
  EXPECT_TRUE(f);
  EXPECT_EQ(errors(), std::vector<std::string>{});
  EXPECT_TRUE(build("rate: 1/s\nstore: redis://:secret@cache:6380/2\nstore_timeout: 20ms\n"));
  EXPECT_EQ(errors(), std::vector<std::string>{});
}

// ---------------------------------------------------------------------------
// store: redis. The filter asks for a script call and decides from its
// answer; these tests play the codec's part (FilterChain::resume_request)
// with answers made up the way the script makes them: {allowed, TAT - now}.

class RedisRateLimitTest : public RateLimitTest {
 protected:
  static constexpr const char* kRedis = "rate: 30/minute\nburst: 10\nstore: redis://cache:6379\n";

  // The request phase up to the store call. Returns what on_request said.
  FilterStatus ask(Filter& filter, std::string_view client_ip = "10.0.0.1") {
    begin(kT0, client_ip);
    return filter.on_request(ctx_);
  }

  // Hands the filter a store result, as the chain does, then runs the
  // response phase when the request phase is over. Returns on_store_reply's
  // status.
  FilterStatus answer(Filter& filter, const StoreResult& result) {
    ctx_.store_call.address = nullptr;
    FilterStatus s = filter.on_store_reply(ctx_, result);
    if (s != FilterStatus::wait) {
      ctx_.response_headers = &response_headers_;
      response_headers_.clear();
      ctx_.status = ctx_.replied() ? ctx_.reply_status : 200;
      ctx_.local_reply = ctx_.replied();
      filter.on_response(ctx_);
    }
    return s;
  }
  FilterStatus answer(Filter& filter, const store::Reply& reply) {
    return answer(filter, StoreResult{true, &reply, {}});
  }

  static store::Reply script_reply(int64_t allowed, int64_t d_ns) {
    store::Reply r;
    r.type = store::Reply::Type::array;
    r.elements.resize(2);
    r.elements[0].type = r.elements[1].type = store::Reply::Type::integer;
    r.elements[0].integer = allowed;
    r.elements[1].integer = d_ns;
    return r;
  }
  static store::Reply error_reply(std::string text) {
    store::Reply r;
    r.type = store::Reply::Type::error;
    r.str = std::move(text);
    return r;
  }
};

TEST_F(RedisRateLimitTest, AsksForTheScriptByItsDigestWithTheBucketKeyAndPolicy) {
  auto f = build(kRedis);
  ASSERT_TRUE(f);
  ASSERT_EQ(ask(*f), FilterStatus::wait);
  ASSERT_TRUE(ctx_.waiting());
  EXPECT_EQ(ctx_.store_call.address->host, "cache");
  EXPECT_EQ(ctx_.store_call.address->port, 6379);
  EXPECT_EQ(ctx_.store_call.timeout_ns, 50 * kMs);
  const std::string& cmd = ctx_.store_call.command;
  // EVALSHA <40 hex> 1 <key> <T us> <burst * T us>, as RESP bulk strings.
  ASSERT_TRUE(cmd.starts_with("*6\r\n$7\r\nEVALSHA\r\n$40\r\n")) << cmd;
  EXPECT_NE(cmd.find("\r\n$1\r\n1\r\n$34\r\nward:rl:api.rate_limit:ip:10.0.0.1\r\n"
                     "$7\r\n2000000\r\n$8\r\n20000000\r\n"),
            std::string::npos)
      << cmd;
  EXPECT_FALSE(ctx_.replied());
}

TEST_F(RedisRateLimitTest, AllowedAnswerCarriesTheHeadersOfTheSharedBucket) {
  auto f = build(kRedis);
  ASSERT_EQ(ask(*f), FilterStatus::wait);
  // 4 tokens used across the instances: TAT is 8 s ahead after this one.
  EXPECT_EQ(answer(*f, script_reply(1, 8 * kSecond)), FilterStatus::next);
  EXPECT_FALSE(ctx_.replied());
  EXPECT_EQ(response("RateLimit-Limit"), "10");
  EXPECT_EQ(response("RateLimit-Remaining"), "6");
  EXPECT_EQ(response("RateLimit-Reset"), "2");
  EXPECT_EQ(response("Retry-After"), "<absent>");
  EXPECT_EQ(requests("api.rate_limit", "allowed"), 1u);
}

TEST_F(RedisRateLimitTest, RefusedAnswerIsA429WithRetryAfter) {
  auto f = build(kRedis);
  ASSERT_EQ(ask(*f), FilterStatus::wait);
  EXPECT_EQ(answer(*f, script_reply(0, 20 * kSecond - 500 * kMs)), FilterStatus::stop);
  EXPECT_EQ(ctx_.reply_status, 429);
  EXPECT_EQ(ctx_.reply_error, "rate_limited");
  EXPECT_EQ(response("RateLimit-Remaining"), "0");
  EXPECT_EQ(response("Retry-After"), "2");  // 1.5 s, rounded up
  EXPECT_EQ(requests("api.rate_limit", "limited"), 1u);
}

TEST_F(RedisRateLimitTest, DryRunPassesWhatTheStoreRefuses) {
  auto f = build(std::string(kRedis) + "dry_run: true\n");
  ASSERT_EQ(ask(*f), FilterStatus::wait);
  EXPECT_EQ(answer(*f, script_reply(0, 20 * kSecond)), FilterStatus::next);
  EXPECT_FALSE(ctx_.replied());
  EXPECT_EQ(response("RateLimit-Remaining"), "<absent>");
  EXPECT_EQ(requests("api.rate_limit", "dry_run"), 1u);
}

TEST_F(RedisRateLimitTest, NoScriptSendsTheScriptOnceThenGivesUp) {
  auto f = build(kRedis);
  ASSERT_EQ(ask(*f), FilterStatus::wait);
  EXPECT_EQ(answer(*f, error_reply("NOSCRIPT No matching script.")), FilterStatus::wait);
  ASSERT_TRUE(ctx_.waiting());
  EXPECT_TRUE(ctx_.store_call.command.starts_with("*6\r\n$4\r\nEVAL\r\n"))
      << ctx_.store_call.command;
  EXPECT_NE(ctx_.store_call.command.find("redis.call('TIME')"), std::string::npos);
  // A server that still says NOSCRIPT to EVAL is broken: pass, counted.
  EXPECT_EQ(answer(*f, error_reply("NOSCRIPT again")), FilterStatus::next);
  EXPECT_FALSE(ctx_.replied());
  EXPECT_EQ(requests("api.rate_limit", "store_error"), 1u);
}

TEST_F(RedisRateLimitTest, NoAnswerOrANonsenseAnswerLetsTheRequestPass) {
  auto f = build(kRedis);
  store::Reply text;
  text.type = store::Reply::Type::string;
  text.str = "1";
  const StoreResult timeout{false, nullptr, "timeout"};
  for (const StoreResult& r : {timeout, StoreResult{true, &text, {}}}) {
    ASSERT_EQ(ask(*f), FilterStatus::wait);
    EXPECT_EQ(answer(*f, r), FilterStatus::next);
    EXPECT_FALSE(ctx_.replied());
    EXPECT_EQ(response("RateLimit-Limit"), "<absent>");  // nothing known to say
  }
  ASSERT_EQ(ask(*f), FilterStatus::wait);
  EXPECT_EQ(answer(*f, error_reply("OOM command not allowed")), FilterStatus::next);
  EXPECT_EQ(requests("api.rate_limit", "store_error"), 3u);
  EXPECT_EQ(requests("api.rate_limit", "allowed"), 0u);
}

TEST_F(RedisRateLimitTest, KeysAreByShareNameAndLongValuesByDigest) {
  auto f = build(std::string(kRedis) + "share: login\nkey: header:X-User\n");
  request_headers_.add("X-User", "alice");
  ASSERT_EQ(ask(*f), FilterStatus::wait);
  EXPECT_NE(ctx_.store_call.command.find("$28\r\nward:rl:login:h:x-user:alice\r\n"),
            std::string::npos)
      << ctx_.store_call.command;
  request_headers_.clear();
  request_headers_.add("X-User", std::string(500, 'u'));
  ASSERT_EQ(ask(*f), FilterStatus::wait);
  // "ward:rl:login:h:x-user:sha256:" and 64 hex digits
  EXPECT_NE(ctx_.store_call.command.find("$94\r\nward:rl:login:h:x-user:sha256:"),
            std::string::npos)
      << ctx_.store_call.command;
  EXPECT_EQ(ctx_.store_call.command.find("uuuu"), std::string::npos);
}

// ---------------------------------------------------------------------------
// Metrics and memory

TEST_F(RateLimitTest, RequestsAreCountedByResult) {
  auto f = build(kThirtyPerMinute);
  ASSERT_EQ(drain(*f, kT0, "10.0.0.1"), 10);
  send(*f, kT0, "10.0.0.1");
  ASSERT_EQ(drain(*f, kT0, "10.0.0.2", 3), 3);
  EXPECT_EQ(requests("api.rate_limit", "allowed"), 13u);
  EXPECT_EQ(requests("api.rate_limit", "limited"), 2u);
  EXPECT_EQ(requests("api.rate_limit", "dry_run"), 0u);
  EXPECT_EQ(keys("api.rate_limit"), 2);
  EXPECT_EQ(evictions("api.rate_limit"), 0u);
}

TEST_F(RateLimitTest, FloodOfDistinctKeysStaysUnderMaxKeys) {
  auto f = build(std::string(kThirtyPerMinute) + "key: header:X-Key\nmax_keys: 1024\n");
  ASSERT_TRUE(f);
  for (int i = 0; i < 20'000; ++i) {
    request_headers_.clear();  // set() would grow the arena: one field per request
    request_headers_.add("X-Key", "attacker-" + std::to_string(i));
    ASSERT_EQ(send(*f, kT0), 200);  // every new key has its burst
  }
  auto t = table("api.rate_limit");
  EXPECT_LE(t->size(), 1'024u);
  EXPECT_LE(t->slot_capacity(), 1'024u * 4 / 3 + BucketTable::kShards);
  EXPECT_EQ(keys("api.rate_limit"), static_cast<int64_t>(t->size()));
  // Nothing was full at kT0, so every key beyond the table was an eviction.
  EXPECT_EQ(evictions("api.rate_limit"), 20'000 - t->size());
}

TEST_F(RateLimitTest, KeysGaugeFollowsExpiryAcrossWorkers) {
  auto f = build(std::string(kThirtyPerMinute) + "key: header:X-Key\n");
  auto send_from = [&](size_t worker, const std::string& key, int64_t now) {
    request_headers_.clear();
    request_headers_.add("X-Key", key);
    ctx_.reset();
    ctx_.request_headers = &request_headers_;
    ctx_.now_ns = now;
    ctx_.worker = worker;
    state_ = FilterState{};
    ctx_.state = &state_;
    f->on_request(ctx_);
  };
  for (int i = 0; i < 1'000; ++i) {
    send_from(static_cast<size_t>(i % 2), "morning-" + std::to_string(i), kT0);
  }
  EXPECT_EQ(keys("api.rate_limit"), 1'000);
  // An hour later other workers insert new keys and sweep out the full ones:
  // their shards of the gauge go negative, the sum stays the table's size.
  for (int i = 0; i < 1'000; ++i) {
    send_from(2 + static_cast<size_t>(i % 2), "evening-" + std::to_string(i), kT0 + 3600 * kSecond);
  }
  auto t = table("api.rate_limit");
  EXPECT_LT(t->size(), 1'500u);
  EXPECT_EQ(keys("api.rate_limit"), static_cast<int64_t>(t->size()));
  EXPECT_EQ(evictions("api.rate_limit"), 0u);
}

// ---------------------------------------------------------------------------
// Exactness under contention (runs under TSan in CI)

// Workers hammer one key while a fake clock advances: together they must let
// through exactly burst + floor(elapsed / T), no more (a lost CAS race would
// let two requests spend one token) and no less (no token may be lost).
TEST_F(RateLimitTest, ConcurrentWorkersLetThroughExactlyBurstPlusRateTimesElapsed) {
  auto f = build("rate: 1000/second\nburst: 1000\n");  // T = 1 ms, a 1 s bucket
  ASSERT_TRUE(f);
  constexpr int kWorkers = 4;  // metrics_ has 4 shards: one per worker
  constexpr int64_t kBurst = 1'000;
  constexpr int64_t kInterval = kMs;
  // Each step earns 250.25 tokens: hundreds of takes raced for at once, and
  // fractions of a token carried from step to step. Under a bucket (1 s),
  // so nothing is lost to the cap when the workers have emptied it.
  constexpr int64_t kStep = 250 * kMs + 250'000;
  constexpr int kSteps = 40;
  std::atomic<int64_t> clock{kT0};
  std::atomic<int64_t> allowed{0};
  std::atomic<int64_t> sent{0};
  std::atomic<bool> stop{false};

  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      RequestContext ctx;
      FilterState state;
      while (!stop.load(std::memory_order_acquire)) {
        ctx.reset();
        ctx.client_ip_text = "10.0.0.1";
        ctx.worker = static_cast<size_t>(w);
        ctx.now_ns = clock.load(std::memory_order_acquire);
        state = FilterState{};
        ctx.state = &state;
        if (f->on_request(ctx) == FilterStatus::next) {
          allowed.fetch_add(1);
        }
        sent.fetch_add(1);
      }
    });
  }
  // Waits (spinning, never sleeping) until the workers have taken every
  // token due by the clock's time before it moves on; fails rather than
  // hangs if they never do.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  auto wait_until = [&](auto done) {
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) {
        return false;
      }
      std::this_thread::yield();
    }
    return true;
  };
  auto due = [&] { return kBurst + (clock.load() - kT0) / kInterval; };
  bool in_time = true;
  for (int step = 0; step <= kSteps && in_time; ++step) {
    if (step > 0) {
      clock.fetch_add(kStep, std::memory_order_release);
    }
    in_time = wait_until([&] { return allowed.load() >= due(); });
  }
  // Every worker tries again at the final time, after the last token went.
  int64_t sent_at_end = sent.load();
  in_time = in_time && wait_until([&] { return sent.load() >= sent_at_end + 400; });
  stop.store(true, std::memory_order_release);
  for (auto& t : workers) {
    t.join();
  }
  ASSERT_TRUE(in_time) << "workers stalled: " << allowed.load() << " of " << due();

  int64_t expected = kBurst + kSteps * kStep / kInterval;  // 1000 + floor(10010.0)
  EXPECT_EQ(expected, 11'010);
  EXPECT_EQ(allowed.load(), expected);
  EXPECT_EQ(requests("api.rate_limit", "allowed"), static_cast<uint64_t>(expected));
  EXPECT_EQ(requests("api.rate_limit", "limited"), static_cast<uint64_t>(sent.load() - expected));
}

}  // namespace
}  // namespace ward::filters
