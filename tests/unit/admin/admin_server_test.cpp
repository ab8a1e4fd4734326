#include "proxy/admin/admin_server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace ward::admin {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using namespace std::chrono_literals;

constexpr auto kClientTimeout = 5s;

// A blocking-style HTTP client whose every operation has a deadline: each
// call runs its own io_context until the operation completes or
// beast::tcp_stream's timer fires.
class Client {
 public:
  explicit Client(uint16_t port) : stream_(ioc_) {
    stream_.expires_after(kClientTimeout);
    stream_.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                          [this](error_code ec) { ec_ = ec; });
    run();
  }

  error_code connect_error() const { return ec_; }

  http::response<http::string_body> request(http::verb method, std::string target,
                                            bool keep_alive = true) {
    http::request<http::empty_body> req{method, target, 11};
    req.set(http::field::host, "127.0.0.1");
    req.keep_alive(keep_alive);
    write_message(req);
    return read_response(method == http::verb::head);
  }

  void write_raw(std::string data) {
    raw_ = std::move(data);
    stream_.expires_after(kClientTimeout);
    asio::async_write(stream_, asio::buffer(raw_), [this](error_code ec, size_t) { ec_ = ec; });
    run();
  }

  http::response<http::string_body> read_response(bool head = false) {
    http::response_parser<http::string_body> parser;
    parser.skip(head);  // a HEAD answer has Content-Length but no body
    stream_.expires_after(kClientTimeout);
    http::async_read(stream_, buffer_, parser, [this](error_code ec, size_t) { ec_ = ec; });
    run();
    EXPECT_FALSE(ec_) << ec_.message();
    return parser.release();
  }

  // What the next read gives: end_of_stream when the server closed.
  error_code read_error() {
    http::response<http::string_body> res;
    stream_.expires_after(kClientTimeout);
    http::async_read(stream_, buffer_, res, [this](error_code ec, size_t) { ec_ = ec; });
    run();
    return ec_;
  }

 private:
  template <class Message>
  void write_message(Message& msg) {
    stream_.expires_after(kClientTimeout);
    http::async_write(stream_, msg, [this](error_code ec, size_t) { ec_ = ec; });
    run();
    EXPECT_FALSE(ec_) << ec_.message();
  }

  void run() {
    ec_ = {};
    ioc_.restart();
    ioc_.run();  // bounded by the stream's expiry
  }

  asio::io_context ioc_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::string raw_;
  error_code ec_;
};

class AdminServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AdminSources sources;
    sources.version = "1.2.3";
    sources.readiness = [this] {
      if (draining_.load()) {
        return Readiness{false, "draining"};
      }
      return Readiness{};
    };
    sources.metrics = [] { return std::string("# HELP x X.\n# TYPE x counter\nx 1\n"); };
    sources.upstreams_json = [] { return std::string(R"({"upstreams":[]})"); };
    sources.config_json = [] { return std::string(R"({"generation":1})"); };
    start(std::move(sources));
  }

  void TearDown() override { shutdown(); }

  void start(AdminSources sources, std::string host = "127.0.0.1") {
    config::Address address;
    address.host = std::move(host);
    address.port = 0;
    address.host_is_ip = true;
    address.text = address.host + ":0";
    // Built before the io thread starts: the server is used on that thread only.
    server_ = std::make_unique<AdminServer>(ioc_, address, std::move(sources));
    thread_ = std::thread([this] { ioc_.run(); });
  }

  void shutdown() {
    if (thread_.joinable()) {
      stop_on_io_thread();  // while the work guard still keeps run() going
      work_.reset();
      ioc_.stop();
      thread_.join();
    }
    server_.reset();
  }

  // stop() belongs on the admin thread; wait for it with a deadline.
  void stop_on_io_thread() {
    std::promise<void> done;
    auto f = done.get_future();
    asio::post(ioc_, [&] {
      server_->stop();
      done.set_value();
    });
    ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  }

  uint16_t port() const { return server_->port(); }

  asio::io_context ioc_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_{
      asio::make_work_guard(ioc_)};
  std::unique_ptr<AdminServer> server_;
  std::thread thread_;
  std::atomic<bool> draining_{false};
};

TEST_F(AdminServerTest, BindsPortZeroAndReportsTheRealPort) {
  EXPECT_NE(port(), 0);
}

TEST_F(AdminServerTest, HealthzAnswersHealthyWithVersion) {
  Client c(port());
  auto res = c.request(http::verb::get, "/healthz");
  EXPECT_EQ(res.result(), http::status::ok);
  EXPECT_EQ(res[http::field::content_type], "application/json");
  EXPECT_EQ(res.body(), R"({"status":"healthy","version":"1.2.3"})");
  EXPECT_EQ(res[http::field::content_length], std::to_string(res.body().size()));
}

