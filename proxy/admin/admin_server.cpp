#include "proxy/admin/admin_server.h"

#include <chrono>
#include <exception>
#include <optional>
#include <string_view>
#include <unordered_set>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "proxy/util/json.h"

namespace ward::admin {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr uint32_t kMaxHeadBytes = 8 * 1024;
// Admin requests have no use for a body; a small one is read and ignored so a
// client that sends one still gets its answer.
constexpr uint64_t kMaxBodyBytes = 8 * 1024;
constexpr auto kIoTimeout = std::chrono::seconds(10);
// The admin listener is private, but a runaway client must still not be able
// to use up the process's descriptors.
constexpr size_t kMaxConnections = 256;
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(100);

constexpr std::string_view kJson = "application/json";
constexpr std::string_view kPrometheusText = "text/plain; version=0.0.4; charset=utf-8";

using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

std::string error_body(std::string_view error, int status) {
  std::string body = "{\"error\":";
  util::json_string_append(body, error);
  body += ",\"status\":";
  body += std::to_string(status);
  body += "}";
  return body;
}

class Session;

// The listener and what every session shares. Kept alive by the AdminServer
// and by every pending handler, so a session never outlives it.
struct Server : std::enable_shared_from_this<Server> {
  Server(asio::io_context& ioc, AdminSources sources)
      : ioc(ioc), acceptor(ioc), retry_timer(ioc), sources(std::move(sources)) {}

  void listen(const config::Address& address);
  void start_accept();
  void on_accept(error_code ec, tcp::socket socket);
  void stop();
  Response respond(const Request& req) const;

  asio::io_context& ioc;
  tcp::acceptor acceptor;
  asio::steady_timer retry_timer;
  const AdminSources sources;
  uint16_t port = 0;
  // Everything below is touched on the admin thread only (the one thread that
  // runs `ioc`), so it needs no lock.
  std::unordered_set<Session*> sessions;
  bool stopped = false;
};

// One admin connection, kept alive by the handlers it has pending (Beast's
// async server idiom). Requests on it are answered one after another.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<Server> server)
      : stream_(std::move(socket)), server_(std::move(server)) {
    server_->sessions.insert(this);
  }

  ~Session() { server_->sessions.erase(this); }

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void start() { do_read(); }

  // Pending operations complete with operation_aborted and drop their
  // reference, which ends the session.
  void close() {
    error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
  }

 private:
  void do_read() {
    parser_.emplace();
    parser_->header_limit(kMaxHeadBytes);
    parser_->body_limit(kMaxBodyBytes);
    stream_.expires_after(kIoTimeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](error_code ec, size_t) { self->on_read(ec); });
  }

  void on_read(error_code ec) {
    if (ec == http::error::header_limit) {
      send_error(http::status::request_header_fields_too_large, "request_header_fields_too_large");
      return;
    }
    if (ec == http::error::body_limit) {
      send_error(http::status::payload_too_large, "payload_too_large");
      return;
    }
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::operation_aborted) {
      close();
      return;
    }
    if (ec) {
      // Any other parse failure is a malformed request; other socket errors
      // (reset) make the write below fail quietly.
      send_error(http::status::bad_request, "bad_request");
      return;
    }
    if (server_->stopped) {
      close();
      return;
    }
    send(server_->respond(parser_->get()));
  }

  // After a request that could not be parsed the connection's framing is
  // lost, so the answer is followed by a close.
  void send_error(http::status status, std::string_view error) {
    Response res{status, 11};
    res.set(http::field::content_type, kJson);
    res.set(http::field::cache_control, "no-store");
    res.body() = error_body(error, static_cast<int>(status));
    res.keep_alive(false);
    res.prepare_payload();
    send(std::move(res));
  }

  void send(Response res) {
    res_ = std::move(res);
    stream_.expires_after(kIoTimeout);
    http::async_write(stream_, res_,
                      [self = shared_from_this()](error_code ec, size_t) { self->on_write(ec); });
  }

  void on_write(error_code ec) {
    if (ec || res_.need_eof() || server_->stopped) {
      close();
      return;
    }
    do_read();
  }

  beast::tcp_stream stream_;
  // Bounded: a head is at most kMaxHeadBytes and a body kMaxBodyBytes, plus
  // room for a pipelined next request.
  beast::flat_buffer buffer_{2 * (kMaxHeadBytes + kMaxBodyBytes)};
  std::optional<http::request_parser<http::string_body>> parser_;
  Response res_;
  std::shared_ptr<Server> server_;
};

