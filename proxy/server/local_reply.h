#pragma once

#include <string>
#include <string_view>

#include "proxy/http/header_list.h"

namespace ward::server {

// "Not Found" for 404; "Unknown" for codes without a standard phrase.
std::string_view reason_phrase(int status);
// The error kind used in proxy-made JSON bodies: "not_found" for 404 ...
std::string_view error_kind(int status);

// The IMF-fixdate of the current second ("Sun, 06 Nov 1994 08:49:37 GMT"),
// formatted once per second per thread.
std::string_view http_date();

// A proxy-made response: fills `headers` with Date, Server and (unless the
// status has no content) Content-Type: application/json, and `body` with
// {"error":"<error>","status":N}, where an empty `error` is error_kind(status).
// Filters then edit the headers before append_local_reply serialises them.
void make_local_reply(int status, std::string_view error, http::HeaderList& headers,
                      std::string& body);

// Appends the whole response: status line, `headers`, Content-Length (not for
// 204/304), Connection: close when `close`, and `body` unless `head_only`.
void append_local_reply(std::string& out, int status, const http::HeaderList& headers,
                        std::string_view body, bool close, bool head_only);

}  // namespace ward::server
