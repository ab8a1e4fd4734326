#include "proxy/config/units.h"

#include <gtest/gtest.h>

namespace ward::config {
namespace {

TEST(DurationTest, AcceptsEveryUnitOfTheContract) {
  EXPECT_EQ(parse_duration("250ms"), Duration{250});
  EXPECT_EQ(parse_duration("10s"), Duration{10'000});
  EXPECT_EQ(parse_duration("5m"), Duration{300'000});
  EXPECT_EQ(parse_duration("1h"), Duration{3'600'000});
  EXPECT_EQ(parse_duration("0s"), Duration{0});
  EXPECT_EQ(parse_duration("0ms"), Duration{0});
  EXPECT_EQ(parse_duration("007s"), Duration{7'000});
}

TEST(DurationTest, RejectsABareNumber) {
  EXPECT_FALSE(parse_duration("10"));
  EXPECT_FALSE(parse_duration("0"));
}

TEST(DurationTest, RejectsSignsSpacesFractionsAndUnknownUnits) {
  for (const char* text : {"", "-1s", "+1s", " 1s", "1s ", "1 s", "1.5s", "s", "ms", "1S", "1sec",
                           "1min", "1d", "1us", "1ns", "1hh", "1m s", "0x10s", "1e3ms"}) {
    EXPECT_FALSE(parse_duration(text)) << text;
  }
}

TEST(DurationTest, RejectsOverflowAndAbsurdLengths) {
  EXPECT_FALSE(parse_duration("99999999999999999999999s"));  // beyond uint64
  EXPECT_FALSE(parse_duration("18446744073709551615h"));     // overflows when scaled
  EXPECT_FALSE(parse_duration("876001h"));                   // over 100 years
  EXPECT_EQ(parse_duration("876000h"), Duration{876000LL * 3'600'000});
}

TEST(SizeTest, AcceptsBareBytesAndBinaryUnits) {
  EXPECT_EQ(parse_size("512"), 512u);
  EXPECT_EQ(parse_size("0"), 0u);
  EXPECT_EQ(parse_size("16KiB"), 16u * 1024);
  EXPECT_EQ(parse_size("10MiB"), 10u * 1024 * 1024);
  EXPECT_EQ(parse_size("1GiB"), 1024ull * 1024 * 1024);
  EXPECT_EQ(parse_size("18446744073709551615"), UINT64_MAX);
}

TEST(SizeTest, RejectsDecimalUnitsAndMalformedText) {
  for (const char* text : {"", "KiB", "1KB", "1MB", "1GB", "1k", "1K", "1kib", "1B", "1TiB", "-1",
                           "+1", "1.5MiB", " 1", "1 KiB", "1KiB ", "0x10"}) {
    EXPECT_FALSE(parse_size(text)) << text;
  }
}

TEST(SizeTest, RejectsOverflow) {
  EXPECT_FALSE(parse_size("18446744073709551616"));
  EXPECT_FALSE(parse_size("17179869184GiB"));  // 2^34 GiB = 2^64 bytes
  EXPECT_EQ(parse_size("17179869183GiB"), 17179869183ull * 1024 * 1024 * 1024);
}

TEST(RateTest, AcceptsLongAndShortPeriodNames) {
  struct Case {
    const char* text;
    uint64_t count;
    Duration period;
  };
  for (const Case& c :
       {Case{"30/minute", 30, 60s}, Case{"30/min", 30, 60s}, Case{"100/second", 100, 1s},
        Case{"100/s", 100, 1s}, Case{"5000/hour", 5000, 3600s}, Case{"5000/h", 5000, 3600s}}) {
    auto rate = parse_rate(c.text);
    ASSERT_TRUE(rate) << c.text;
    EXPECT_EQ(rate->count, c.count) << c.text;
    EXPECT_EQ(rate->period, c.period) << c.text;
  }
}

TEST(RateTest, ConvertsToEventsPerSecond) {
  EXPECT_DOUBLE_EQ(parse_rate("30/minute")->per_second, 0.5);
  EXPECT_DOUBLE_EQ(parse_rate("100/second")->per_second, 100.0);
  EXPECT_DOUBLE_EQ(parse_rate("3600/hour")->per_second, 1.0);
}

TEST(RateTest, RejectsZeroMalformedAndUnknownPeriods) {
  for (const char* text :
       {"", "30", "/minute", "0/second", "-1/s", "1.5/s", "30/", "30/m", "30/sec", "30/day",
        "30/Minute", "30 /s", "30/ s", "30/s/s", "1000000001/s", "99999999999999999999999/s"}) {
    EXPECT_FALSE(parse_rate(text)) << text;
  }
  EXPECT_TRUE(parse_rate("1000000000/s"));
}

TEST(AddressTest, ParsesIpv4WithPort) {
  auto a = parse_address("127.0.0.1:8080");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 8080);
  EXPECT_TRUE(a->host_is_ip);
  EXPECT_EQ(a->text, "127.0.0.1:8080");

  a = parse_address("0.0.0.0:443");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "0.0.0.0");
  EXPECT_EQ(a->port, 443);
}

TEST(AddressTest, ParsesBracketedIpv6WithoutKeepingTheBrackets) {
  auto a = parse_address("[::1]:8080");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "::1");
  EXPECT_EQ(a->port, 8080);
  EXPECT_TRUE(a->host_is_ip);
  EXPECT_EQ(a->text, "[::1]:8080");
  EXPECT_TRUE(parse_address("[2001:db8::10]:443"));
}

TEST(AddressTest, AnEmptyHostMeansAllInterfaces) {
  auto a = parse_address(":8080");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "");
  EXPECT_EQ(a->port, 8080);
  EXPECT_TRUE(a->host_is_ip);
}

TEST(AddressTest, ADnsNameIsNotAnIp) {
  auto a = parse_address("app:8000");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "app");
  EXPECT_EQ(a->port, 8000);
  EXPECT_FALSE(a->host_is_ip);
  EXPECT_TRUE(parse_address("my_service.default.svc.cluster.local:80"));
  EXPECT_TRUE(parse_address("example.com.:80"));
}

TEST(AddressTest, AcceptsPortZeroAndTheHighestPort) {
  EXPECT_EQ(parse_address("127.0.0.1:0")->port, 0);
  EXPECT_EQ(parse_address(":65535")->port, 65535);
}

TEST(AddressTest, RejectsBadPortsHostsAndShapes) {
  for (const char* text : {"",
                           "127.0.0.1",
                           "127.0.0.1:",
                           "127.0.0.1:65536",
                           "127.0.0.1:-1",
                           "127.0.0.1:+80",
                           "127.0.0.1:8o",
                           "127.0.0.1:000080",
                           "::1:8080",
                           "[::1]",
                           "[::1]8080",
                           "[::1:8080",
                           "[127.0.0.1]:80",
                           "[nothost]:80",
                           "256.0.0.1:80",
                           "1.2.3:80",
                           "ex ample:80",
                           "-app:80",
                           "app-:80",
                           "a..b:80",
                           ".app:80",
                           "app/x:80",
                           "app:80 ",
                           " app:80",
                           "8080",
                           "[fe80::1%eth0]:80"}) {
    EXPECT_FALSE(parse_address(text)) << text;
  }
}

}  // namespace
}  // namespace ward::config
