#include "proxy/store/redis.h"

#include <hiredis/read.h>

#include <algorithm>
#include <charconv>
#include <deque>

// No Asio here: the fuzz build (clang, -fsanitize=fuzzer) compiles this file.

namespace ward::store {

namespace {

constexpr std::string_view kScheme = "redis://";
constexpr std::string_view kTlsScheme = "rediss://";

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) {
    return false;
  }
  for (size_t i = 0; i < prefix.size(); ++i) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
    if (c != prefix[i]) {
      return false;
    }
  }
  return true;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

// URL percent-decoding of the user and password ("p%40ss" -> "p@ss").
bool percent_decode(std::string_view in, std::string& out) {
  out.clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size()) {
      return false;
    }
    int hi = hex_value(in[i + 1]);
    int lo = hex_value(in[i + 2]);
    if (hi < 0 || lo < 0) {
      return false;
    }
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return true;
}

bool is_host_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-' || c == '_';
}

bool is_v6_char(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' ||
         c == '.';
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

std::optional<RedisAddress> parse_redis_url(std::string_view url, std::string& error) {
  if (starts_with_nocase(url, kTlsScheme)) {
    error = "rediss:// (TLS) is not supported yet";
    return std::nullopt;
  }
  if (!starts_with_nocase(url, kScheme)) {
    error = "expected a URL starting with redis://";
    return std::nullopt;
  }
  std::string_view rest = url.substr(kScheme.size());
  RedisAddress a;

  // user:password@ -- the last '@': a password may hold one (a host, port
  // or db never does).
  if (size_t at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    size_t colon = userinfo.find(':');
    if (colon == std::string_view::npos) {
      error = "expected user:password@ or :password@ before the host";
      return std::nullopt;
    }
    if (!percent_decode(userinfo.substr(0, colon), a.user) ||
        !percent_decode(userinfo.substr(colon + 1), a.password)) {
      error = "bad %-escape in the user or password";
      return std::nullopt;
    }
  }

  // host[:port]: the part before the path.
  size_t slash = rest.find('/');
  std::string_view hostport = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  std::string_view port;
  bool has_port = false;
  if (!hostport.empty() && hostport.front() == '[') {
    size_t close = hostport.find(']');
    if (close == std::string_view::npos) {
      error = "expected ']' after an IPv6 address";
      return std::nullopt;
    }
    std::string_view v6 = hostport.substr(1, close - 1);
    if (v6.empty() || v6.find(':') == std::string_view::npos ||
        !std::all_of(v6.begin(), v6.end(), is_v6_char)) {
      error = "expected an IPv6 address in brackets";
      return std::nullopt;
    }
    a.host = std::string(v6);
    std::string_view after = hostport.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        error = "expected ':' or '/' after ']'";
        return std::nullopt;
      }
      has_port = true;
      port = after.substr(1);
    }
  } else {
    size_t colon = hostport.find(':');
    std::string_view host = hostport.substr(0, colon);
    if (host.empty()) {
      error = "expected a host after redis://";
      return std::nullopt;
    }
    if (!std::all_of(host.begin(), host.end(), is_host_char)) {
      error = "expected a host name or address after redis:// (IPv6 in brackets)";
      return std::nullopt;
    }
    a.host = std::string(host);
    if (colon != std::string_view::npos) {
      has_port = true;
      port = hostport.substr(colon + 1);
    }
  }
  if (has_port) {
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (!all_digits(port) || port.size() > 5 || ec != std::errc() ||
        end != port.data() + port.size() || value < 1 || value > 65535) {
      error = "expected a port from 1 to 65535 after ':'";
      return std::nullopt;
    }
    a.port = static_cast<uint16_t>(value);
  }

  // /db
  if (path.size() > 1) {
    std::string_view db = path.substr(1);
    int value = 0;
    auto [end, ec] = std::from_chars(db.data(), db.data() + db.size(), value);
    if (!all_digits(db) || db.size() > 9 || ec != std::errc() || end != db.data() + db.size()) {
      error = "expected a database number after '/'";
      return std::nullopt;
    }
    a.db = value;
  }

  a.display = std::string(kScheme);
  if (a.host.find(':') != std::string::npos) {
    a.display += "[" + a.host + "]";
  } else {
    a.display += a.host;
  }
  a.display += ":" + std::to_string(a.port) + "/" + std::to_string(a.db);
  return a;
}

std::string encode_command(std::span<const std::string_view> args) {
  size_t size = 16;
  for (std::string_view a : args) {
    size += a.size() + 24;
  }
  std::string out;
  out.reserve(size);
  out += '*';
  out += std::to_string(args.size());
  out += "\r\n";
  for (std::string_view a : args) {
    out += '$';
    out += std::to_string(a.size());
    out += "\r\n";
    out += a;
    out += "\r\n";
  }
  return out;
}

// hiredis builds the reply through these functions (not its own redisReply):
// straight into Reply, and an array's header ("*2000000000\r\n", 13 bytes)
// cannot make it allocate for elements that never come -- hiredis's own
// createArrayObject callocs `count` pointers up front (16 GB for INT_MAX).
//
// Ownership: the root object (task->parent == nullptr) is a `new Reply`,
// handed back by redisReaderGetReply or freed by hiredis through
// free_object on an error. Every other object lives by value in its
// parent's `elements`; the pointer returned for it is used by hiredis only
// while that element is being read (as the parent of its own elements),
// before any later sibling is appended.
struct RespReader::Impl {
  explicit Impl(size_t max_buffered) : max_buffered(max_buffered) {
    reader = redisReaderCreateWithFunctions(&kFunctions);
    if (reader != nullptr) {
      reader->privdata = this;
    }
  }
  ~Impl() {
    if (reader != nullptr) {
      redisReaderFree(reader);
    }
  }

