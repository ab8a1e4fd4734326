#include "proxy/tls/sni_table.h"

#include <gtest/gtest.h>

namespace ward::tls {
namespace {

class SniTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    table_.add(0, {"default.example.com"});
    table_.add(1, {"api.example.com", "www.api.example.com"});
    table_.add(2, {"*.apps.example.com"});
    table_.add(3, {"special.apps.example.com"});
  }
  SniTable table_;
};

TEST_F(SniTableTest, ExactNamePicksItsCertificate) {
  EXPECT_EQ(table_.select("api.example.com"), 1u);
  EXPECT_EQ(table_.select("www.api.example.com"), 1u);
  EXPECT_EQ(table_.select("default.example.com"), 0u);
}

TEST_F(SniTableTest, WildcardCoversExactlyOneLabel) {
  EXPECT_EQ(table_.select("x.apps.example.com"), 2u);
  EXPECT_EQ(table_.select("a.b.apps.example.com"), 0u);
  EXPECT_EQ(table_.select("apps.example.com"), 0u);
}

TEST_F(SniTableTest, ExactNameBeatsWildcardEvenWhenListedLater) {
  EXPECT_EQ(table_.select("special.apps.example.com"), 3u);
}

TEST_F(SniTableTest, UnknownOrMissingNameGetsTheDefault) {
  EXPECT_EQ(table_.select("unknown.example.org"), 0u);
  EXPECT_EQ(table_.select(""), 0u);
  EXPECT_EQ(table_.select("127.0.0.1"), 0u);
}

TEST_F(SniTableTest, MatchingIgnoresCaseAndATrailingDot) {
  EXPECT_EQ(table_.select("API.Example.COM"), 1u);
  EXPECT_EQ(table_.select("api.example.com."), 1u);
  EXPECT_EQ(table_.select("X.APPS.example.com"), 2u);
}

TEST_F(SniTableTest, AStarInTheClientNameIsNotAWildcard) {
  EXPECT_EQ(table_.select("*.apps.example.com"), 0u);
}

TEST_F(SniTableTest, MalformedClientNamesGetTheDefault) {
  EXPECT_EQ(table_.select(".apps.example.com"), 0u);
  EXPECT_EQ(table_.select("x..apps.example.com"), 0u);
  EXPECT_EQ(table_.select(std::string("api.example.com\0evil", 20)), 0u);
  EXPECT_EQ(table_.select(std::string(300, 'a')), 0u);
}

TEST(SniTableAddTest, FirstCertificateWinsADuplicateName) {
  SniTable t;
  t.add(0, {"a.example.com"});
  t.add(1, {"b.example.com", "*.example.com"});
  t.add(2, {"b.example.com", "*.example.com"});
  EXPECT_EQ(t.select("b.example.com"), 1u);
  EXPECT_EQ(t.select("c.example.com"), 1u);
}

TEST(SniTableAddTest, UnusableNamesAreIgnoredAndNotCounted) {
  SniTable t;
  EXPECT_EQ(t.add(1, {"f*.example.com", "*.com", "a.*.example.com", "", "*"}), 0u);
  EXPECT_EQ(t.add(2, {"ok.example.com", "*.ok.example.com"}), 2u);
  EXPECT_EQ(t.select("foo.example.com"), 0u);
  EXPECT_EQ(t.select("x.com"), 0u);
  EXPECT_EQ(t.select("a.x.example.com"), 0u);
}

TEST(SniTableNormalizeTest, LowercasesAndRejectsNonNames) {
  EXPECT_EQ(SniTable::normalize("Example.COM."), "example.com");
  EXPECT_EQ(SniTable::normalize("a b"), "");
  EXPECT_EQ(SniTable::normalize("."), "");
  EXPECT_EQ(SniTable::normalize(std::string(254, 'a')), "");
  EXPECT_EQ(SniTable::normalize(std::string(253, 'a')), std::string(253, 'a'));
}

}  // namespace
}  // namespace ward::tls
