#pragma once

// A strict HTTP/1.1 message parser (RFC 9110 / RFC 9112) for a proxy that
// must never let an ambiguous message through to an upstream.
//
// Why not Beast's parser: it silently joins obs-fold lines, accepts what a
// smuggling defence must refuse, and hands bodies out through callbacks that
// do not fit a zero-copy relay. This parser works on views of the caller's
// buffer: the head is scanned incrementally (find_head_end), then parsed in
// one pass; bodies are decoded in place by BodyDecoder.
//
// Nothing here allocates except HeaderList/std::string growth in a reused
// head object, does I/O or throws.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "proxy/http/header_list.h"

namespace ward::http {

enum class ParseStatus {
  ok,
  incomplete,           // need more bytes
  bad_request,          // 400: malformed or ambiguous; close the connection
  uri_too_long,         // 414: the request line alone is over max_uri_size
  header_too_large,     // 431: the head is over max_header_size
  not_implemented,      // 501: a well-formed transfer coding other than chunked
  version_unsupported,  // 505: not HTTP/1.0 or HTTP/1.1
  bad_response,         // 502: an upstream response we refuse to relay
};

// A short fixed reason for logs ("content-length and transfer-encoding").
struct ParseError {
  ParseStatus status = ParseStatus::ok;
  const char* reason = "";
};

struct HeadLimits {
  size_t max_header_size = 16 * 1024;  // request line + headers + final CRLF
  size_t max_uri_size = 8 * 1024;      // request-target bytes
};

// Incremental search for the end of a head ("\r\n\r\n") in `buf`. `scanned`
// is how many bytes of `buf` were already searched on a previous call (pass
// 0 the first time, then the value it leaves): the total work is linear even
// when a head arrives one byte at a time. Returns:
//  - ok with `head_size` = bytes of the head including the final CRLFCRLF;
//  - incomplete when no end yet and the bytes so far are within the limits;
//  - uri_too_long when no CRLF ends the request line within
//    max_uri_size + 64 bytes (414 comes before 431, as CONFIG.md says);
//  - header_too_large when no end within max_header_size.
// A bare LF line ending is refused later by the parser, not here.
// For responses pass is_request = false (no 414 check).
ParseError find_head_end(std::string_view buf, const HeadLimits& limits, bool is_request,
                         size_t& scanned, size_t& head_size);

enum class BodyKind { none, content_length, chunked, until_close };

enum class Method { get, head, post, put, del, options, patch, trace, connect, other };

// The Method of a method name ("GET"); other for any method it does not name.
Method method_from(std::string_view m);

struct RequestHead {
  Method method = Method::other;
  std::string method_text;  // as received ("GET")
  std::string target;       // origin-form "/p?q", absolute-form, or "*"
  int version_minor = 1;    // 0 or 1 (HTTP/1.x)
  HeaderList headers;

  // Framing and connection semantics, derived by parse_request_head:
  BodyKind body = BodyKind::none;  // never until_close for requests
  uint64_t content_length = 0;     // when body == content_length (may be 0)
  bool keep_alive = true;          // HTTP/1.1 default, "Connection: close", 1.0 rules
  bool expect_continue = false;    // "Expect: 100-continue"
  bool upgrade_websocket = false;  // Upgrade: websocket + Connection: upgrade (GET)

  void clear();
  std::string_view path() const;   // target up to '?', "/" for "*"
  std::string_view query() const;  // after '?', without it; "" when none
  bool idempotent() const;         // RFC 9110 9.2.2
};

struct ResponseHead {
  int status = 0;
  std::string reason;
  int version_minor = 1;
  HeaderList headers;

  BodyKind body = BodyKind::none;
  uint64_t content_length = 0;
  bool keep_alive = true;  // the upstream connection may be reused after this

