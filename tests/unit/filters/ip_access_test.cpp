#include "filters/ip_access.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace ward::filters {
namespace {

using ::testing::HasSubstr;

class IpAccessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ctx_.request_headers = &request_;
    ctx_.state = &state_;
  }

  std::unique_ptr<Filter> build(const std::string& yaml) {
    spec_.name = "ip_access";
    spec_.options = YAML::Load(yaml);
    return build_spec();
  }
  std::unique_ptr<Filter> build_spec() {
    BuildContext build{spec_, reader_, metrics_, runtime_, "api", "api.ip_access"};
    return make_ip_access_filter(build);
  }

  config::ConfigError refused(const std::string& yaml) {
    EXPECT_EQ(build(yaml), nullptr) << yaml;
    auto errors = reader_.take_errors();
    EXPECT_EQ(errors.size(), 1u) << yaml;
    return errors.empty() ? config::ConfigError{} : errors[0];
  }

  // True when a request from `ip` passes; checks the 403 otherwise.
  bool admits(Filter& filter, std::string_view ip) {
    ctx_.reset();
    ctx_.request_headers = &request_;
    ctx_.state = &state_;
    auto parsed = util::IpAddress::parse(ip);
    EXPECT_TRUE(parsed) << ip;
    ctx_.client_ip = parsed.value_or(util::IpAddress{});
    ctx_.client_ip_text = ip;
    if (filter.on_request(ctx_) == FilterStatus::next) {
      EXPECT_FALSE(ctx_.replied());
      return true;
    }
    EXPECT_EQ(ctx_.reply_status, 403);
    EXPECT_EQ(ctx_.reply_error, "");  // the codec names it: {"error":"forbidden",...}
    return false;
  }

  config::FilterSpec spec_;
  config::Reader reader_{"test.yaml"};
  observe::Registry metrics_{1};
  RuntimeState runtime_;
  http::HeaderList request_;
  FilterState state_;
  RequestContext ctx_;
};

TEST_F(IpAccessTest, AllowListAdmitsItsMembersAndDeniesEveryoneElse) {
  auto filter = build("{allow: [10.0.0.0/8, 192.168.1.7]}");
  ASSERT_NE(filter, nullptr);
  EXPECT_TRUE(admits(*filter, "10.1.2.3"));
  EXPECT_TRUE(admits(*filter, "192.168.1.7"));
  EXPECT_FALSE(admits(*filter, "192.168.1.8"));
  EXPECT_FALSE(admits(*filter, "11.0.0.1"));
  EXPECT_FALSE(admits(*filter, "2001:db8::1"));
}

TEST_F(IpAccessTest, DenyListAloneBlocksOnlyItsMembers) {
  auto filter = build("{deny: [203.0.113.0/24]}");
  ASSERT_NE(filter, nullptr);
  EXPECT_FALSE(admits(*filter, "203.0.113.9"));
  EXPECT_TRUE(admits(*filter, "203.0.114.9"));
  EXPECT_TRUE(admits(*filter, "2001:db8::1"));
}

TEST_F(IpAccessTest, DenyWinsOverAllow) {
  auto filter = build("{allow: [10.0.0.0/8], deny: [10.66.0.0/16, 10.1.1.1]}");
  ASSERT_NE(filter, nullptr);
  EXPECT_TRUE(admits(*filter, "10.65.0.1"));
  EXPECT_FALSE(admits(*filter, "10.66.0.1"));
  EXPECT_FALSE(admits(*filter, "10.1.1.1"));
  EXPECT_TRUE(admits(*filter, "10.1.1.2"));
}

TEST_F(IpAccessTest, Ipv6ListsMatchIpv6Clients) {
  auto filter = build("{allow: ['2001:db8::/32', '::1'], deny: ['2001:db8:bad::/48']}");
  ASSERT_NE(filter, nullptr);
  EXPECT_TRUE(admits(*filter, "2001:db8:1::5"));
  EXPECT_TRUE(admits(*filter, "::1"));
  EXPECT_FALSE(admits(*filter, "2001:db8:bad::5"));
  EXPECT_FALSE(admits(*filter, "2001:db9::1"));
  EXPECT_FALSE(admits(*filter, "127.0.0.1"));  // v6 loopback is not v4 loopback
}

TEST_F(IpAccessTest, Ipv4ListsMatchIpv4MappedClients) {
  // A dual-stack socket reports a v4 client as ::ffff:a.b.c.d.
  auto filter = build("{allow: [127.0.0.0/8]}");
  ASSERT_NE(filter, nullptr);
  EXPECT_TRUE(admits(*filter, "::ffff:127.0.0.1"));
  EXPECT_TRUE(admits(*filter, "127.0.0.1"));
  EXPECT_FALSE(admits(*filter, "::1"));
}

TEST_F(IpAccessTest, AnEmptyListCountsAsAbsent) {
  auto filter = build("{allow: [], deny: [10.0.0.1]}");
  ASSERT_NE(filter, nullptr);
  EXPECT_TRUE(admits(*filter, "10.0.0.2"));
  EXPECT_FALSE(admits(*filter, "10.0.0.1"));
}

TEST_F(IpAccessTest, RefusesABadCidrAtThatItem) {
  auto error = refused(R"(
allow:
  - 10.0.0.0/8
  - 10.0.0.0/33
)");
  EXPECT_EQ(error.line, 4);
  EXPECT_EQ(error.column, 5);
  EXPECT_EQ(error.message,
            "ip_access.allow[1]: expected a CIDR such as 10.0.0.0/8 or ::1/128, got "
            "'10.0.0.0/33'");
  EXPECT_THAT(refused("{deny: [example.com]}").message,
              HasSubstr("ip_access.deny[0]: expected a CIDR"));
  EXPECT_THAT(refused("{deny: ['::1/129']}").message,
              HasSubstr("ip_access.deny[0]: expected a CIDR"));
}

TEST_F(IpAccessTest, RefusesAListThatIsNotAList) {
  EXPECT_THAT(refused("{allow: 10.0.0.0/8}").message,
              HasSubstr("ip_access.allow: expected a list"));
  EXPECT_THAT(refused("{deny: [{cidr: 10.0.0.0/8}]}").message,
              HasSubstr("ip_access.deny[0]: expected a string"));
}

TEST_F(IpAccessTest, RefusesOptionsWithoutAnyList) {
  auto error = refused("{}");
  EXPECT_EQ(error.line, 1);
  EXPECT_EQ(error.message, "ip_access: needs a non-empty allow or deny list");
  EXPECT_THAT(refused("{allow: [], deny: []}").message, HasSubstr("needs a non-empty"));
}

TEST_F(IpAccessTest, ReportsAMissingListAtTheFiltersNameWhenTheOptionsWereLeftEmpty) {
  // `- ip_access:` in a file: the loader gives the filter a fresh, unplaced map.
  spec_.name = "ip_access";
  spec_.options = YAML::Node(YAML::NodeType::Map);
  spec_.mark = config::Mark{"test.yaml", 12, 7};
  EXPECT_EQ(build_spec(), nullptr);
  auto errors = reader_.take_errors();
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].line, 12);
  EXPECT_EQ(errors[0].column, 7);
}

TEST_F(IpAccessTest, RefusesAnUnknownOption) {
  auto error = refused("{allow: [10.0.0.0/8], denny: [10.0.0.1]}");
  EXPECT_THAT(error.message, HasSubstr("unknown key 'denny' in ip_access (did you mean 'deny'?)"));
}

}  // namespace
}  // namespace ward::filters
