#include "filters/api_key.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace ward::filters {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr std::string_view kKey = "k3y-0123456789abcdef";
constexpr std::string_view kOtherKey = "second-key-zyxwvuts";

class ApiKeyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("ward-api-key-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    start_request();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void start_request() {
    ctx_.reset();
    request_.clear();
    response_.clear();
    state_ = FilterState{};
    ctx_.request_headers = &request_;
    ctx_.response_headers = &response_;
    ctx_.state = &state_;
  }

  std::unique_ptr<Filter> build(const std::string& yaml) {
    spec_.name = "api_key";
    spec_.options = YAML::Load(yaml);
    BuildContext build{spec_, reader_, metrics_, runtime_, "api", "api.api_key"};
    return make_api_key_filter(build);
  }
  std::unique_ptr<Filter> build_with_keys() {
    return build("{keys: ['" + std::string(kKey) + "', '" + std::string(kOtherKey) + "']}");
  }

  config::ConfigError refused(const std::string& yaml) {
    EXPECT_EQ(build(yaml), nullptr) << yaml;
    auto errors = reader_.take_errors();
    EXPECT_EQ(errors.size(), 1u) << yaml;
    return errors.empty() ? config::ConfigError{} : errors[0];
  }

  std::string write_file(const std::string& name, const std::string& text) {
    auto path = dir_ / name;
    std::ofstream(path, std::ios::binary) << text;
    return path.string();
  }

  // Runs the request phase; on a 401 also the response phase, as the chain would.
  bool allowed(Filter& filter) {
    if (filter.on_request(ctx_) == FilterStatus::next) {
      EXPECT_FALSE(ctx_.replied());
      return true;
    }
    EXPECT_EQ(ctx_.reply_status, 401);
    EXPECT_EQ(ctx_.reply_error, "unauthorized");
    ctx_.local_reply = true;
    ctx_.status = 401;
    filter.on_response(ctx_);
    return false;
  }

  uint64_t count(std::string_view result) {
    return metrics_
        .counter("ward_api_key_requests_total", "Requests checked by an api_key filter, by result.",
                 {"filter", "result"})
        .value({"api.api_key", result});
  }

  std::filesystem::path dir_;
  config::FilterSpec spec_;
  config::Reader reader_{"test.yaml"};
  observe::Registry metrics_{2};
  RuntimeState runtime_;
  http::HeaderList request_;
  http::HeaderList response_;
  FilterState state_;
  RequestContext ctx_;
};

TEST_F(ApiKeyTest, AcceptsAConfiguredKeyAndStripsItBeforeForwarding) {
  auto filter = build_with_keys();
  ASSERT_NE(filter, nullptr);
  request_.add("X-API-Key", kKey);
  request_.add("Accept", "*/*");
  EXPECT_TRUE(allowed(*filter));
  EXPECT_FALSE(request_.get("X-API-Key"));
  EXPECT_EQ(request_.get("Accept"), "*/*");
}

TEST_F(ApiKeyTest, AcceptsEveryConfiguredKey) {
  auto filter = build_with_keys();
  ASSERT_NE(filter, nullptr);
  request_.add("x-api-key", kOtherKey);  // field names are case-insensitive
  EXPECT_TRUE(allowed(*filter));
}

TEST_F(ApiKeyTest, ForwardKeepsTheKeyForTheUpstream) {
  auto filter = build("{keys: ['" + std::string(kKey) + "'], forward: true}");
  ASSERT_NE(filter, nullptr);
  request_.add("X-API-Key", kKey);
  EXPECT_TRUE(allowed(*filter));
  EXPECT_EQ(request_.get("X-API-Key"), kKey);
}

TEST_F(ApiKeyTest, RejectsAWrongKeyOfTheSameLength) {
  auto filter = build_with_keys();
  ASSERT_NE(filter, nullptr);
  std::string wrong(kKey);
  wrong.back() = wrong.back() == 'f' ? 'e' : 'f';
  request_.add("X-API-Key", wrong);
  EXPECT_FALSE(allowed(*filter));
}

