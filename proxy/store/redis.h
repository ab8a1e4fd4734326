#pragma once
// Redis as a shared store (rate_limit `store: redis://...`): the address
// from a URL, replies as values, and the RESP encoding both ways. Nothing
// here does I/O; upstream/redis_client.h talks to the server.
//
// Replies are parsed by hiredis's reader (libhiredis, Debian's package):
// the protocol parser every Redis client in C uses, well fuzzed upstream.
// We own what wraps it: the size bound and the conversion into Reply.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ward::store {

// redis://[[user]:password@]host[:port][/db]; host may be an IPv6 literal
// in brackets. Port 6379 and db 0 by default.
struct RedisAddress {
  std::string host;  // without brackets
  uint16_t port = 6379;
  std::string user;      // "" = AUTH with the password alone (Redis < 6 style)
  std::string password;  // "" = no AUTH
  int db = 0;            // SELECT when not 0
  // The URL without the password, for logs and metric labels:
  // "redis://host:port/db" ("redis://[::1]:6379/0").
  std::string display;
};

// Parses a `store:` value. On failure returns nullopt and says why in
// `error` ("expected a port from 1 to 65535 after ':'"). rediss:// (TLS)
// is refused: "rediss:// (TLS) is not supported yet".
std::optional<RedisAddress> parse_redis_url(std::string_view url, std::string& error);

struct Reply {
  enum class Type : uint8_t { nil, integer, string, status, error, array };
  Type type = Type::nil;
  int64_t integer = 0;
  std::string str;  // string, status and error replies
  std::vector<Reply> elements;

  bool is_error() const { return type == Type::error; }
};

// One command as RESP: an array of bulk strings ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n").
std::string encode_command(std::span<const std::string_view> args);
inline std::string encode_command(std::initializer_list<std::string_view> args) {
  return encode_command(std::span<const std::string_view>(args.begin(), args.size()));
}

// Incremental reply parser over hiredis's reader. Feed bytes as they come;
// next() hands back each whole reply in order.
class RespReader {
 public:
  // `max_buffered`: bytes of an unfinished reply held at most; more is a
  // protocol error (a server, or something posing as one, cannot make the
  // client buffer without bound).
  explicit RespReader(size_t max_buffered = 1 << 20);
  ~RespReader();
  RespReader(const RespReader&) = delete;
  RespReader& operator=(const RespReader&) = delete;

  // False on a protocol error (then error() says what; the reader is
  // unusable and the connection must be closed).
  bool feed(std::string_view bytes);
  enum class Next { reply, need_more, error };
  Next next(Reply& out);
  const std::string& error() const { return error_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  size_t max_buffered_;
  size_t buffered_ = 0;  // bytes fed since the last whole reply
  std::string error_;
};

}  // namespace ward::store