TEST_F(AdminServerTest, ReadyzFlipsTo503WithReasonAndBack) {
  Client c(port());
  auto res = c.request(http::verb::get, "/readyz");
  EXPECT_EQ(res.result(), http::status::ok);
  EXPECT_EQ(res[http::field::content_type], "application/json");
  EXPECT_EQ(res.body(), R"({"status":"ready"})");

  draining_ = true;
  res = c.request(http::verb::get, "/readyz");
  EXPECT_EQ(res.result(), http::status::service_unavailable);
  EXPECT_EQ(res[http::field::content_type], "application/json");
  EXPECT_EQ(res.body(), R"({"status":"unavailable","reason":"draining"})");

  draining_ = false;
  res = c.request(http::verb::get, "/readyz");
  EXPECT_EQ(res.result(), http::status::ok);
}

TEST_F(AdminServerTest, MetricsServesPrometheusText) {
  Client c(port());
  auto res = c.request(http::verb::get, "/metrics");
  EXPECT_EQ(res.result(), http::status::ok);
  EXPECT_EQ(res[http::field::content_type], "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(res.body(), "# HELP x X.\n# TYPE x counter\nx 1\n");
}

TEST_F(AdminServerTest, UpstreamsAndConfigServeJson) {
  Client c(port());
  auto res = c.request(http::verb::get, "/upstreams");
  EXPECT_EQ(res.result(), http::status::ok);
  EXPECT_EQ(res[http::field::content_type], "application/json");
  EXPECT_EQ(res.body(), R"({"upstreams":[]})");
  res = c.request(http::verb::get, "/config");
  EXPECT_EQ(res.result(), http::status::ok);
  EXPECT_EQ(res[http::field::content_type], "application/json");
  EXPECT_EQ(res.body(), R"({"generation":1})");
}

TEST_F(AdminServerTest, QueryStringDoesNotChangeTheEndpoint) {
  Client c(port());
  auto res = c.request(http::verb::get, "/metrics?name[]=x");
  EXPECT_EQ(res.result(), http::status::ok);
  EXPECT_EQ(res[http::field::content_type], "text/plain; version=0.0.4; charset=utf-8");
}

TEST_F(AdminServerTest, UnknownPathIs404Json) {
  Client c(port());
  for (const char* target : {"/", "/nope", "/metrics/", "/healthzz", "/HEALTHZ"}) {
    auto res = c.request(http::verb::get, target);
    EXPECT_EQ(res.result(), http::status::not_found) << target;
    EXPECT_EQ(res[http::field::content_type], "application/json");
    EXPECT_EQ(res.body(), R"({"error":"not_found","status":404})");
  }
}

TEST_F(AdminServerTest, OtherMethodsAre405WithAllow) {
  Client c(port());
  for (auto method : {http::verb::post, http::verb::put, http::verb::delete_}) {
    auto res = c.request(method, "/metrics");
    EXPECT_EQ(res.result(), http::status::method_not_allowed);
    EXPECT_EQ(res[http::field::content_type], "application/json");
    EXPECT_EQ(res[http::field::allow], "GET, HEAD");
    EXPECT_EQ(res.body(), R"({"error":"method_not_allowed","status":405})");
  }
}

TEST_F(AdminServerTest, HeadGivesTheGetHeadersWithoutBody) {
  Client c(port());
  auto res = c.request(http::verb::head, "/healthz");
  EXPECT_EQ(res.result(), http::status::ok);
  EXPECT_EQ(res[http::field::content_type], "application/json");
  EXPECT_EQ(res[http::field::content_length],
            std::to_string(std::string(R"({"status":"healthy","version":"1.2.3"})").size()));
  EXPECT_EQ(res.body(), "");
  // The connection is still in sync: a GET after the HEAD works.
  res = c.request(http::verb::get, "/healthz");
  EXPECT_EQ(res.body(), R"({"status":"healthy","version":"1.2.3"})");
}

TEST_F(AdminServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  Client c(port());
  for (int i = 0; i < 5; ++i) {
    auto res = c.request(http::verb::get, "/healthz");
    EXPECT_EQ(res.result(), http::status::ok);
    EXPECT_TRUE(res.keep_alive());
  }
}

TEST_F(AdminServerTest, PipelinedRequestsAreAnsweredInOrder) {
  Client c(port());
  c.write_raw(
      "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
      "GET /readyz HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(c.read_response().body(), R"({"status":"healthy","version":"1.2.3"})");
  EXPECT_EQ(c.read_response().body(), R"({"status":"ready"})");
}

TEST_F(AdminServerTest, ConnectionCloseIsHonoured) {
  Client c(port());
  auto res = c.request(http::verb::get, "/healthz", /*keep_alive=*/false);
  EXPECT_EQ(res.result(), http::status::ok);
  EXPECT_FALSE(res.keep_alive());
  EXPECT_EQ(c.read_error(), http::error::end_of_stream);
}

TEST_F(AdminServerTest, OversizedHeadGets431AndClose) {
  Client c(port());
  c.write_raw("GET /healthz HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(9000, 'a') + "\r\n\r\n");
  auto res = c.read_response();
  EXPECT_EQ(res.result(), http::status::request_header_fields_too_large);
  EXPECT_EQ(res[http::field::content_type], "application/json");
  EXPECT_EQ(res.body(), R"({"error":"request_header_fields_too_large","status":431})");
  EXPECT_FALSE(res.keep_alive());
  EXPECT_EQ(c.read_error(), http::error::end_of_stream);
}

TEST_F(AdminServerTest, MalformedRequestGets400AndClose) {
  Client c(port());
  c.write_raw("GET /healthz HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n");
  auto res = c.read_response();
  EXPECT_EQ(res.result(), http::status::bad_request);
  EXPECT_EQ(res.body(), R"({"error":"bad_request","status":400})");
  EXPECT_EQ(c.read_error(), http::error::end_of_stream);
}

TEST_F(AdminServerTest, SmallRequestBodyIsReadAndIgnored) {
  Client c(port());
  c.write_raw("POST /config HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello");
  EXPECT_EQ(c.read_response().result(), http::status::method_not_allowed);
  EXPECT_EQ(c.request(http::verb::get, "/healthz").result(), http::status::ok);
}

TEST_F(AdminServerTest, StopClosesTheListenerAndOpenConnections) {
  Client c(port());
  EXPECT_EQ(c.request(http::verb::get, "/healthz").result(), http::status::ok);
  uint16_t p = port();
  stop_on_io_thread();
  error_code ec = c.read_error();
  EXPECT_TRUE(ec == http::error::end_of_stream || ec == asio::error::connection_reset)
      << ec.message();
  Client late(p);
  EXPECT_EQ(late.connect_error(), asio::error::connection_refused);
}

TEST_F(AdminServerTest, BindingAPortInUseThrows) {
  config::Address address;
  address.host = "127.0.0.1";
  address.port = port();
  address.host_is_ip = true;
  address.text = "127.0.0.1:" + std::to_string(port());
  asio::io_context other;
  try {
    AdminServer second(other, address, AdminSources{});
    FAIL() << "expected boost::system::system_error";
  } catch (const boost::system::system_error& e) {
    EXPECT_EQ(e.code(), asio::error::address_in_use);
    EXPECT_NE(std::string(e.what()).find(address.text), std::string::npos) << e.what();
  }
}

class AdminServerDefaultsTest : public AdminServerTest {
 protected:
  void SetUp() override {}
};

TEST_F(AdminServerDefaultsTest, EmptyHostListensOnAllInterfaces) {
  start(AdminSources{"9.9.9", {}, {}, {}, {}}, "");
  Client c(port());
  ASSERT_FALSE(c.connect_error()) << c.connect_error().message();
  EXPECT_EQ(c.request(http::verb::get, "/healthz").body(),
            R"({"status":"healthy","version":"9.9.9"})");
}

TEST_F(AdminServerDefaultsTest, EmptySourcesGiveReadyEmptyMetricsAndEmptyJson) {
  start(AdminSources{"0", {}, {}, {}, {}});
  Client c(port());
  EXPECT_EQ(c.request(http::verb::get, "/readyz").body(), R"({"status":"ready"})");
  EXPECT_EQ(c.request(http::verb::get, "/metrics").body(), "");
  EXPECT_EQ(c.request(http::verb::get, "/upstreams").body(), "{}");
  EXPECT_EQ(c.request(http::verb::get, "/config").body(), "{}");
}

TEST_F(AdminServerDefaultsTest, ThrowingSourceGives500AndKeepsServing) {
  AdminSources sources;
  sources.version = "0";
  sources.config_json = []() -> std::string { throw std::runtime_error("boom"); };
  start(std::move(sources));
  Client c(port());
  auto res = c.request(http::verb::get, "/config");
  EXPECT_EQ(res.result(), http::status::internal_server_error);
  EXPECT_EQ(res.body(), R"({"error":"internal_error","status":500})");
  EXPECT_EQ(c.request(http::verb::get, "/healthz").result(), http::status::ok);
}

TEST_F(AdminServerDefaultsTest, VersionIsJsonEscaped) {
  start(AdminSources{"1.0\"beta\\", {}, {}, {}, {}});
  Client c(port());
  EXPECT_EQ(c.request(http::verb::get, "/healthz").body(),
            R"({"status":"healthy","version":"1.0\"beta\\"})");
}

}  // namespace
}  // namespace ward::admin
