#include "proxy/store/redis.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ward::store {
namespace {

using namespace std::string_literals;

// ---------------------------------------------------------------------------
// parse_redis_url

RedisAddress parse_ok(std::string_view url) {
  std::string error;
  auto a = parse_redis_url(url, error);
  EXPECT_TRUE(a) << url << ": " << error;
  EXPECT_TRUE(!a || a->display.find("redis://") == 0) << url;
  return a ? *a : RedisAddress{};
}

std::string parse_error(std::string_view url) {
  std::string error;
  auto a = parse_redis_url(url, error);
  EXPECT_FALSE(a) << url << " parsed as " << (a ? a->display : "");
  return error;
}

TEST(RedisUrlTest, PlainHostTakesTheDefaults) {
  RedisAddress a = parse_ok("redis://cache");
  EXPECT_EQ(a.host, "cache");
  EXPECT_EQ(a.port, 6379);
  EXPECT_EQ(a.user, "");
  EXPECT_EQ(a.password, "");
  EXPECT_EQ(a.db, 0);
  EXPECT_EQ(a.display, "redis://cache:6379/0");
  EXPECT_EQ(parse_ok("redis://cache/").display, "redis://cache:6379/0");
  EXPECT_EQ(parse_ok("REDIS://10.0.0.7").host, "10.0.0.7");
}

TEST(RedisUrlTest, Port) {
  RedisAddress a = parse_ok("redis://cache:6380");
  EXPECT_EQ(a.host, "cache");
  EXPECT_EQ(a.port, 6380);
  EXPECT_EQ(a.display, "redis://cache:6380/0");
  EXPECT_EQ(parse_ok("redis://cache:1").port, 1);
  EXPECT_EQ(parse_ok("redis://cache:65535").port, 65535);
}

TEST(RedisUrlTest, UserAndPassword) {
  RedisAddress a = parse_ok("redis://ward:s3cret@cache:6380/2");
  EXPECT_EQ(a.user, "ward");
  EXPECT_EQ(a.password, "s3cret");
  EXPECT_EQ(a.host, "cache");
  EXPECT_EQ(a.port, 6380);
  EXPECT_EQ(a.db, 2);
  EXPECT_EQ(a.display, "redis://cache:6380/2");
}

TEST(RedisUrlTest, PasswordAlone) {
  RedisAddress a = parse_ok("redis://:s3cret@cache");
  EXPECT_EQ(a.user, "");
  EXPECT_EQ(a.password, "s3cret");
  EXPECT_EQ(a.host, "cache");
}

TEST(RedisUrlTest, PasswordMayHoldReservedCharactersEscapedOrNot) {
  EXPECT_EQ(parse_ok("redis://:p@ss:w/rd@cache/1").password, "p@ss:w/rd");
  EXPECT_EQ(parse_ok("redis://:p%40ss%2f@cache").password, "p@ss/");
  EXPECT_EQ(parse_error("redis://:bad%4@cache"), "bad %-escape in the user or password");
  EXPECT_EQ(parse_error("redis://justuser@cache"),
            "expected user:password@ or :password@ before the host");
}

TEST(RedisUrlTest, Database) {
  EXPECT_EQ(parse_ok("redis://cache/15").db, 15);
  EXPECT_EQ(parse_ok("redis://cache:7000/3").display, "redis://cache:7000/3");
}

TEST(RedisUrlTest, BracketedIpv6) {
  RedisAddress a = parse_ok("redis://[::1]:6380");
  EXPECT_EQ(a.host, "::1");
  EXPECT_EQ(a.port, 6380);
  EXPECT_EQ(a.display, "redis://[::1]:6380/0");
  RedisAddress b = parse_ok("redis://:pw@[fd00::5]/4");
  EXPECT_EQ(b.host, "fd00::5");
  EXPECT_EQ(b.port, 6379);
  EXPECT_EQ(b.db, 4);
  EXPECT_EQ(b.display, "redis://[fd00::5]:6379/4");
  EXPECT_EQ(parse_error("redis://[::1"), "expected ']' after an IPv6 address");
  EXPECT_EQ(parse_error("redis://[]:6379"), "expected an IPv6 address in brackets");
  EXPECT_EQ(parse_error("redis://[::1]x"), "expected ':' or '/' after ']'");
}

TEST(RedisUrlTest, BadPort) {
  const std::string want = "expected a port from 1 to 65535 after ':'";
  for (const char* url : {"redis://cache:", "redis://cache:0", "redis://cache:65536",
                          "redis://cache:99999", "redis://cache:-1", "redis://cache:+80",
                          "redis://cache:80a", "redis://cache:000000080", "redis://[::1]:x"}) {
    EXPECT_EQ(parse_error(url), want) << url;
  }
}

TEST(RedisUrlTest, BadDatabase) {
  const std::string want = "expected a database number after '/'";
  for (const char* url : {"redis://cache/x", "redis://cache/-1", "redis://cache/1/2",
                          "redis://cache/1?x=y", "redis://cache/9999999999"}) {
    EXPECT_EQ(parse_error(url), want) << url;
  }
}

TEST(RedisUrlTest, EmptyHost) {
  EXPECT_EQ(parse_error("redis://"), "expected a host after redis://");
  EXPECT_EQ(parse_error("redis://:6379"), "expected a host after redis://");
  EXPECT_EQ(parse_error("redis://:pw@/0"), "expected a host after redis://");
}

TEST(RedisUrlTest, Junk) {
  EXPECT_EQ(parse_error(""), "expected a URL starting with redis://");
  EXPECT_EQ(parse_error("cache:6379"), "expected a URL starting with redis://");
  EXPECT_EQ(parse_error("http://cache"), "expected a URL starting with redis://");
  EXPECT_FALSE(parse_error("redis://ca che").empty());
  EXPECT_FALSE(parse_error("redis://cache?x").empty());
  EXPECT_FALSE(parse_error("redis://a:b:c").empty());
}

TEST(RedisUrlTest, TlsIsRefused) {
  EXPECT_EQ(parse_error("rediss://cache:6380"), "rediss:// (TLS) is not supported yet");
}

TEST(RedisUrlTest, DisplayNeverHoldsThePassword) {
  for (const char* url :
       {"redis://:hunter2@cache", "redis://user:hunter2@cache:1/2", "redis://:hunter2@[::1]"}) {
    RedisAddress a = parse_ok(url);
    EXPECT_EQ(a.password, "hunter2");
    EXPECT_EQ(a.display.find("hunter2"), std::string::npos) << a.display;
  }
}

// ---------------------------------------------------------------------------
// encode_command

TEST(RedisEncodeTest, ArrayOfBulkStrings) {
  EXPECT_EQ(encode_command({"GET", "k"}), "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
  EXPECT_EQ(encode_command({"PING"}), "*1\r\n$4\r\nPING\r\n");
}

TEST(RedisEncodeTest, BinarySafeAndEmptyArguments) {
  std::string binary = "a\r\n\0b"s;
  EXPECT_EQ(encode_command({"SET", binary, ""}),
            "*3\r\n$3\r\nSET\r\n$5\r\na\r\n\0b\r\n$0\r\n\r\n"s);
  std::vector<std::string_view> args = {"INCRBY", "counter", "10"};
  EXPECT_EQ(encode_command(std::span<const std::string_view>(args)),
            "*3\r\n$6\r\nINCRBY\r\n$7\r\ncounter\r\n$2\r\n10\r\n");
}

// ---------------------------------------------------------------------------
// RespReader

std::vector<Reply> read_all(RespReader& r) {
  std::vector<Reply> out;
  Reply reply;
  while (r.next(reply) == RespReader::Next::reply) {
    out.push_back(std::move(reply));
  }
  return out;
}

Reply one(std::string_view bytes) {
  RespReader r;
  EXPECT_TRUE(r.feed(bytes)) << r.error();
  std::vector<Reply> all = read_all(r);
  EXPECT_EQ(all.size(), 1u) << bytes;
  return all.empty() ? Reply{} : all[0];
}

TEST(RespReaderTest, EachReplyType) {
  Reply s = one("$5\r\nhello\r\n");
  EXPECT_EQ(s.type, Reply::Type::string);
  EXPECT_EQ(s.str, "hello");
  Reply empty = one("$0\r\n\r\n");
  EXPECT_EQ(empty.type, Reply::Type::string);
  EXPECT_EQ(empty.str, "");
  Reply status = one("+OK\r\n");
  EXPECT_EQ(status.type, Reply::Type::status);
  EXPECT_EQ(status.str, "OK");
  Reply error = one("-NOSCRIPT No matching script.\r\n");
  EXPECT_EQ(error.type, Reply::Type::error);
  EXPECT_TRUE(error.is_error());
  EXPECT_EQ(error.str, "NOSCRIPT No matching script.");
  Reply integer = one(":-42\r\n");
  EXPECT_EQ(integer.type, Reply::Type::integer);
  EXPECT_EQ(integer.integer, -42);
  EXPECT_EQ(one(":9223372036854775807\r\n").integer, INT64_MAX);
  EXPECT_EQ(one("$-1\r\n").type, Reply::Type::nil);
  EXPECT_EQ(one("*-1\r\n").type, Reply::Type::nil);
  Reply array = one("*3\r\n:1\r\n$1\r\nx\r\n$-1\r\n");
  ASSERT_EQ(array.type, Reply::Type::array);
  ASSERT_EQ(array.elements.size(), 3u);
  EXPECT_EQ(array.elements[0].integer, 1);
  EXPECT_EQ(array.elements[1].str, "x");
  EXPECT_EQ(array.elements[2].type, Reply::Type::nil);
  Reply none = one("*0\r\n");
  EXPECT_EQ(none.type, Reply::Type::array);
  EXPECT_TRUE(none.elements.empty());
}

TEST(RespReaderTest, BulkStringIsBinarySafe) {
  Reply r = one("$4\r\n\r\n\0x\r\n"s);
  EXPECT_EQ(r.str, "\r\n\0x"s);
}

TEST(RespReaderTest, ReplySplitByteByByte) {
  const std::string bytes = "*2\r\n$5\r\nhello\r\n*2\r\n:7\r\n-ERR no\r\n";
  RespReader r;
  Reply reply;
  for (size_t i = 0; i < bytes.size(); ++i) {
    EXPECT_EQ(r.next(reply), RespReader::Next::need_more) << i;
    ASSERT_TRUE(r.feed(bytes.substr(i, 1))) << r.error();
  }
  ASSERT_EQ(r.next(reply), RespReader::Next::reply);
  ASSERT_EQ(reply.elements.size(), 2u);
  EXPECT_EQ(reply.elements[0].str, "hello");
  ASSERT_EQ(reply.elements[1].elements.size(), 2u);
  EXPECT_EQ(reply.elements[1].elements[0].integer, 7);
  EXPECT_EQ(reply.elements[1].elements[1].str, "ERR no");
  EXPECT_EQ(r.next(reply), RespReader::Next::need_more);
}

TEST(RespReaderTest, SeveralRepliesInOneFeed) {
  RespReader r;
  ASSERT_TRUE(r.feed("+OK\r\n:1\r\n$3\r\nabc\r\n$2\r\nx"));
  std::vector<Reply> all = read_all(r);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].str, "OK");
  EXPECT_EQ(all[1].integer, 1);
  EXPECT_EQ(all[2].str, "abc");
  ASSERT_TRUE(r.feed("y\r\n"));
  all = read_all(r);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].str, "xy");
}