  // A new object, filled in by `fill`: a fresh root, or the next element of
  // its parent. Nothing may throw into hiredis (C): a failed allocation is
  // a null, which hiredis reports as out of memory.
  template <typename Fill>
  static void* make(const redisReadTask* task, Fill fill) noexcept {
    try {
      if (task->parent == nullptr) {
        auto r = std::make_unique<Reply>();
        fill(*r);
        return r.release();
      }
      auto* parent = static_cast<Reply*>(task->parent->obj);
      parent->elements.emplace_back();
      fill(parent->elements.back());
      return &parent->elements.back();
    } catch (...) {
      return nullptr;
    }
  }

  static void* create_string(const redisReadTask* task, char* str, size_t len) {
    return make(task, [&](Reply& r) {
      switch (task->type) {
        case REDIS_REPLY_STATUS:
          r.type = Reply::Type::status;
          break;
        case REDIS_REPLY_ERROR:
          r.type = Reply::Type::error;
          break;
        default:
          r.type = Reply::Type::string;
          break;
      }
      r.str.assign(str, len);
    });
  }

  static void* create_array(const redisReadTask* task, int count) {
    auto* self = static_cast<Impl*>(task->privdata);
    // Every element takes 3 bytes at least ("+\r\n"): a longer array cannot
    // fit the bound, so it is refused before any element is read.
    if (count < 0 || static_cast<size_t>(count) > self->max_buffered / 3) {
      self->refused_array = count;
      return nullptr;  // hiredis stops with an out-of-memory error
    }
    return make(task, [&](Reply& r) {
      r.type = Reply::Type::array;
      r.elements.reserve(std::min<size_t>(static_cast<size_t>(count), 64));
    });
  }

  static void* create_integer(const redisReadTask* task, long long value) {
    return make(task, [&](Reply& r) {
      r.type = Reply::Type::integer;
      r.integer = value;
    });
  }

  static void* create_nil(const redisReadTask* task) {
    return make(task, [](Reply& r) { r.type = Reply::Type::nil; });
  }

  static void free_object(void* obj) { delete static_cast<Reply*>(obj); }

  static inline redisReplyObjectFunctions kFunctions = {create_string, create_array, create_integer,
                                                        create_nil, free_object};

  redisReader* reader = nullptr;
  size_t max_buffered;
  std::optional<int> refused_array;  // the length create_array refused
  std::deque<Reply> replies;         // whole replies fed, not yet taken by next()
};

RespReader::RespReader(size_t max_buffered)
    : impl_(std::make_unique<Impl>(max_buffered)), max_buffered_(max_buffered) {
  if (impl_->reader == nullptr) {
    error_ = "out of memory";
  }
}

RespReader::~RespReader() = default;

// Feeds hiredis, then takes every whole reply out at once: the bound is on
// the bytes of each reply, and of the unfinished one at the end, which are
// known only once the whole ones before it are parsed (a read may carry
// many small replies).
bool RespReader::feed(std::string_view bytes) {
  if (!error_.empty()) {
    return false;
  }
  if (bytes.empty()) {
    return true;
  }
  redisReader* r = impl_->reader;
  if (redisReaderFeed(r, bytes.data(), bytes.size()) != REDIS_OK) {
    error_ = "out of memory";
    return false;
  }
  buffered_ += bytes.size();
  while (true) {
    void* obj = nullptr;
    if (redisReaderGetReply(r, &obj) != REDIS_OK) {
      if (impl_->refused_array) {
        error_ = "array of " + std::to_string(*impl_->refused_array) + " elements exceeds the " +
                 std::to_string(max_buffered_) + "-byte reply bound";
      } else {
        error_ = r->errstr[0] != '\0' ? std::string(r->errstr) : std::string("protocol error");
      }
      return false;
    }
    if (obj == nullptr) {
      break;  // the rest is an unfinished reply
    }
    std::unique_ptr<Reply> reply(static_cast<Reply*>(obj));
    const size_t rest = r->len - r->pos;  // what follows this reply
    if (buffered_ - rest > max_buffered_) {
      // Whole, but over the bound all the same: a reply's fate does not
      // depend on how the bytes were split.
      error_ = "reply exceeds " + std::to_string(max_buffered_) + " bytes";
      return false;
    }
    impl_->replies.push_back(std::move(*reply));
    buffered_ = rest;
  }
  if (buffered_ > max_buffered_) {
    error_ = "reply exceeds " + std::to_string(max_buffered_) + " bytes";
    return false;
  }
  return true;
}

// The replies parsed before an error are still handed out, then the error.
RespReader::Next RespReader::next(Reply& out) {
  if (!impl_->replies.empty()) {
    out = std::move(impl_->replies.front());
    impl_->replies.pop_front();
    return Next::reply;
  }
  return error_.empty() ? Next::need_more : Next::error;
}

}  // namespace ward::store
