#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "proxy/http/h1_parser.h"

namespace ward::http {

// Turns an HTTP/2 request's header fields (RFC 9113 8.3) into the
// HTTP/1.1-shaped RequestHead the rest of ward works on, so routing,
// filters and the upstream exchange never know which codec a request came
// from:
//  - :method, :path (the origin-form target) and :authority, which becomes
//    Host (a Host field is used only when :authority is absent);
//  - cookie crumbs are joined into one Cookie field with "; " (8.2.3);
//  - the body: none when the HEADERS ended the stream, else Content-Length
//    when given, else chunked (length unknown: sent chunked upstream);
//  - Expect: 100-continue is taken out and reported (ward answers it).
// nghttp2 has already refused malformed fields (upper-case names,
// connection-specific fields, bad pseudo-headers), but nothing here relies
// on it: any input yields a head or a status to refuse it with.
class H2RequestBuilder {
 public:
  H2RequestBuilder(RequestHead& out, size_t max_header_bytes, size_t max_uri_size)
      : out_(out), max_header_bytes_(max_header_bytes), max_uri_size_(max_uri_size) {}

  // One field, in the order received.
  void add(std::string_view name, std::string_view value);
  // The head is complete (`end_stream`: no body follows). Returns 0, or the
  // status to refuse the request with: 400 (no authority, a bad
  // content-length, no :method or :path), 414 (:path over max_uri_size), 431
  // (fields over max_header_bytes, counted as RFC 9113 6.5.2 does), 501
  // (CONNECT, extended CONNECT).
  int finish(bool end_stream);
  // Ready for another request's fields (the RequestHead is the caller's to
  // clear); the strings keep their memory, up to `keep_bytes` each.
  void reset(size_t keep_bytes);
  bool expect_continue() const { return expect_continue_; }

 private:
  RequestHead& out_;
  size_t max_header_bytes_;
  size_t max_uri_size_;
  size_t header_bytes_ = 0;
  std::string authority_;
  std::string host_field_;
  std::string cookies_;
  int refuse_ = 0;
  bool have_method_ = false;
  bool have_path_ = false;
  bool expect_continue_ = false;
};

}  // namespace ward::http
