#pragma once

#include <string>
#include <string_view>

namespace ward::util {

// Appends `s` to `out` as the body of a JSON string (no surrounding quotes):
// quotes, backslashes and control characters escaped, invalid UTF-8 bytes
// replaced by U+FFFD so a hostile header can never break a log line.
void json_escape_append(std::string& out, std::string_view s);

// `"` + escaped + `"`.
inline void json_string_append(std::string& out, std::string_view s) {
  out.push_back('"');
  json_escape_append(out, s);
  out.push_back('"');
}

}  // namespace ward::util