TEST_F(ApiKeyTest, RejectsAPrefixOrAnExtensionOfAKey) {
  auto filter = build_with_keys();
  ASSERT_NE(filter, nullptr);
  request_.add("X-API-Key", kKey.substr(0, kKey.size() - 1));
  EXPECT_FALSE(allowed(*filter));
  start_request();
  request_.add("X-API-Key", std::string(kKey) + "0");
  EXPECT_FALSE(allowed(*filter));
}

TEST_F(ApiKeyTest, RejectsAMissingOrEmptyKey) {
  auto filter = build_with_keys();
  ASSERT_NE(filter, nullptr);
  EXPECT_FALSE(allowed(*filter));
  start_request();
  request_.add("X-API-Key", "");
  EXPECT_FALSE(allowed(*filter));
}

TEST_F(ApiKeyTest, RejectsAKeyInAnotherHeader) {
  auto filter = build_with_keys();
  ASSERT_NE(filter, nullptr);
  request_.add("Authorization", kKey);
  EXPECT_FALSE(allowed(*filter));
}

TEST_F(ApiKeyTest, RejectsTwoKeyFieldsEvenIfOneIsRight) {
  auto filter = build_with_keys();
  ASSERT_NE(filter, nullptr);
  request_.add("X-API-Key", kKey);
  request_.add("X-API-Key", "attacker-choice");
  EXPECT_FALSE(allowed(*filter));
}

TEST_F(ApiKeyTest, UsesTheConfiguredHeader) {
  auto filter = build("{header: X-Token, keys: ['" + std::string(kKey) + "']}");
  ASSERT_NE(filter, nullptr);
  request_.add("X-API-Key", kKey);
  EXPECT_FALSE(allowed(*filter));
  start_request();
  request_.add("X-Token", kKey);
  EXPECT_TRUE(allowed(*filter));
  EXPECT_FALSE(request_.get("X-Token"));
}

TEST_F(ApiKeyTest, ADeniedRequestGetsAChallengeAndAnAllowedOneDoesNot) {
  auto filter = build_with_keys();
  ASSERT_NE(filter, nullptr);
  EXPECT_FALSE(allowed(*filter));
  EXPECT_EQ(response_.get("WWW-Authenticate"), "ApiKey header=\"X-API-Key\"");

  start_request();
  request_.add("X-API-Key", kKey);
  EXPECT_TRUE(allowed(*filter));
  ctx_.status = 200;
  filter->on_response(ctx_);
  EXPECT_FALSE(response_.get("WWW-Authenticate"));
}

TEST_F(ApiKeyTest, CountsAllowedAndDeniedRequestsUnderItsLabel) {
  auto filter = build_with_keys();
  ASSERT_NE(filter, nullptr);
  request_.add("X-API-Key", kKey);
  allowed(*filter);
  for (int i = 0; i < 2; ++i) {
    start_request();
    ctx_.worker = 1;
    request_.add("X-API-Key", "nope");
    allowed(*filter);
  }
  EXPECT_EQ(count("allowed"), 1u);
  EXPECT_EQ(count("denied"), 2u);
}

TEST_F(ApiKeyTest, ReadsKeysFromAFileSkippingCommentsAndBlankLines) {
  std::string file = write_file("keys.txt",
                                "# production clients\r\n"
                                "\r\n"
                                "  " +
                                    std::string(kKey) +
                                    "  \r\n"
                                    "\t# old-key-retired\n"
                                    "key#with-hash\n" +
                                    std::string(kOtherKey));  // no final newline
  auto filter = build("{keys_file: '" + file + "'}");
  ASSERT_NE(filter, nullptr);
  for (std::string_view key : {kKey, kOtherKey, std::string_view("key#with-hash")}) {
    start_request();
    request_.add("X-API-Key", key);
    EXPECT_TRUE(allowed(*filter)) << key;
  }
  for (std::string_view key :
       {"# production clients", "# old-key-retired", "old-key-retired", "key", ""}) {
    start_request();
    request_.add("X-API-Key", key);
    EXPECT_FALSE(allowed(*filter)) << key;
  }
}

TEST_F(ApiKeyTest, RefusesKeysAndKeysFileTogether) {
  std::string file = write_file("keys.txt", "abc\n");
  auto error = refused("{keys: [abc],\n keys_file: '" + file + "'}");
  EXPECT_EQ(error.line, 2);
  EXPECT_EQ(error.message, "api_key: give keys or keys_file, not both");
}