  void clear();
};

// Parses a complete request head (the `head_size` bytes find_head_end found).
// Rejects with bad_request (and a reason): bare LF or CR, obs-fold, a space
// before the colon, empty or non-token field names, CTL bytes other than HTAB
// in values, NUL anywhere, a missing or duplicated Host in HTTP/1.1 (RFC 9112
// 3.2), more than 64 Connection options (each costs a pass when forwarding),
// Content-Length together with Transfer-Encoding (RFC 9112 6.1),
// differing or malformed Content-Length values (identical duplicates, also as
// "5, 5", are accepted as one), Transfer-Encoding that is not a list ending in
// chunked, chunked applied twice, or a TE header on HTTP/1.0. A request-target
// over max_uri_size is uri_too_long; a well-formed coding other than chunked
// (gzip, deflate, compress, identity) is not_implemented.
// Also: one empty line before the request-line is skipped (RFC 9112 2.2); a
// Host value outside RFC 3986 host syntax is bad_request; an absolute-form
// target replaces Host by its authority (RFC 9112 3.2.2), userinfo in it is
// bad_request; duplicate Content-Length values are rewritten as one field.
ParseError parse_request_head(std::string_view head, const HeadLimits& limits, RequestHead& out);

// Parses a complete response head from an upstream. `request_method` decides
// bodies: HEAD and 2xx to CONNECT have none; 1xx, 204 and 304 have none.
// Content-Length with Transfer-Encoding, differing Content-Lengths and
// malformed framing are bad_response (502) rather than guessed at.
// Transfer-Encoding not ending in chunked means until_close (RFC 9112 6.3).
ParseError parse_response_head(std::string_view head, Method request_method, ResponseHead& out);

// The first final response head at the start of `received`, a response to
// a GET whose body is not wanted: interim heads (1xx other than 101: 100
// Continue, 103 Early Hints) before it are skipped. Returns ok with `out`
// parsed and `consumed` = the bytes up to the end of that head; incomplete
// when no final head has ended yet; header_too_large when a head runs over
// `max_head`; bad_response (with a reason) for a head parse_response_head
// refuses. A health check reads a server's answer with it.
ParseError first_final_response(std::string_view received, size_t max_head, ResponseHead& out,
                                size_t& consumed);

// Decodes a message body in place. Feed it the bytes after the head, as they
// arrive; each call reports how many input bytes it consumed and at most one
// span of body data (a view into the input). Chunk extensions are skipped and
// trailers are read and dropped (bounded: max_line for each chunk-size line
// and trailer line, max_trailer_size in all).
class BodyDecoder {
 public:
  struct Step {
    size_t consumed = 0;    // input bytes used; the caller drops them after using `data`
    std::string_view data;  // body bytes, within the consumed input
    bool done = false;      // the body is complete
    ParseError error;       // status != ok: the body is malformed (bad chunk size...)
                            // (always bad_request: map it to 502 for an upstream body)
  };

  BodyDecoder() = default;
  static BodyDecoder for_kind(BodyKind kind, uint64_t content_length);

  // When consumed == 0 and !done and no error, more input is needed.
  Step feed(std::string_view input);
  // For until_close bodies: the peer closed, which ends the body.
  // For any other kind a close before done is a truncated body.
  bool eof_completes() const { return kind_ == BodyKind::until_close; }

  bool done() const { return done_; }
  BodyKind kind() const { return kind_; }
  uint64_t body_bytes() const { return body_bytes_; }       // decoded body bytes so far
  uint64_t remaining_length() const { return remaining_; }  // content_length kind

  static constexpr size_t kMaxLine = 4096;
  static constexpr size_t kMaxTrailerSize = 16 * 1024;

 private:
  // Chunked framing is parsed a byte at a time and consumed as it arrives
  // (never re-scanned), so a body trickled one byte per read costs linear
  // work. Chunk data itself is handed out as spans, not walked.
  enum class State {
    size_first,     // first hex digit of a chunk-size
    size_digits,    // more hex digits, BWS, ';' or CR
    size_ws,        // BWS after the size: only ';' may follow
    ext,            // chunk-ext bytes, skipped up to CR
    size_lf,        // LF ending the chunk-size line
    data,           // `remaining_` bytes of chunk data
    data_cr,        // CR after chunk data
    data_lf,        // LF after chunk data
    trailer_start,  // start of a trailer line, or CR of the final CRLF
    trailer_name,   // field name of a trailer line
    trailer_value,  // field value of a trailer line, up to CR
    trailer_lf,     // LF ending a trailer line
    final_lf,       // LF of the CRLF that ends the message
    done,
  };
  Step fail(Step s, const char* reason);
  Step feed_chunked(std::string_view input);
  bool chunk_byte(char c, const char*& reason);

  BodyKind kind_ = BodyKind::none;
  State state_ = State::size_first;
  uint64_t remaining_ = 0;
  uint64_t body_bytes_ = 0;
  size_t trailer_bytes_ = 0;
  size_t line_len_ = 0;          // bytes of the current size or trailer line
  const char* error_ = nullptr;  // set once the body was found malformed
  bool done_ = true;
};

}  // namespace ward::http
