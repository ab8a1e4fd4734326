#include "proxy/upstream/redis_client.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <deque>
#include <optional>
#include <vector>

#include "proxy/upstream/name_lookup.h"

// Style note: GCC 12 miscompiles some coroutine shapes (a co_await inside a
// condition or a ternary, `co_return co_await`). Every co_await here is a
// plain statement or initializes a variable.
//
// Lifetimes: the client holds a State; so does every coroutine it starts
// (connect, reader, writer) and every call in flight. A connection is a
// Conn, held by State while it is the current one and by its coroutines;
// when it fails it is marked dead and its socket closed, and coroutines
// still suspended on it wake, see `dead` and end without touching anything
// else. Destroying the client fails the current connection ("closed"), so
// nothing the client owned is reached after it is gone.

namespace ward::upstream {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kReadChunk = 16 * 1024;

// One call waiting for its reply. Its timer is the wake-up: it expires at
// the call's deadline, and a reply (or a failure) stores the result and
// cancels it.
struct Waiter {
  explicit Waiter(const asio::any_io_executor& ex) : timer(ex) {}
  asio::steady_timer timer;
  std::optional<RedisClient::Result> result;
  bool abandoned = false;  // timed out: its reply is read and dropped
};

void complete(Waiter& w, RedisClient::Result r) {
  if (w.abandoned || w.result) {
    return;
  }
  w.result = std::move(r);
  w.timer.cancel();
}

RedisClient::Result unavailable(const std::string& why) {
  return {.ok = false, .reply = {}, .error = "unavailable: " + why};
}

// Everything the client owns, shared with its coroutines and calls.
struct ClientState {
  ClientState(asio::any_io_executor e, store::RedisAddress a, RedisClient::Options o)
      : ex(std::move(e)), address(std::move(a)), options(o) {}

  // What a reply in the FIFO answers: a call, or a command of our own sent
  // first on a new connection.
  struct Entry {
    enum class Kind : uint8_t { call, auth, select };
    Kind kind = Kind::call;
    std::shared_ptr<Waiter> waiter;  // calls only
  };

  struct Conn {
    Conn(const asio::any_io_executor& ex, size_t max_reply_bytes)
        : socket(ex), lookup_wait(ex), connect_timer(ex), reader(max_reply_bytes) {}
    tcp::socket socket;
    asio::posix::stream_descriptor lookup_wait;  // while a name is looked up (name_lookup.h)
    asio::steady_timer connect_timer;            // bounds connect, AUTH and SELECT
    store::RespReader reader;
    std::deque<Entry> fifo;  // sent or queued, in order, until answered
    std::string out;         // queued, not yet handed to the writer
    std::string sending;     // being written
    size_t handshake = 0;    // AUTH / SELECT replies still expected
    bool open = false;       // TCP connected: reader running, writer may run
    bool writing = false;    // a writer coroutine is running
    bool timed_out = false;  // connect_timer fired during the connect phase
    bool dead = false;       // failed or closed; its coroutines end
    bool ready() const { return open && handshake == 0; }
  };

