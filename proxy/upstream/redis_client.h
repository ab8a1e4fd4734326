#pragma once
// A client for one Redis server, used by one worker thread: pipelined
// commands on one connection, replies matched in order, every call bounded
// by its own timeout. The rate limiter's `store: redis://` calls it.
//
// Failure behaviour (what a caller can rely on):
//   - the first call connects (resolve, connect, AUTH and SELECT when the
//     address has them), all within that call's timeout and
//     Options::connect_timeout;
//   - a call that times out returns Result{.ok = false, .error = "timeout"};
//     its reply, if it comes later, is read and dropped;
//   - when the connection fails (refused, reset, closed, a protocol error,
//     AUTH refused) every call waiting on it fails with "unavailable: <why>",
//     and for Options::retry_after calls fail at once with the same reason
//     without trying to connect (a dead Redis costs no latency per request);
//     the first call after that reconnects;
//   - more than Options::max_pending calls waiting: "overloaded", at once.
// A Redis error reply (-ERR ..., -NOSCRIPT ...) is a successful call whose
// reply has Type::error.
//
// Not thread-safe: every call on the io_context thread of `ex`. Destroying
// the client fails the calls still waiting ("unavailable: closed").
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "proxy/store/redis.h"

namespace ward::upstream {

class RedisClient {
 public:
  struct Options {
    std::chrono::milliseconds connect_timeout{1000};
    std::chrono::milliseconds retry_after{1000};
    size_t max_pending = 10000;
    size_t max_reply_bytes = 1 << 20;
  };
  struct Result {
    bool ok = false;
    store::Reply reply;  // when ok
    std::string error;   // when not ok
  };

  RedisClient(boost::asio::any_io_executor ex, store::RedisAddress address);
  RedisClient(boost::asio::any_io_executor ex, store::RedisAddress address, Options options);
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // Sends one RESP-encoded command (store::encode_command) and waits for its
  // reply, `timeout` at most from now, connecting first when needed.
  boost::asio::awaitable<Result> call(std::string command,
                                      std::chrono::steady_clock::duration timeout);

  const store::RedisAddress& address() const;
  bool connected() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace ward::upstream
