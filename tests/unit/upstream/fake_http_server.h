#pragma once

// Loopback helpers for tests of code that talks to upstreams: a small HTTP
// server, and a bounded wait on an io_context.

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace ward::upstream::testing {

namespace asio = boost::asio;
using asio::ip::tcp;

// A server on a loopback port that answers every connection with `answer`
// after reading a request head; with an empty `answer` it reads and never
// answers (a hung server). Counts the connections it accepted.
// It serves from its first run of the io_context on, and must live until
// that io_context has run (its loop starts there).
class FakeServer {
 public:
  FakeServer(asio::io_context& io, std::string answer) : acceptor_(io), answer_(std::move(answer)) {
    acceptor_.open(tcp::v4());
    acceptor_.bind(tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    acceptor_.listen();
    asio::co_spawn(io, serve(), asio::detached);
  }
  ~FakeServer() { close(); }
  void close() {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    for (auto& s : sockets_) {
      s->close(ignored);
    }
  }
  tcp::endpoint endpoint() const { return acceptor_.local_endpoint(); }
  int accepted() const { return accepted_; }
  const std::string& last_request() const { return last_request_; }

 private:
  asio::awaitable<void> serve() {
    while (true) {
      auto [ec, socket] = co_await acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec) {
        co_return;
      }
      ++accepted_;
      sockets_.push_back(std::make_shared<tcp::socket>(std::move(socket)));
      asio::co_spawn(acceptor_.get_executor(), answer(sockets_.back()), asio::detached);
    }
  }

  asio::awaitable<void> answer(std::shared_ptr<tcp::socket> s) {
    std::string got;
    char buf[1024];
    while (got.find("\r\n\r\n") == std::string::npos) {
      auto [ec, n] =
          co_await s->async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
      if (ec) {
        co_return;
      }
      got.append(buf, n);
    }
    last_request_ = got;
    if (answer_.empty()) {
      co_return;  // hold the connection open, say nothing
    }
    auto [ec, n] =
        co_await asio::async_write(*s, asio::buffer(answer_), asio::as_tuple(asio::use_awaitable));
    (void)ec;
    (void)n;
    boost::system::error_code ignored;
    s->close(ignored);
  }

  tcp::acceptor acceptor_;
  std::string answer_;
  std::vector<std::shared_ptr<tcp::socket>> sockets_;
  int accepted_ = 0;
  std::string last_request_;
};

// Runs `io` in slices of `slice` until `done()` or 10 s; true when done.
template <typename Pred>
bool run_until(asio::io_context& io, Pred done,
               std::chrono::milliseconds slice = std::chrono::milliseconds(5)) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    io.run_for(slice);
    io.restart();
  }
  return done();
}

}  // namespace ward::upstream::testing