  asio::any_io_executor ex;
  store::RedisAddress address;
  RedisClient::Options options;
  std::shared_ptr<Conn> conn;  // the current connection (connecting or open)
  Clock::time_point failed_until{};
  std::string failed_reason;
  size_t waiting = 0;  // calls waiting for a result (not abandoned)
  bool closed = false;
};

using State = ClientState;
using Conn = State::Conn;
using Entry = State::Entry;

// The connection is over: every call waiting on it fails with `why`, and
// so do calls for retry_after (unless it is the client closing).
// `c` by value: it may be s.conn, which this resets.
void fail(State& s, std::shared_ptr<Conn> c, const std::string& why) {
  if (c->dead) {
    return;
  }
  c->dead = true;
  error_code ignored;
  c->connect_timer.cancel();
  c->lookup_wait.close(ignored);
  c->socket.close(ignored);
  if (s.conn == c) {
    s.conn = nullptr;
    s.failed_until = Clock::now() + s.options.retry_after;
    s.failed_reason = why;
  }
  std::deque<Entry> fifo;
  fifo.swap(c->fifo);
  for (Entry& e : fifo) {
    if (e.waiter) {
      complete(*e.waiter, unavailable(why));
    }
  }
}

std::string connect_timed_out(const State& s) {
  return "connect timed out after " + std::to_string(s.options.connect_timeout.count()) + " ms";
}

asio::awaitable<void> write_loop(std::shared_ptr<State> s, std::shared_ptr<Conn> c) {
  while (!c->dead && !c->out.empty()) {
    c->sending.clear();
    c->sending.swap(c->out);
    auto [ec, n] = co_await asio::async_write(c->socket, asio::buffer(c->sending),
                                              asio::as_tuple(asio::use_awaitable));
    (void)n;
    if (c->dead) {
      co_return;
    }
    if (ec) {
      fail(*s, c, "send failed: " + ec.message());
      co_return;
    }
  }
  c->writing = false;
}

void start_writing(const std::shared_ptr<State>& s, const std::shared_ptr<Conn>& c) {
  if (c->open && !c->writing && !c->dead && !c->out.empty()) {
    c->writing = true;
    asio::co_spawn(s->ex, write_loop(s, c), asio::detached);
  }
}

// One reply, matched with the oldest entry. False when it ends the
// connection (then it has been failed).
bool deliver(State& s, const std::shared_ptr<Conn>& c, store::Reply& reply) {
  if (c->fifo.empty()) {
    fail(s, c, "protocol error: a reply to no command");
    return false;
  }
  Entry e = std::move(c->fifo.front());
  c->fifo.pop_front();
  if (e.kind != Entry::Kind::call) {
    const char* what = e.kind == Entry::Kind::auth ? "AUTH" : "SELECT";
    if (reply.is_error()) {
      fail(s, c, std::string(what) + ": " + reply.str);
      return false;
    }
    if (--c->handshake == 0 && c->open) {
      c->connect_timer.cancel();
    }
    return true;
  }
  complete(*e.waiter, {.ok = true, .reply = std::move(reply), .error = {}});
  return true;
}

// hiredis says "Protocol error, got ..." for some errors, not for others.
std::string protocol_error(const std::string& why) {
  constexpr std::string_view kHiredis = "Protocol error, ";
  if (why.starts_with(kHiredis)) {
    return "protocol error: " + why.substr(kHiredis.size());
  }
  return "protocol error: " + why;
}

asio::awaitable<void> read_loop(std::shared_ptr<State> s, std::shared_ptr<Conn> c) {
  std::unique_ptr<char[]> buf(new char[kReadChunk]);
  store::Reply reply;
  while (true) {
    auto [ec, n] = co_await c->socket.async_read_some(asio::buffer(buf.get(), kReadChunk),
                                                      asio::as_tuple(asio::use_awaitable));
    if (c->dead) {
      co_return;
    }
    if (n > 0) {
      c->reader.feed(std::string_view(buf.get(), n));
      // Replies parsed before a protocol error still reach their calls.
      while (true) {
        store::RespReader::Next next = c->reader.next(reply);
        if (next == store::RespReader::Next::need_more) {
          break;
        }
        if (next == store::RespReader::Next::error) {
          fail(*s, c, protocol_error(c->reader.error()));
          co_return;
        }
        if (!deliver(*s, c, reply)) {
          co_return;
        }
      }
    }
    if (ec && c->timed_out) {
      fail(*s, c, connect_timed_out(*s) + " (no reply to AUTH or SELECT)");
      co_return;
    }
    if (ec == asio::error::eof) {
      fail(*s, c, "connection closed by the server");
      co_return;
    }
    if (ec) {
      fail(*s, c, "receive failed: " + ec.message());
      co_return;
    }
  }
}

asio::awaitable<void> connect_loop(std::shared_ptr<State> s, std::shared_ptr<Conn> c) {
  // The whole connect phase (resolve, connect, AUTH and SELECT replies) is
  // bounded by connect_timeout; each call is bounded by its own timeout.
  c->connect_timer.expires_after(s->options.connect_timeout);
  c->connect_timer.async_wait([weak = std::weak_ptr<Conn>(c)](const error_code& ec) {
    auto conn = weak.lock();
    if (ec || !conn || conn->dead || conn->ready()) {
      return;
    }
    conn->timed_out = true;
    error_code ignored;
    conn->lookup_wait.close(ignored);
    conn->socket.close(ignored);  // the connect or the read wakes, and fails
  });

  std::vector<tcp::endpoint> endpoints;
  error_code literal_ec;
  auto literal = asio::ip::make_address(s->address.host, literal_ec);
  if (!literal_ec) {
    endpoints.emplace_back(literal, s->address.port);
  } else {
    // A worker's loop runs without Asio's locks: see name_lookup.h.
    Resolution found = co_await look_up_name(c->lookup_wait, s->address.host);
    if (c->dead) {
      co_return;
    }
    if (c->timed_out) {
      fail(*s, c, connect_timed_out(*s));
      co_return;
    }
    if (!found.error.empty()) {
      fail(*s, c, "cannot resolve " + s->address.host + ": " + found.error);
      co_return;
    }
    for (const auto& address : found.addresses) {
      endpoints.emplace_back(address, s->address.port);
    }
  }
  error_code last;
  bool connected = false;
  for (const auto& endpoint : endpoints) {
    error_code ignored;
    c->socket.close(ignored);
    c->socket.open(endpoint.protocol(), last);
    if (last) {
      continue;
    }
    auto [cec] = co_await c->socket.async_connect(endpoint, asio::as_tuple(asio::use_awaitable));
    if (c->dead) {
      co_return;
    }
    if (c->timed_out) {
      break;
    }
    last = cec;
    if (!cec) {
      connected = true;
      break;
    }
  }
  if (!connected) {
    fail(*s, c, c->timed_out ? connect_timed_out(*s) : "connect failed: " + last.message());
    co_return;
  }
  error_code ignored;
  c->socket.set_option(tcp::no_delay(true), ignored);
  c->open = true;
  if (c->handshake == 0) {
    c->connect_timer.cancel();
  }
  start_writing(s, c);
  co_await read_loop(s, c);
}

// A new connection; AUTH and SELECT go first, ahead of any call.
void start_connecting(const std::shared_ptr<State>& s) {
  auto c = std::make_shared<Conn>(s->ex, s->options.max_reply_bytes);
  const store::RedisAddress& a = s->address;
  if (!a.password.empty()) {
    if (a.user.empty()) {
      c->out += store::encode_command({"AUTH", a.password});
    } else {
      c->out += store::encode_command({"AUTH", a.user, a.password});
    }
    c->fifo.push_back({Entry::Kind::auth, nullptr});
    ++c->handshake;
  }
  if (a.db != 0) {
    c->out += store::encode_command({"SELECT", std::to_string(a.db)});
    c->fifo.push_back({Entry::Kind::select, nullptr});
    ++c->handshake;
  }
  s->conn = c;
  asio::co_spawn(s->ex, connect_loop(s, c), asio::detached);
}

}  // namespace

