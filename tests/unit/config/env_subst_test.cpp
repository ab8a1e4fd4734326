#include "proxy/config/env_subst.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

#include "proxy/config/reader.h"

namespace ward::config {
namespace {

using ::testing::HasSubstr;

class ExpandEnvTest : public ::testing::Test {
 protected:
  std::optional<std::string> expand(std::string_view text) {
    error_.clear();
    return expand_env(text, env_, error_);
  }

  std::map<std::string, std::string, std::less<>> vars_{{"HOST", "db"}, {"EMPTY", ""}};
  EnvLookup env_ = [this](std::string_view name) -> std::optional<std::string> {
    auto it = vars_.find(name);
    return it == vars_.end() ? std::nullopt : std::optional(it->second);
  };
  std::string error_;
};

TEST_F(ExpandEnvTest, ReplacesEveryReference) {
  EXPECT_EQ(expand("${HOST}:${HOST}"), "db:db");
  EXPECT_EQ(expand("no references"), "no references");
  EXPECT_EQ(expand(""), "");
}

TEST_F(ExpandEnvTest, DefaultAppliesWhenUnsetOrEmpty) {
  EXPECT_EQ(expand("${NOPE:-x}"), "x");
  EXPECT_EQ(expand("${EMPTY:-x}"), "x");
  EXPECT_EQ(expand("${HOST:-x}"), "db");
  EXPECT_EQ(expand("${NOPE:-}"), "");
  EXPECT_EQ(expand("${NOPE:-a:-b $x}"), "a:-b $x");
}

TEST_F(ExpandEnvTest, SetButEmptyWithoutDefaultIsEmpty) {
  EXPECT_EQ(expand("[${EMPTY}]"), "[]");
}

TEST_F(ExpandEnvTest, DollarWithoutBraceAndEscapedReferenceStayLiteral) {
  EXPECT_EQ(expand("$HOST $ $$ $${HOST}"), "$HOST $ $$ ${HOST}");
}

TEST_F(ExpandEnvTest, ValuesAreNotExpandedAgain) {
  vars_["NESTED"] = "${HOST}";
  EXPECT_EQ(expand("${NESTED}"), "${HOST}");
}

TEST_F(ExpandEnvTest, UnsetWithoutDefaultIsAnError) {
  EXPECT_EQ(expand("x${NOPE}"), std::nullopt);
  EXPECT_EQ(error_,
            "environment variable 'NOPE' is not set (write ${NOPE:-default} to give a default)");
}

TEST_F(ExpandEnvTest, MalformedReferencesAreErrors) {
  for (const char* text : {"${", "${HOST", "${}", "${1X}", "${A-B}", "${ HOST}", "${:-x}"}) {
    EXPECT_EQ(expand(text), std::nullopt) << text;
    EXPECT_FALSE(error_.empty()) << text;
  }
  expand("${HOST");
  EXPECT_THAT(error_, HasSubstr("without a closing"));
}

TEST(ClosestMatchTest, SuggestsOnlyPlausibleTypos) {
  std::vector<std::string> keys{"address", "name", "tls", "weight", "json"};
  EXPECT_EQ(closest_match("adress", keys), "address");
  EXPECT_EQ(closest_match("wieght", keys), "weight");  // swapped neighbours
  EXPECT_EQ(closest_match("jsno", keys), "json");
  EXPECT_EQ(closest_match("nmae", keys), "name");
  EXPECT_EQ(closest_match("ssl", keys), std::nullopt);  // 2 edits of 3 letters: a guess
  EXPECT_EQ(closest_match("completely_different", keys), std::nullopt);
  EXPECT_EQ(closest_match("x", {}), std::nullopt);
}

}  // namespace
}  // namespace ward::config