TEST(RespReaderTest, NestedArrays) {
  Reply r = one("*2\r\n*2\r\n*1\r\n:1\r\n*0\r\n*1\r\n+deep\r\n");
  ASSERT_EQ(r.elements.size(), 2u);
  ASSERT_EQ(r.elements[0].elements.size(), 2u);
  EXPECT_EQ(r.elements[0].elements[0].elements[0].integer, 1);
  EXPECT_EQ(r.elements[0].elements[1].type, Reply::Type::array);
  EXPECT_TRUE(r.elements[0].elements[1].elements.empty());
  ASSERT_EQ(r.elements[1].elements.size(), 1u);
  EXPECT_EQ(r.elements[1].elements[0].type, Reply::Type::status);
  EXPECT_EQ(r.elements[1].elements[0].str, "deep");
}

TEST(RespReaderTest, ProtocolErrorIsFinal) {
  RespReader r;
  EXPECT_FALSE(r.feed(":1\r\n?what\r\n"));
  EXPECT_NE(r.error().find("Protocol error"), std::string::npos) << r.error();
  Reply reply;
  // The reply before the error is still handed out, then the error.
  ASSERT_EQ(r.next(reply), RespReader::Next::reply);
  EXPECT_EQ(reply.integer, 1);
  EXPECT_EQ(r.next(reply), RespReader::Next::error);
  EXPECT_FALSE(r.feed(":2\r\n"));
  EXPECT_EQ(r.next(reply), RespReader::Next::error);

  RespReader bad_integer;
  EXPECT_FALSE(bad_integer.feed(":12x\r\n"));
  EXPECT_FALSE(bad_integer.error().empty());
  RespReader mid_array;  // an error inside an unfinished array frees it (ASan)
  EXPECT_FALSE(mid_array.feed("*3\r\n$1\r\na\r\n*1\r\n!\r\n"));
  EXPECT_EQ(mid_array.next(reply), RespReader::Next::error);
}