struct RedisClient::State : ClientState {
  using ClientState::ClientState;
};

RedisClient::RedisClient(asio::any_io_executor ex, store::RedisAddress address)
    : RedisClient(std::move(ex), std::move(address), Options{}) {}

RedisClient::RedisClient(asio::any_io_executor ex, store::RedisAddress address, Options options)
    : state_(std::make_shared<State>(std::move(ex), std::move(address), options)) {}

RedisClient::~RedisClient() {
  state_->closed = true;
  if (auto c = state_->conn) {
    fail(*state_, c, "closed");
  }
}

const store::RedisAddress& RedisClient::address() const {
  return state_->address;
}

bool RedisClient::connected() const {
  return state_->conn && state_->conn->ready();
}

asio::awaitable<RedisClient::Result> RedisClient::call(std::string command,
                                                       Clock::duration timeout) {
  // From here on only `s`: the client may be destroyed while this waits.
  std::shared_ptr<State> s = state_;
  if (s->closed) {
    co_return unavailable("closed");
  }
  if (!s->conn) {
    if (Clock::now() < s->failed_until) {
      co_return unavailable(s->failed_reason);
    }
  }
  if (s->waiting >= s->options.max_pending) {
    co_return Result{.ok = false, .reply = {}, .error = "overloaded"};
  }
  if (s->conn && s->conn->fifo.size() >= s->options.max_pending) {
    // Few calls wait, yet max_pending replies are owed: calls that timed
    // out. The server has stopped answering; start over.
    fail(*s, s->conn,
         "no reply to the last " + std::to_string(s->conn->fifo.size()) + " commands in time");
    co_return unavailable(s->failed_reason);
  }
  if (!s->conn) {
    start_connecting(s);
  }
  std::shared_ptr<Conn> c = s->conn;
  auto w = std::make_shared<Waiter>(s->ex);
  w->timer.expires_after(timeout);
  c->out += command;
  c->fifo.push_back({Entry::Kind::call, w});
  start_writing(s, c);

  ++s->waiting;
  if (!w->result) {
    auto [ec] = co_await w->timer.async_wait(asio::as_tuple(asio::use_awaitable));
    (void)ec;  // cancelled by a result, or expired: the result tells
  }
  --s->waiting;
  if (w->result) {
    co_return std::move(*w->result);
  }
  w->abandoned = true;
  co_return Result{.ok = false, .reply = {}, .error = "timeout"};
}

}  // namespace ward::upstream