void Server::listen(const config::Address& address) {
  auto fail = [&](error_code ec) {
    throw boost::system::system_error(ec, "admin listener " + address.text);
  };
  auto try_bind = [&](const tcp::endpoint& ep, bool dual_stack) {
    error_code ec;
    acceptor.open(ep.protocol(), ec);
    if (!ec) {
      acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    }
    if (!ec && dual_stack) {
      acceptor.set_option(asio::ip::v6_only(false), ec);
    }
    if (!ec) {
      acceptor.bind(ep, ec);
    }
    if (!ec) {
      acceptor.listen(asio::socket_base::max_listen_connections, ec);
    }
    if (ec) {
      error_code ignored;
      acceptor.close(ignored);
    }
    return ec;
  };

  error_code ec;
  if (address.host.empty()) {
    // All interfaces: one dual-stack socket, or IPv4 only where the host has
    // no IPv6.
    ec = try_bind(tcp::endpoint(tcp::v6(), address.port), true);
    if (ec) {
      ec = try_bind(tcp::endpoint(tcp::v4(), address.port), false);
    }
  } else {
    auto ip = asio::ip::make_address(address.host, ec);
    if (!ec) {
      ec = try_bind(tcp::endpoint(ip, address.port), false);
    } else {
      // A name: resolved once, at start (this runs on the main thread before
      // it serves anything).
      tcp::resolver resolver(ioc);
      auto results = resolver.resolve(address.host, std::to_string(address.port), ec);
      if (!ec && results.empty()) {
        ec = asio::error::host_not_found;
      }
      if (!ec) {
        ec = try_bind(results.begin()->endpoint(), false);
      }
    }
  }
  if (ec) {
    fail(ec);
  }
  port = acceptor.local_endpoint().port();
}

void Server::start_accept() {
  acceptor.async_accept(ioc, [self = shared_from_this()](error_code ec, tcp::socket socket) {
    self->on_accept(ec, std::move(socket));
  });
}

void Server::on_accept(error_code ec, tcp::socket socket) {
  if (stopped || ec == asio::error::operation_aborted) {
    return;
  }
  if (ec) {
    // EMFILE and friends: retry later instead of spinning on the error.
    retry_timer.expires_after(kAcceptRetryDelay);
    retry_timer.async_wait([self = shared_from_this()](error_code wait_ec) {
      if (!wait_ec && !self->stopped) {
        self->start_accept();
      }
    });
    return;
  }
  if (sessions.size() < kMaxConnections) {
    error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    std::make_shared<Session>(std::move(socket), shared_from_this())->start();
  }
  // else: `socket` is closed as it goes out of scope.
  start_accept();
}

void Server::stop() {
  if (stopped) {
    return;
  }
  stopped = true;
  error_code ignored;
  acceptor.close(ignored);
  retry_timer.cancel();
  // close() does not end a session synchronously (its handlers still have to
  // run), but copy anyway: nothing must depend on that.
  std::vector<Session*> open(sessions.begin(), sessions.end());
  for (Session* s : open) {
    s->close();
  }
}

Response Server::respond(const Request& req) const {
  std::string_view target = req.target();
  std::string_view path = target.substr(0, target.find('?'));

  Response res{http::status::ok, req.version()};
  res.set(http::field::cache_control, "no-store");
  res.keep_alive(req.keep_alive());
  auto answer = [&](http::status status, std::string_view content_type, std::string body) {
    res.result(status);
    res.set(http::field::content_type, content_type);
    res.body() = std::move(body);
  };
  auto json_or_empty = [](const std::function<std::string()>& f) {
    return f ? f() : std::string("{}");
  };

  bool known = path == "/healthz" || path == "/readyz" || path == "/metrics" ||
               path == "/upstreams" || path == "/config";
  try {
    if (!known) {
      answer(http::status::not_found, kJson, error_body("not_found", 404));
    } else if (req.method() != http::verb::get && req.method() != http::verb::head) {
      // RFC 9110 15.5.6: a 405 lists the methods the resource supports.
      answer(http::status::method_not_allowed, kJson, error_body("method_not_allowed", 405));
      res.set(http::field::allow, "GET, HEAD");
    } else if (path == "/healthz") {
      std::string body = "{\"status\":\"healthy\",\"version\":";
      util::json_string_append(body, sources.version);
      body += "}";
      answer(http::status::ok, kJson, std::move(body));
    } else if (path == "/readyz") {
      Readiness r = sources.readiness ? sources.readiness() : Readiness{};
      if (r.ready) {
        answer(http::status::ok, kJson, "{\"status\":\"ready\"}");
      } else {
        std::string body = "{\"status\":\"unavailable\",\"reason\":";
        util::json_string_append(body, r.reason);
        body += "}";
        answer(http::status::service_unavailable, kJson, std::move(body));
      }
    } else if (path == "/metrics") {
      answer(http::status::ok, kPrometheusText, sources.metrics ? sources.metrics() : "");
    } else if (path == "/upstreams") {
      answer(http::status::ok, kJson, json_or_empty(sources.upstreams_json));
    } else {
      answer(http::status::ok, kJson, json_or_empty(sources.config_json));
    }
  } catch (const std::exception&) {
    // A failing source must not take the admin listener down with it.
    answer(http::status::internal_server_error, kJson, error_body("internal_error", 500));
  }

  res.prepare_payload();
  if (req.method() == http::verb::head) {
    // HEAD: the GET's headers, Content-Length included, and no body.
    res.body().clear();
  }
  return res;
}

}  // namespace

struct AdminServer::Impl : Server {
  using Server::Server;
};

AdminServer::AdminServer(asio::io_context& ioc, const config::Address& address,
                         AdminSources sources)
    : impl_(std::make_shared<Impl>(ioc, std::move(sources))) {
  impl_->listen(address);
  impl_->start_accept();
}

AdminServer::~AdminServer() {
  stop();
}

uint16_t AdminServer::port() const {
  return impl_->port;
}

void AdminServer::stop() {
  impl_->stop();
}

}  // namespace ward::admin