TEST_F(ApiKeyTest, RefusesNeitherKeysNorKeysFile) {
  auto error = refused("{header: X-Key}");
  EXPECT_EQ(error.line, 1);
  EXPECT_EQ(error.message, "api_key: needs keys (a list) or keys_file (a file)");
}

TEST_F(ApiKeyTest, RefusesAnEmptyKeySuchAsAnEmptyVariable) {
  // What "${API_KEY:-}" becomes when API_KEY is unset.
  auto error = refused(R"(
keys:
  - good-key
  - ""
)");
  EXPECT_EQ(error.line, 4);
  EXPECT_EQ(error.column, 5);
  EXPECT_THAT(error.message, HasSubstr("api_key.keys[1]: a key must not be empty"));
}

TEST_F(ApiKeyTest, RefusesAnEmptyListOfKeys) {
  EXPECT_THAT(refused("{keys: []}").message, HasSubstr("api_key.keys: needs at least one key"));
}

TEST_F(ApiKeyTest, RefusesAKeyThatCannotBeSentWithoutShowingIt) {
  auto error = refused(R"({keys: ["s3cret\r\nX-Admin: 1"]})");
  EXPECT_THAT(error.message, HasSubstr("api_key.keys[0]: the key contains a carriage return"));
  EXPECT_THAT(error.message, Not(HasSubstr("s3cret")));
  EXPECT_THAT(refused(R"({keys: [" s3cret"]})").message, HasSubstr("whitespace"));
}

TEST_F(ApiKeyTest, RefusesKeysThatAreNotAListOfStrings) {
  EXPECT_THAT(refused("{keys: s3cret}").message, HasSubstr("api_key.keys: expected a list"));
  auto error = refused("{keys: [[s3cret]]}");
  EXPECT_THAT(error.message, HasSubstr("api_key.keys[0]: expected a string, got a list"));
}

TEST_F(ApiKeyTest, RefusesAnUnreadableKeysFileWithTheReason) {
  const std::string missing = (dir_ / "missing.txt").string();
  auto error = refused("{keys_file: '" + missing + "'}");
  EXPECT_EQ(error.line, 1);
  EXPECT_EQ(error.column, 13);
  EXPECT_EQ(error.message,
            "api_key.keys_file: cannot read '" + missing + "': No such file or directory");
  EXPECT_THAT(refused("{keys_file: '" + dir_.string() + "'}").message,
              HasSubstr("': Is a directory"));
  EXPECT_THAT(refused("{keys_file: ''}").message,
              HasSubstr("api_key.keys_file: must not be empty"));
}

TEST_F(ApiKeyTest, RefusesAKeysFileWithoutKeys) {
  std::string file = write_file("empty.txt", "# nothing yet\n\n");
  EXPECT_THAT(refused("{keys_file: '" + file + "'}").message, HasSubstr("' has no keys"));
}

TEST_F(ApiKeyTest, RefusesABadLineInAKeysFileByNumberWithoutShowingIt) {
  std::string file = write_file("keys.txt", "good\n# c\ns3cret\x01key\n");
  auto error = refused("{keys_file: '" + file + "'}");
  EXPECT_THAT(error.message, HasSubstr("line 3: the key contains the control character 0x01"));
  EXPECT_THAT(error.message, Not(HasSubstr("s3cret")));
}

TEST_F(ApiKeyTest, RefusesBadHeaderAndForwardOptions) {
  EXPECT_THAT(refused("{header: 'X Key', keys: [a]}").message,
              HasSubstr("api_key.header: 'X Key' is not a valid header name"));
  EXPECT_THAT(refused("{forward: maybe, keys: [a]}").message,
              HasSubstr("api_key.forward: expected true or false"));
}

TEST_F(ApiKeyTest, RefusesAnUnknownOption) {
  EXPECT_THAT(refused("{keys: [a], froward: true}").message,
              HasSubstr("unknown key 'froward' in api_key (did you mean 'forward'?)"));
}

}  // namespace
}  // namespace ward::filters
