#pragma once

// A scripted stand-in for a Redis server on a loopback port, for the
// RedisClient tests: it reads commands (RESP arrays of bulk strings, what
// clients send), and for each asks the test's script what to do: send some
// bytes (any bytes: several replies, a late reply, garbage), say nothing,
// or close the connection. Records every byte and command it got and counts
// the connections it accepted.
//
// It serves from its first run of the io_context on, and must live until
// that io_context has run (its loops start there).

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <charconv>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ward::upstream::testing {

namespace asio = boost::asio;
using asio::ip::tcp;

class FakeRedis {
 public:
  struct Action {
    std::string send;    // bytes to send back ("" = say nothing)
    bool close = false;  // then close the connection
  };
  // Called with each command's arguments ({"GET", "k"}) in order.
  using Script = std::function<Action(const std::vector<std::string>& command)>;

  FakeRedis(asio::io_context& io, Script script) : acceptor_(io), script_(std::move(script)) {
    acceptor_.open(tcp::v4());
    acceptor_.bind(tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    asio::co_spawn(io, serve(), asio::detached);
  }
  ~FakeRedis() { close(); }
  FakeRedis(const FakeRedis&) = delete;
  FakeRedis& operator=(const FakeRedis&) = delete;

  void close() {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    for (auto& s : sockets_) {
      s->close(ignored);
    }
  }
  uint16_t port() const { return port_; }
  int accepted() const { return accepted_; }
  // Every byte received, from every connection, in order of arrival.
  const std::string& received() const { return received_; }
  const std::vector<std::vector<std::string>>& commands() const { return commands_; }

  // One command off the front of `buf`: nullopt when incomplete; sets `bad`
  // when the bytes are not an array of bulk strings.
  static std::optional<std::vector<std::string>> take_command(std::string& buf, bool& bad) {
    size_t pos = 0;
    auto number = [&](char type, long& n) -> int {  // 1 ok, 0 incomplete, -1 bad
      if (pos >= buf.size()) {
        return 0;
      }
      if (buf[pos] != type) {
        return -1;
      }
      size_t eol = buf.find("\r\n", pos);
      if (eol == std::string::npos) {
        return 0;
      }
      auto [end, ec] = std::from_chars(buf.data() + pos + 1, buf.data() + eol, n);
      if (ec != std::errc() || end != buf.data() + eol || n < 0) {
        return -1;
      }
      pos = eol + 2;
      return 1;
    };
    long count = 0;
    int r = number('*', count);
    if (r <= 0) {
      bad = r < 0;
      return std::nullopt;
    }
    std::vector<std::string> args;
    for (long i = 0; i < count; ++i) {
      long len = 0;
      r = number('$', len);
      if (r <= 0) {
        bad = r < 0;
        return std::nullopt;
      }
      if (buf.size() < pos + static_cast<size_t>(len) + 2) {
        return std::nullopt;
      }
      args.push_back(buf.substr(pos, static_cast<size_t>(len)));
      pos += static_cast<size_t>(len) + 2;
    }
    buf.erase(0, pos);
    return args;
  }

 private:
  asio::awaitable<void> serve() {
    while (true) {
      auto [ec, socket] = co_await acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec) {
        co_return;
      }
      ++accepted_;
      sockets_.push_back(std::make_shared<tcp::socket>(std::move(socket)));
      asio::co_spawn(acceptor_.get_executor(), session(sockets_.back()), asio::detached);
    }
  }

  asio::awaitable<void> session(std::shared_ptr<tcp::socket> s) {
    std::string buf;
    char chunk[4096];
    while (true) {
      auto [ec, n] =
          co_await s->async_read_some(asio::buffer(chunk), asio::as_tuple(asio::use_awaitable));
      if (ec) {
        co_return;
      }
      received_.append(chunk, n);
      buf.append(chunk, n);
      while (true) {
        bool bad = false;
        std::optional<std::vector<std::string>> command = take_command(buf, bad);
        if (bad) {
          boost::system::error_code ignored;
          s->close(ignored);
          co_return;
        }
        if (!command) {
          break;
        }
        commands_.push_back(*command);
        Action action = script_(*command);
        if (!action.send.empty()) {
          auto [wec, written] = co_await asio::async_write(*s, asio::buffer(action.send),
                                                           asio::as_tuple(asio::use_awaitable));
          (void)written;
          if (wec) {
            co_return;
          }
        }
        if (action.close) {
          boost::system::error_code ignored;
          s->close(ignored);
          co_return;
        }
      }
    }
  }

  tcp::acceptor acceptor_;
  Script script_;
  uint16_t port_ = 0;
  std::vector<std::shared_ptr<tcp::socket>> sockets_;
  int accepted_ = 0;
  std::string received_;
  std::vector<std::vector<std::string>> commands_;
};

}  // namespace ward::upstream::testing
