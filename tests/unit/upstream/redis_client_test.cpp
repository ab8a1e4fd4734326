#include "proxy/upstream/redis_client.h"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "tests/unit/upstream/fake_http_server.h"
#include "tests/unit/upstream/fake_redis_server.h"

namespace ward::upstream {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::FakeRedis;
using testing::run_until;
using Action = FakeRedis::Action;
using Command = std::vector<std::string>;

store::RedisAddress address(uint16_t port, std::string user = "", std::string password = "",
                            int db = 0) {
  store::RedisAddress a;
  a.host = "127.0.0.1";
  a.port = port;
  a.user = std::move(user);
  a.password = std::move(password);
  a.db = db;
  a.display = "redis://127.0.0.1:" + std::to_string(port) + "/" + std::to_string(db);
  return a;
}

RedisClient::Options fast_options() {
  RedisClient::Options o;
  o.connect_timeout = 2000ms;
  o.retry_after = 100ms;
  return o;
}

// One call's outcome, filled in by run_call when the call returns.
struct Outcome {
  bool done = false;
  RedisClient::Result result;
  Clock::duration took{};
};

asio::awaitable<void> run_call(RedisClient* client, std::string command, Clock::duration timeout,
                               Outcome* out) {
  auto start = Clock::now();
  out->result = co_await client->call(std::move(command), timeout);
  out->took = Clock::now() - start;
  out->done = true;
}

// Starts a call; it runs when the test runs the io_context.
void spawn_call(asio::io_context& io, RedisClient& client, std::string command,
                Clock::duration timeout, Outcome& out) {
  asio::co_spawn(io, run_call(&client, std::move(command), timeout, &out), asio::detached);
}

std::string bulk(std::string_view s) {
  return "$" + std::to_string(s.size()) + "\r\n" + std::string(s) + "\r\n";
}

TEST(RedisClientTest, TwoPipelinedCallsAreAnsweredInOrder) {
  asio::io_context io;
  // The first reply comes only once the second command is in: both were
  // sent before any answer (pipelined).
  FakeRedis server(io, [](const Command& c) {
    if (c == Command{"GET", "a"}) {
      return Action{};
    }
    return Action{bulk("A") + bulk("B")};
  });
  RedisClient client(io.get_executor(), address(server.port()), fast_options());
  Outcome a, b;
  spawn_call(io, client, store::encode_command({"GET", "a"}), 5s, a);
  spawn_call(io, client, store::encode_command({"GET", "b"}), 5s, b);
  ASSERT_TRUE(run_until(io, [&] { return a.done && b.done; }));
  ASSERT_TRUE(a.result.ok) << a.result.error;
  ASSERT_TRUE(b.result.ok) << b.result.error;
  EXPECT_EQ(a.result.reply.type, store::Reply::Type::string);
  EXPECT_EQ(a.result.reply.str, "A");
  EXPECT_EQ(b.result.reply.str, "B");
  EXPECT_EQ(server.accepted(), 1);
  EXPECT_TRUE(client.connected());
  EXPECT_EQ(client.address().port, server.port());
}

// A name, not an address: looked up off the loop (getaddrinfo on a thread
// that wakes it). The io_context here has no locks, as a worker's: Asio's
// own resolver cannot complete on one. "localhost" comes from /etc/hosts
// (::1 may come first and be refused; 127.0.0.1 is where the server is).
TEST(RedisClientTest, NameIsLookedUpOnALocklessLoop) {
  asio::io_context io(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE);
  FakeRedis server(io, [](const Command&) { return Action{":7\r\n"}; });
  store::RedisAddress a = address(server.port());
  a.host = "localhost";
  RedisClient client(io.get_executor(), a, fast_options());
  Outcome out;
  spawn_call(io, client, store::encode_command({"INCR", "n"}), 5s, out);
  ASSERT_TRUE(run_until(io, [&] { return out.done; }));
  ASSERT_TRUE(out.result.ok) << out.result.error;
  EXPECT_EQ(out.result.reply.integer, 7);
  EXPECT_EQ(server.accepted(), 1);
}

TEST(RedisClientTest, ErrorReplyIsASuccessfulCall) {
  asio::io_context io;
  FakeRedis server(io, [](const Command&) { return Action{"-NOSCRIPT No matching script.\r\n"}; });
  RedisClient client(io.get_executor(), address(server.port()), fast_options());
  Outcome out;
  spawn_call(io, client, store::encode_command({"EVALSHA", "x", "0"}), 5s, out);
  ASSERT_TRUE(run_until(io, [&] { return out.done; }));
  ASSERT_TRUE(out.result.ok) << out.result.error;
  EXPECT_TRUE(out.result.reply.is_error());
  EXPECT_EQ(out.result.reply.str, "NOSCRIPT No matching script.");
}

TEST(RedisClientTest, TimedOutCallsReplyIsDroppedAndTheNextCallGetsItsOwn) {
  asio::io_context io;
  // "slow" gets no answer until "fast" comes; then both replies, in order.
  FakeRedis server(io, [](const Command& c) {
    if (c[1] == "slow") {
      return Action{};
    }
    return Action{bulk("slow-reply") + bulk("fast-reply")};
  });
  RedisClient client(io.get_executor(), address(server.port()), fast_options());
  Outcome slow;
  spawn_call(io, client, store::encode_command({"GET", "slow"}), 50ms, slow);
  ASSERT_TRUE(run_until(io, [&] { return slow.done; }));
  EXPECT_FALSE(slow.result.ok);
  EXPECT_EQ(slow.result.error, "timeout");
  EXPECT_GE(slow.took, 50ms);
  EXPECT_LT(slow.took, 2s);

  Outcome fast;
  spawn_call(io, client, store::encode_command({"GET", "fast"}), 5s, fast);
  ASSERT_TRUE(run_until(io, [&] { return fast.done; }));
  ASSERT_TRUE(fast.result.ok) << fast.result.error;
  EXPECT_EQ(fast.result.reply.str, "fast-reply");
  EXPECT_EQ(server.accepted(), 1);  // the same connection throughout
  EXPECT_TRUE(client.connected());
}

TEST(RedisClientTest, ClosedConnectionFailsCallsFastUntilRetryAfterThenReconnects) {
  asio::io_context io;
  int commands = 0;
  FakeRedis server(io, [&](const Command&) {
    if (++commands == 1) {
      return Action{"", true};  // close without answering
    }
    return Action{":7\r\n"};
  });
  RedisClient client(io.get_executor(), address(server.port()), fast_options());
  Outcome first;
  spawn_call(io, client, store::encode_command({"INCR", "k"}), 5s, first);
  ASSERT_TRUE(run_until(io, [&] { return first.done; }));
  const auto failed_at = Clock::now();
  EXPECT_FALSE(first.result.ok);
  EXPECT_EQ(first.result.error, "unavailable: connection closed by the server");
  EXPECT_FALSE(client.connected());

  // Within retry_after: at once, the same reason, no new connection.
  Outcome second;
  spawn_call(io, client, store::encode_command({"INCR", "k"}), 5s, second);
  ASSERT_TRUE(run_until(io, [&] { return second.done; }));
  EXPECT_EQ(second.result.error, first.result.error);
  EXPECT_LT(second.took, 50ms);
  EXPECT_EQ(server.accepted(), 1);

  // After it: a new connection, and the call goes through.
  ASSERT_TRUE(run_until(io, [&] { return Clock::now() >= failed_at + 110ms; }));
  Outcome third;
  spawn_call(io, client, store::encode_command({"INCR", "k"}), 5s, third);
  ASSERT_TRUE(run_until(io, [&] { return third.done; }));
  ASSERT_TRUE(third.result.ok) << third.result.error;
  EXPECT_EQ(third.result.reply.type, store::Reply::Type::integer);
  EXPECT_EQ(third.result.reply.integer, 7);
  EXPECT_EQ(server.accepted(), 2);
}

TEST(RedisClientTest, RefusedConnectionIsUnavailable) {
  asio::io_context io;
  uint16_t port = 0;
  {
    asio::ip::tcp::acceptor a(io, {asio::ip::address_v4::loopback(), 0});
    port = a.local_endpoint().port();
  }  // closed: nothing listens there now
  RedisClient client(io.get_executor(), address(port), fast_options());
  Outcome out;
  spawn_call(io, client, store::encode_command({"PING"}), 5s, out);
  ASSERT_TRUE(run_until(io, [&] { return out.done; }));
  EXPECT_FALSE(out.result.ok);
  EXPECT_TRUE(out.result.error.starts_with("unavailable: connect failed")) << out.result.error;
  EXPECT_LT(out.took, 2s);
}

TEST(RedisClientTest, AuthAndSelectGoFirst) {
  asio::io_context io;
  FakeRedis server(io, [](const Command& c) {
    if (c[0] == "AUTH" || c[0] == "SELECT") {
      return Action{"+OK\r\n"};
    }
    return Action{bulk("v")};
  });
  RedisClient client(io.get_executor(), address(server.port(), "ward", "pw", 3), fast_options());
  Outcome out;
  spawn_call(io, client, store::encode_command({"GET", "k"}), 5s, out);
  ASSERT_TRUE(run_until(io, [&] { return out.done; }));
  ASSERT_TRUE(out.result.ok) << out.result.error;
  EXPECT_EQ(out.result.reply.str, "v");
  EXPECT_EQ(server.received(),
            "*3\r\n$4\r\nAUTH\r\n$4\r\nward\r\n$2\r\npw\r\n"
            "*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n"
            "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
  EXPECT_TRUE(client.connected());
}

TEST(RedisClientTest, PasswordAloneIsAuthWithOneArgumentAndDbZeroSendsNoSelect) {
  asio::io_context io;
  FakeRedis server(io, [](const Command& c) {
    return c[0] == "AUTH" ? Action{"+OK\r\n"} : Action{"+PONG\r\n"};
  });
  RedisClient client(io.get_executor(), address(server.port(), "", "pw"), fast_options());
  Outcome out;
  spawn_call(io, client, store::encode_command({"PING"}), 5s, out);
  ASSERT_TRUE(run_until(io, [&] { return out.done; }));
  ASSERT_TRUE(out.result.ok) << out.result.error;
  EXPECT_EQ(out.result.reply.type, store::Reply::Type::status);
  EXPECT_EQ(server.received(), "*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n*1\r\n$4\r\nPING\r\n");
}

TEST(RedisClientTest, AuthErrorFailsTheConnection) {
  asio::io_context io;
  FakeRedis server(io, [](const Command& c) {
    if (c[0] == "AUTH") {
      return Action{"-WRONGPASS invalid username-password pair\r\n"};
    }
    return Action{"-NOAUTH Authentication required.\r\n"};
  });
  RedisClient client(io.get_executor(), address(server.port(), "", "bad"), fast_options());
  Outcome out;
  spawn_call(io, client, store::encode_command({"GET", "k"}), 5s, out);
  ASSERT_TRUE(run_until(io, [&] { return out.done; }));
  EXPECT_FALSE(out.result.ok);
  EXPECT_EQ(out.result.error, "unavailable: AUTH: WRONGPASS invalid username-password pair");
  EXPECT_FALSE(client.connected());
}

TEST(RedisClientTest, NoAnswerToAuthIsAConnectTimeout) {
  asio::io_context io;
  FakeRedis server(io, [](const Command&) { return Action{}; });
  RedisClient::Options o = fast_options();
  o.connect_timeout = 50ms;
  RedisClient client(io.get_executor(), address(server.port(), "", "pw"), o);
  Outcome out;
  spawn_call(io, client, store::encode_command({"GET", "k"}), 5s, out);
  ASSERT_TRUE(run_until(io, [&] { return out.done; }));
  EXPECT_EQ(out.result.error,
            "unavailable: connect timed out after 50 ms (no reply to AUTH or SELECT)");
  EXPECT_LT(out.took, 2s);
}

TEST(RedisClientTest, GarbageFromTheServerIsAProtocolError) {
  asio::io_context io;
  FakeRedis server(io, [](const Command&) { return Action{"?what is this\r\n"}; });
  RedisClient client(io.get_executor(), address(server.port()), fast_options());
  Outcome out;
  spawn_call(io, client, store::encode_command({"GET", "k"}), 5s, out);
  ASSERT_TRUE(run_until(io, [&] { return out.done; }));
  EXPECT_FALSE(out.result.ok);
  EXPECT_TRUE(out.result.error.starts_with("unavailable: protocol error")) << out.result.error;
}

TEST(RedisClientTest, ReplyLargerThanMaxReplyBytesIsAProtocolError) {
  asio::io_context io;
  FakeRedis server(io, [](const Command&) { return Action{bulk(std::string(5000, 'x'))}; });
  RedisClient::Options o = fast_options();
  o.max_reply_bytes = 1024;
  RedisClient client(io.get_executor(), address(server.port()), o);
  Outcome out;
  spawn_call(io, client, store::encode_command({"GET", "k"}), 5s, out);
  ASSERT_TRUE(run_until(io, [&] { return out.done; }));
  EXPECT_EQ(out.result.error, "unavailable: protocol error: reply exceeds 1024 bytes");
}

TEST(RedisClientTest, MorePendingThanMaxPendingIsOverloaded) {
  asio::io_context io;
  FakeRedis server(io, [](const Command&) { return Action{}; });
  RedisClient::Options o = fast_options();
  o.max_pending = 2;
  RedisClient client(io.get_executor(), address(server.port()), o);
  Outcome a, b, c;
  spawn_call(io, client, store::encode_command({"GET", "a"}), 5s, a);
  spawn_call(io, client, store::encode_command({"GET", "b"}), 5s, b);
  spawn_call(io, client, store::encode_command({"GET", "c"}), 5s, c);
  ASSERT_TRUE(run_until(io, [&] { return c.done; }));
  EXPECT_EQ(c.result.error, "overloaded");
  EXPECT_LT(c.took, 1s);
  EXPECT_FALSE(a.done);
  EXPECT_FALSE(b.done);
}

TEST(RedisClientTest, ServerOwingMaxPendingRepliesToTimedOutCallsIsDropped) {
  asio::io_context io;
  FakeRedis server(io, [](const Command&) { return Action{}; });
  RedisClient::Options o = fast_options();
  o.max_pending = 2;
  RedisClient client(io.get_executor(), address(server.port()), o);
  Outcome a, b;
  spawn_call(io, client, store::encode_command({"GET", "a"}), 20ms, a);
  spawn_call(io, client, store::encode_command({"GET", "b"}), 20ms, b);
  ASSERT_TRUE(run_until(io, [&] { return a.done && b.done; }));
  EXPECT_EQ(a.result.error, "timeout");
  EXPECT_EQ(b.result.error, "timeout");
  // No call waits, but two replies are still owed: the connection is given up.
  Outcome c;
  spawn_call(io, client, store::encode_command({"GET", "c"}), 5s, c);
  ASSERT_TRUE(run_until(io, [&] { return c.done; }));
  EXPECT_EQ(c.result.error, "unavailable: no reply to the last 2 commands in time");
  EXPECT_FALSE(client.connected());
}

TEST(RedisClientTest, DestroyingTheClientCompletesWaitingCalls) {
  asio::io_context io;
  FakeRedis server(io, [](const Command&) { return Action{}; });
  auto client =
      std::make_unique<RedisClient>(io.get_executor(), address(server.port()), fast_options());
  Outcome out;
  spawn_call(io, *client, store::encode_command({"GET", "k"}), 10s, out);
  ASSERT_TRUE(run_until(io, [&] { return server.commands().size() == 1; }));
  EXPECT_FALSE(out.done);
  client.reset();
  ASSERT_TRUE(run_until(io, [&] { return out.done; }));
  EXPECT_FALSE(out.result.ok);
  EXPECT_EQ(out.result.error, "unavailable: closed");
  EXPECT_LT(out.took, 5s);
  // Nothing left that touches the client: the io_context runs on idle.
  io.run_for(20ms);
}

TEST(RedisClientTest, DestroyingTheClientWhileConnecting) {
  asio::io_context io;
  FakeRedis server(io, [](const Command&) { return Action{}; });
  auto client =
      std::make_unique<RedisClient>(io.get_executor(), address(server.port()), fast_options());
  Outcome out;
  spawn_call(io, *client, store::encode_command({"GET", "k"}), 10s, out);
  io.poll();  // the call starts, and the connect with it
  io.restart();
  client.reset();
  ASSERT_TRUE(run_until(io, [&] { return out.done; }));
  EXPECT_EQ(out.result.error, "unavailable: closed");
  io.run_for(20ms);
}

}  // namespace
}  // namespace ward::upstream