TEST(RespReaderTest, MaxBufferedExceeded) {
  RespReader r(32);
  ASSERT_TRUE(r.feed("$100\r\n"));
  ASSERT_TRUE(r.feed(std::string(20, 'a')));
  EXPECT_FALSE(r.feed(std::string(20, 'a')));
  EXPECT_EQ(r.error(), "reply exceeds 32 bytes");
  Reply reply;
  EXPECT_EQ(r.next(reply), RespReader::Next::error);

  // Whole in one feed, too long all the same.
  RespReader whole(32);
  EXPECT_FALSE(whole.feed("+OK\r\n$40\r\n" + std::string(40, 'b') + "\r\n"));
  EXPECT_EQ(whole.error(), "reply exceeds 32 bytes");
  ASSERT_EQ(whole.next(reply), RespReader::Next::reply);
  EXPECT_EQ(reply.str, "OK");
  EXPECT_EQ(whole.next(reply), RespReader::Next::error);
}

TEST(RespReaderTest, MaxBufferedIsPerReplyNotPerFeed) {
  RespReader r(16);
  std::string many;
  for (int i = 0; i < 100; ++i) {
    many += ":" + std::to_string(i) + "\r\n";
  }
  for (int round = 0; round < 3; ++round) {
    ASSERT_TRUE(r.feed(many)) << r.error();
    EXPECT_EQ(read_all(r).size(), 100u);
  }
  ASSERT_TRUE(r.feed(":1\r\n$8\r\n0123"));  // 8 bytes of an unfinished reply
  ASSERT_TRUE(r.feed("4567\r\n"));          // 14 in all: within the bound
  EXPECT_EQ(read_all(r).size(), 2u);
}

TEST(RespReaderTest, ArrayLongerThanTheBoundIsRefusedAtItsHeader) {
  RespReader r(1024);
  EXPECT_FALSE(r.feed("*2000000000\r\n"));
  EXPECT_NE(r.error().find("exceeds"), std::string::npos) << r.error();
  RespReader fits(1024);
  EXPECT_TRUE(fits.feed("*300\r\n"));
}

TEST(RespReaderTest, NestingDeeperThanHiredisAllowsIsAnError) {
  RespReader r;
  std::string deep;
  for (int i = 0; i < 12; ++i) {
    deep += "*1\r\n";
  }
  EXPECT_FALSE(r.feed(deep + ":1\r\n"));
  EXPECT_FALSE(r.error().empty());
}

}  // namespace
}  // namespace ward::store
