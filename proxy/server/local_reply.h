#pragma once

#include <string>
#include <string_view>

namespace ward::server {

// "Not Found" for 404; "Unknown" for codes without a standard phrase.
std::string_view reason_phrase(int status);
// The error kind used in proxy-made JSON bodies: "not_found" for 404 ...
std::string_view error_kind(int status);

// The IMF-fixdate of the current second ("Sun, 06 Nov 1994 08:49:37 GMT"),
// formatted once per second per thread.
std::string_view http_date();

// Appends a complete proxy-made response: status line, Date, Server,
// Content-Type: application/json, Content-Length, optional extra header
// lines (each ending in CRLF), Connection: close when `close`, and the body
// {"error":"<kind>","status":N} unless `head_only` (a HEAD request).
void append_local_reply(std::string& out, int status, bool close, bool head_only,
                        std::string_view extra_headers = {});

}  // namespace ward::server
