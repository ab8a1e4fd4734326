#pragma once

#include <charconv>
#include <cstdint>
#include <string>

namespace ward::util {

// Integers in plain decimal (never exponent form), without locale or iostreams.
inline void append_uint(std::string& out, uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

inline void append_int(std::string& out, int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

}  // namespace ward::util
