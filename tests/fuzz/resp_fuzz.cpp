// libFuzzer target for the Redis reply reader (hiredis's parser and what
// wraps it) and the store URL parser. Beyond "no crash, no read past the
// input, no leak" (ASan), it traps on broken invariants:
//  - the replies, and whether the bytes are an error, do not depend on how
//    the bytes are split into feeds (the first byte picks the split);
//  - once the reader says error it keeps saying so, and error() says why;
//  - a parsed URL has a host, a port from 1 to 65535, a db of 0 or more,
//    and a display string made of those alone (never the password).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/store/redis.h"

namespace {

using ward::store::Reply;
using ward::store::RespReader;

void check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

bool same(const Reply& a, const Reply& b) {
  if (a.type != b.type || a.integer != b.integer || a.str != b.str ||
      a.elements.size() != b.elements.size()) {
    return false;
  }
  for (size_t i = 0; i < a.elements.size(); ++i) {
    if (!same(a.elements[i], b.elements[i])) {
      return false;
    }
  }
  return true;
}

struct Outcome {
  std::vector<Reply> replies;
  bool error = false;
};

// Feeds `in` in chunks of `chunk` bytes (all at once when 0), draining
// next() after each until need_more or error.
Outcome read(std::string_view in, size_t chunk, size_t max_buffered) {
  RespReader reader(max_buffered);
  Outcome out;
  size_t pos = 0;
  while (pos < in.size() && !out.error) {
    size_t n = chunk == 0 ? in.size() : std::min(chunk, in.size() - pos);
    bool fed = reader.feed(in.substr(pos, n));
    pos += n;
    Reply reply;
    while (true) {
      RespReader::Next next = reader.next(reply);
      if (next == RespReader::Next::reply) {
        out.replies.push_back(std::move(reply));
        continue;
      }
      if (next == RespReader::Next::error) {
        check(!fed && !reader.error().empty());
        out.error = true;
        check(!reader.feed("+OK\r\n"));
        check(reader.next(reply) == RespReader::Next::error);
      } else {
        check(fed);
      }
      break;
    }
  }
  return out;
}

void fuzz_reader(std::string_view in) {
  if (in.empty()) {
    return;
  }
  const size_t chunk = static_cast<uint8_t>(in[0]) % 17 + 1;  // 1 to 17 bytes
  const size_t max_buffered = 256;
  Outcome whole = read(in.substr(1), 0, max_buffered);
  Outcome split = read(in.substr(1), chunk, max_buffered);
  check(whole.error == split.error);
  check(whole.replies.size() == split.replies.size());
  for (size_t i = 0; i < whole.replies.size(); ++i) {
    check(same(whole.replies[i], split.replies[i]));
  }
  // And with the default bound (1 MiB), byte by byte for short inputs.
  read(in, in.size() < 512 ? 1 : 0, 1 << 20);
}

void fuzz_url(std::string_view in) {
  std::string error;
  auto a = ward::store::parse_redis_url(in, error);
  if (!a) {
    check(!error.empty());
    return;
  }
  check(!a->host.empty() && a->port >= 1 && a->db >= 0);
  check(a->host.find_first_of("@/[]") == std::string::npos);
  // Made of the host, port and db alone: no room for the password.
  std::string host = a->host.find(':') != std::string::npos ? "[" + a->host + "]" : a->host;
  check(a->display ==
        "redis://" + host + ":" + std::to_string(a->port) + "/" + std::to_string(a->db));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  fuzz_reader(in);
  fuzz_url(in);
  return 0;
}
