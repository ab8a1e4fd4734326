#include "proxy/http/h1_parser.h"

#include <array>
#include <charconv>
#include <cstring>
#include <limits>

namespace ward::http {

namespace {

// ---------------------------------------------------------------------------
// Byte classes, one table lookup per byte on the hot path.

enum : uint8_t {
  kTchar = 1,       // RFC 9110 5.6.2 token characters
  kFieldByte = 2,   // RFC 9110 5.5 field-vchar / SP / HTAB (obs-text included)
  kTargetByte = 4,  // request-target bytes: VCHAR and obs-text, no SP or CTL
  kHostByte = 8,    // RFC 3986 3.2.2 reg-name / IP-literal / ":" port
  kHexDigit = 16,
};

constexpr std::array<uint8_t, 256> make_classes() {
  std::array<uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    uint8_t v = 0;
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    bool digit = c >= '0' && c <= '9';
    bool tchar_punct = false;
    for (char p : std::string_view("!#$%&'*+-.^_`|~")) {
      tchar_punct = tchar_punct || c == p;
    }
    if (alpha || digit || tchar_punct) {
      v |= kTchar;
    }
    // CTLs (0x00-0x1F) and DEL are refused in values, except HTAB; NUL, CR
    // and LF in particular end up here (RFC 9110 5.5).
    if (c == '\t' || (c >= 0x20 && c != 0x7f)) {
      v |= kFieldByte;
    }
    if (c > 0x20 && c != 0x7f) {
      v |= kTargetByte;
    }
    bool host_punct = false;
    for (char p : std::string_view("-._~!$&'()*+,;=:[]%")) {
      host_punct = host_punct || c == p;
    }
    if (alpha || digit || host_punct) {
      v |= kHostByte;
    }
    if (digit || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) {
      v |= kHexDigit;
    }
    t[c] = v;
  }
  return t;
}
constexpr auto kClasses = make_classes();

bool has_class(char c, uint8_t cls) {
  return (kClasses[static_cast<unsigned char>(c)] & cls) != 0;
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// Eight bytes at a time for the long runs of a head (values such as
// User-Agent and Cookie, request-targets): a word whose bytes are all
// printable ASCII (0x20..0x7E, or 0x21..0x7E with `min` = 0x21) is accepted
// without a per-byte lookup. The tests are exact for words with no byte
// >= 0x80 (Bit Twiddling Hacks "hasless"/"haszero"); any other word, and
// the tail, go through the table.
constexpr uint64_t kOnes = 0x0101010101010101ULL;
constexpr uint64_t kHighBits = 0x8080808080808080ULL;

bool word_is_printable(uint64_t w, uint64_t min) {
  uint64_t below_min = (w - kOnes * min) & ~w & kHighBits;
  uint64_t del = w ^ (kOnes * 0x7f);
  uint64_t has_del = (del - kOnes) & ~del & kHighBits;
  return ((w & kHighBits) | below_min | has_del) == 0;
}

// Index of the first byte at or after `i` that is not in `cls`, or `n`.
size_t scan_class(const char* p, size_t i, size_t n, uint8_t cls, uint64_t word_min) {
  while (true) {
    while (i + 8 <= n) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      if (!word_is_printable(w, word_min)) {
        break;
      }
      i += 8;
    }
    size_t stop = i + 8 < n ? i + 8 : n;
    while (i < stop && has_class(p[i], cls)) {
      ++i;
    }
    if (i < stop || i >= n) {
      return i;
    }
  }
}

// Field values: HTAB, SP, VCHAR, obs-text (RFC 9110 5.5).
size_t scan_field_value(const char* p, size_t i, size_t n) {
  return scan_class(p, i, n, kFieldByte, 0x20);
}

// request-target: VCHAR and obs-text, no SP.
size_t scan_target(const char* p, size_t i, size_t n) {
  return scan_class(p, i, n, kTargetByte, 0x21);
}

bool all_of_class(std::string_view s, uint8_t cls) {
  for (char c : s) {
    if (!has_class(c, cls)) {
      return false;
    }
  }
  return true;
}

ParseError err(ParseStatus status, const char* reason) {
  return ParseError{status, reason};
}

// Connection options a message may list. Each one names a field to remove
// when forwarding, which costs a pass over the fields: thousands of options
// in a 16 KiB head would make that quadratic. Real clients send one or two.
constexpr size_t kMaxConnectionOptions = 64;

// Bytes a request line may run past max_uri_size for the method and version
// before it counts as a too-long URI while still unterminated.
constexpr size_t kRequestLineSlack = 64;

// ---------------------------------------------------------------------------
// find_head_end helpers

// RFC 9112 2.2: a server SHOULD ignore at least one empty line before the
// request-line (clients that add CRLF after a POST body). Exactly one.
size_t leading_crlf(std::string_view buf) {
  return (buf.size() >= 2 && buf[0] == '\r' && buf[1] == '\n') ? 2 : 0;
}

// Decides 414 against 431 once a head is over a limit: the request line alone
// being too long answers 414 (CONFIG.md "Always on").
bool request_target_too_long(std::string_view buf, const HeadLimits& limits) {
  buf.remove_prefix(leading_crlf(buf));
  size_t lf = buf.find('\n');
  bool complete = lf != std::string_view::npos;
  std::string_view line = complete ? buf.substr(0, lf) : buf;
  if (!line.empty() && line.back() == '\r') {
    line.remove_suffix(1);
  }
  if (!complete && line.size() > limits.max_uri_size + kRequestLineSlack) {
    return true;
  }
  size_t sp = line.find(' ');
  if (sp == std::string_view::npos) {
    return false;
  }
  std::string_view target = line.substr(sp + 1);
  target = target.substr(0, target.find(' '));
  return target.size() > limits.max_uri_size;
}

// 414 before 431: a request line that has not ended within the URI limit
// plus room for method and version is a too-long URI, whatever else the head
// holds. Also applied to a complete head, so that the answer does not depend
// on how the bytes were split into reads.
bool request_line_unterminated(std::string_view buf, const HeadLimits& limits) {
  size_t start = leading_crlf(buf);
  size_t line_limit = limits.max_uri_size + kRequestLineSlack;
  return buf.size() - start > line_limit &&
         std::memchr(buf.data() + start, '\n', line_limit) == nullptr;
}

ParseError limit_error(std::string_view buf, const HeadLimits& limits, bool is_request) {
  if (is_request && request_target_too_long(buf, limits)) {
    return err(ParseStatus::uri_too_long, "request-target too long");
  }
  return err(ParseStatus::header_too_large, "head too large");
}

// ---------------------------------------------------------------------------
// Field section parsing shared by requests and responses.

// What the framing and connection rules need, gathered during the one pass
// over the fields; the values are views into the caller's head buffer.
struct FieldFacts {
  size_t host_count = 0;
  std::string_view host;

  size_t cl_fields = 0;
  size_t cl_elements = 0;
  uint64_t cl_value = 0;
  const char* cl_error = nullptr;

  bool te_seen = false;
  bool te_malformed = false;
  bool te_unknown = false;  // a well-formed coding other than chunked
  bool te_last_chunked = false;
  size_t te_chunked = 0;

  size_t conn_options = 0;  // list elements in all Connection fields
  bool conn_close = false;
  bool conn_keep_alive = false;
  bool conn_upgrade = false;
  bool expect_continue = false;
  bool upgrade_websocket = false;
};

// RFC 9110 8.6: Content-Length = 1*DIGIT; a list of identical values (from
// a duplicated field, or "5, 5") may be taken as one; anything else is an
// unrecoverable framing error.
void note_content_length(std::string_view value, FieldFacts& f) {
  ++f.cl_fields;
  if (f.cl_error != nullptr) {
    return;
  }
  while (true) {
    size_t comma = value.find(',');
    std::string_view element = trim_ows(value.substr(0, comma));
    if (element.empty()) {
      f.cl_error = "empty content-length";
      return;
    }
    uint64_t v = 0;
    auto [ptr, ec] = std::from_chars(element.data(), element.data() + element.size(), v);
    // from_chars accepts a leading '-' for signed types only, but check the
    // first byte anyway: "+5", "-5", " 5" and "0x5" are all refused.
    if (!is_digit(element.front()) || ptr != element.data() + element.size()) {
      f.cl_error = "malformed content-length";
      return;
    }
    if (ec == std::errc::result_out_of_range) {
      f.cl_error = "content-length overflow";
      return;
    }
    if (f.cl_elements > 0 && v != f.cl_value) {
      f.cl_error = "differing content-length values";
      return;
    }
    f.cl_value = v;
    ++f.cl_elements;
    if (comma == std::string_view::npos) {
      return;
    }
    value.remove_prefix(comma + 1);
  }
}

// transfer-parameter = token BWS "=" BWS ( token / quoted-string )
// (RFC 9112 7.3, RFC 9110 5.6.6). `rest` starts after the coding's token.
bool valid_coding_params(std::string_view rest) {
  size_t i = 0;
  auto skip_ows = [&] {
    while (i < rest.size() && is_ows(rest[i])) {
      ++i;
    }
  };
  auto token = [&] {
    size_t start = i;
    while (i < rest.size() && has_class(rest[i], kTchar)) {
      ++i;
    }
    return i > start;
  };
  skip_ows();
  while (i < rest.size()) {
    if (rest[i] != ';') {
      return false;
    }
    ++i;
    skip_ows();
    if (!token()) {
      return false;
    }
    skip_ows();
    if (i >= rest.size() || rest[i] != '=') {
      return false;
    }
    ++i;
    skip_ows();
    if (i < rest.size() && rest[i] == '"') {
      ++i;
      bool closed = false;
      while (i < rest.size()) {
        char c = rest[i++];
        if (c == '"') {
          closed = true;
          break;
        }
        if (c == '\\') {
          if (i >= rest.size()) {
            return false;
          }
          ++i;
        }
      }
      if (!closed) {
        return false;
      }
    } else if (!token()) {
      return false;
    }
    skip_ows();
  }
  return true;
}

// RFC 9112 6.1: Transfer-Encoding is a list of codings applied in order;
// several fields form one list. Records whether it ends in chunked, whether
// chunked occurs more than once, and whether other codings appear.
void note_transfer_encoding(std::string_view value, FieldFacts& f) {
  f.te_seen = true;
  while (true) {
    size_t comma = value.find(',');
    std::string_view element = trim_ows(value.substr(0, comma));
    size_t tok = 0;
    while (tok < element.size() && has_class(element[tok], kTchar)) {
      ++tok;
    }
    std::string_view coding = element.substr(0, tok);
    std::string_view rest = element.substr(tok);
    // An empty element ("chunked, , x", or an empty field) is refused:
    // recipients disagree on it, which is what smuggling feeds on.
    if (coding.empty()) {
      f.te_malformed = true;
      return;
    }
    if (iequals(coding, "chunked")) {
      // RFC 9112 7: chunked has no parameters.
      if (!rest.empty()) {
        f.te_malformed = true;
        return;
      }
      ++f.te_chunked;
      f.te_last_chunked = true;
    } else {
      if (!valid_coding_params(rest)) {
        f.te_malformed = true;
        return;
      }
      f.te_unknown = true;
      f.te_last_chunked = false;
    }
    if (comma == std::string_view::npos) {
      return;
    }
    value.remove_prefix(comma + 1);
  }
}

// RFC 9110 7.6.1: Connection is a list of options; one pass classifies
// each element.
void note_connection(std::string_view value, FieldFacts& f) {
  while (true) {
    size_t comma = value.find(',');
    std::string_view option = trim_ows(value.substr(0, comma));
    ++f.conn_options;
    switch (option.size()) {
      case 5:
        f.conn_close = f.conn_close || iequals(option, "close");
        break;
      case 7:
        f.conn_upgrade = f.conn_upgrade || iequals(option, "upgrade");
        break;
      case 10:
        f.conn_keep_alive = f.conn_keep_alive || iequals(option, "keep-alive");
        break;
      default:
        break;
    }
    if (comma == std::string_view::npos) {
      return;
    }
    value.remove_prefix(comma + 1);
  }
}

// Looks only at the names the framing and connection rules depend on;
// switching on the length first keeps the common case to one compare.
void note_field(std::string_view name, std::string_view value, FieldFacts& f) {
  switch (name.size()) {
    case 4:
      if (iequals(name, "host")) {
        ++f.host_count;
        f.host = value;
      }
      break;
    case 6:
      if (iequals(name, "expect") && iequals(value, "100-continue")) {
        f.expect_continue = true;
      }
      break;
    case 7:
      if (iequals(name, "upgrade") && has_token(value, "websocket")) {
        f.upgrade_websocket = true;
      }
      break;
    case 10:
      if (iequals(name, "connection")) {
        note_connection(value, f);
      }
      break;
    case 14:
      if (iequals(name, "content-length")) {
        note_content_length(value, f);
      }
      break;
    case 17:
      if (iequals(name, "transfer-encoding")) {
        note_transfer_encoding(value, f);
      }
      break;
    default:
      break;
  }
}

// Parses the field lines of `section` (the head after its start line) up to
// and including the empty line that ends the head (RFC 9112 5). The section
// is first copied into the list's arena in one go; fields are then views of
// that copy. `bad` is the status for a malformed line (bad_request
// downstream, bad_response upstream).
ParseError parse_fields(std::string_view section, ParseStatus bad, HeaderList& out,
                        FieldFacts& facts) {
  std::string_view copy = out.adopt(section);
  const char* p = copy.data();
  const size_t n = copy.size();
  size_t i = 0;
  while (i < n) {
    char c = p[i];
    if (c == '\r') {
      if (i + 1 >= n) {
        return err(ParseStatus::incomplete, "truncated head");
      }
      if (p[i + 1] != '\n') {
        return err(bad, "bare CR in line ending");
      }
      return ParseError{};
    }
    if (c == '\n') {
      // RFC 9112 2.2: a bare LF is a line terminator to some recipients and
      // not to others; refuse it.
      return err(bad, "bare LF line ending");
    }
    if (is_ows(c)) {
      // RFC 9112 5.2: obs-fold (or whitespace before the first field line,
      // RFC 9112 2.2) is refused rather than unfolded.
      return err(bad, "obsolete line folding");
    }
    size_t name_start = i;
    while (i < n && has_class(p[i], kTchar)) {
      ++i;
    }
    if (i >= n) {
      return err(ParseStatus::incomplete, "truncated head");
    }
    if (p[i] != ':') {
      // RFC 9112 5.1: no whitespace is allowed between the field name and
      // the colon; such a field is a known smuggling vector and MUST be
      // rejected with 400.
      if (is_ows(p[i])) {
        return err(bad, "whitespace before colon");
      }
      return err(bad, "invalid byte in field name");
    }
    if (i == name_start) {
      return err(bad, "empty field name");
    }
    std::string_view name(p + name_start, i - name_start);
    ++i;
    while (i < n && is_ows(p[i])) {
      ++i;
    }
    size_t value_start = i;
    i = scan_field_value(p, i, n);
    if (i >= n) {
      return err(ParseStatus::incomplete, "truncated head");
    }
    if (p[i] != '\r') {
      if (p[i] == '\n') {
        return err(bad, "bare LF line ending");
      }
      // RFC 9110 5.5: NUL, CR, LF and other CTLs (HTAB aside) in a value.
      return err(bad, "invalid byte in field value");
    }
    if (i + 1 >= n) {
      return err(ParseStatus::incomplete, "truncated head");
    }
    if (p[i + 1] != '\n') {
      return err(bad, "bare CR in field value");
    }
    // Leading OWS was skipped above; drop the trailing OWS (RFC 9112 5).
    size_t value_end = i;
    while (value_end > value_start && is_ows(p[value_end - 1])) {
      --value_end;
    }
    std::string_view value(p + value_start, value_end - value_start);
    i += 2;
    out.add_adopted(name, value);
    note_field(name, value, facts);
  }
  return err(ParseStatus::incomplete, "truncated head");
}

// HTTP-version = "HTTP/" DIGIT "." DIGIT (RFC 9112 2.3), case-sensitive.
// Returns false when malformed; major/minor are set when well-formed.
bool parse_version(std::string_view v, int& major, int& minor) {
  if (v.size() != 8 || v.substr(0, 5) != "HTTP/" || !is_digit(v[5]) || v[6] != '.' ||
      !is_digit(v[7])) {
    return false;
  }
  major = v[5] - '0';
  minor = v[7] - '0';
  return true;
}

// Length of "http://" or "https://" (case-insensitive scheme) at the start
// of an absolute-form target, or 0.
size_t absolute_form_prefix(std::string_view target) {
  if (target.size() >= 7 && iequals(target.substr(0, 7), "http://")) {
    return 7;
  }
  if (target.size() >= 8 && iequals(target.substr(0, 8), "https://")) {
    return 8;
  }
  return 0;
}

// RFC 9112 3.2: request-target forms. Returns the authority of an
// absolute-form target through `authority` (empty otherwise).
ParseError check_target(std::string_view target, Method method, std::string_view& authority) {
  authority = {};
  if (method == Method::connect) {
    // RFC 9112 3.2.3: CONNECT takes authority-form (host:port) only.
    if (target.front() == '/' || !all_of_class(target, kHostByte)) {
      return err(ParseStatus::bad_request, "CONNECT needs authority-form target");
    }
    return ParseError{};
  }
  if (target.front() == '/') {
    return ParseError{};
  }
  if (target == "*") {
    // RFC 9112 3.2.4: asterisk-form is only for a server-wide OPTIONS.
    if (method != Method::options) {
      return err(ParseStatus::bad_request, "asterisk-form target needs OPTIONS");
    }
    return ParseError{};
  }
  size_t prefix = absolute_form_prefix(target);
  if (prefix == 0) {
    return err(ParseStatus::bad_request, "invalid request-target");
  }
  std::string_view rest = target.substr(prefix);
  authority = rest.substr(0, rest.find_first_of("/?#"));
  // RFC 9110 4.2.4: userinfo in an http(s) URI is an error; "a@b" is a
  // classic way to make a proxy and a backend disagree on the host.
  if (authority.empty() || !all_of_class(authority, kHostByte)) {
    return err(ParseStatus::bad_request, "invalid authority in absolute-form target");
  }
  return ParseError{};
}

void set_canonical_content_length(HeaderList& headers, uint64_t value) {
  char buf[24];
  auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, value);
  (void)ec;  // 24 bytes always hold a uint64_t
  headers.set("Content-Length", std::string_view(buf, static_cast<size_t>(ptr - buf)));
}

// Request framing, RFC 9112 6.1-6.3.
ParseError decide_request_framing(const FieldFacts& f, RequestHead& out) {
  if (f.conn_options > kMaxConnectionOptions) {
    return err(ParseStatus::bad_request, "too many connection options");
  }
  if (f.te_seen && f.cl_fields > 0) {
    // RFC 9112 6.1: CL with TE is the classic request smuggling shape; a
    // proxy must not forward it. Reject instead of picking one.
    return err(ParseStatus::bad_request, "content-length and transfer-encoding");
  }
  if (f.te_seen) {
    // RFC 9112 6.1: TE in HTTP/1.0 means the framing is faulty.
    if (out.version_minor == 0) {
      return err(ParseStatus::bad_request, "transfer-encoding in HTTP/1.0");
    }
    if (f.te_malformed) {
      return err(ParseStatus::bad_request, "malformed transfer-encoding");
    }
    // RFC 9112 6.1: chunked MUST NOT be applied more than once.
    if (f.te_chunked > 1) {
      return err(ParseStatus::bad_request, "chunked applied more than once");
    }
    // RFC 9112 6.3 (4): a request whose TE does not end in chunked has no
    // determinable length: 400 and close.
    if (!f.te_last_chunked) {
      return err(ParseStatus::bad_request, "transfer-encoding does not end in chunked");
    }
    // RFC 9112 6.1: a coding the server does not understand is 501.
    if (f.te_unknown) {
      return err(ParseStatus::not_implemented, "unsupported transfer coding");
    }
    out.body = BodyKind::chunked;
    return ParseError{};
  }
  if (f.cl_fields > 0) {
    if (f.cl_error != nullptr) {
      return err(ParseStatus::bad_request, f.cl_error);
    }
    out.body = BodyKind::content_length;
    out.content_length = f.cl_value;
    // Forward one plain value: "5, 5" or two fields would reach the upstream
    // as received, and not every upstream accepts them.
    if (f.cl_elements > 1) {
      set_canonical_content_length(out.headers, f.cl_value);
    }
    return ParseError{};
  }
  // RFC 9112 6.3 (7): a request without CL or TE has no body.
  out.body = BodyKind::none;
  return ParseError{};
}

}  // namespace

Method method_from(std::string_view m) {
  // RFC 9110 9.1: method names are case-sensitive.
  switch (m.size()) {
    case 3:
      if (m == "GET") {
        return Method::get;
      }
      if (m == "PUT") {
        return Method::put;
      }
      break;
    case 4:
      if (m == "HEAD") {
        return Method::head;
      }
      if (m == "POST") {
        return Method::post;
      }
      break;
    case 5:
      if (m == "PATCH") {
        return Method::patch;
      }
      if (m == "TRACE") {
        return Method::trace;
      }
      break;
    case 6:
      if (m == "DELETE") {
        return Method::del;
      }
      break;
    case 7:
      if (m == "OPTIONS") {
        return Method::options;
      }
      if (m == "CONNECT") {
        return Method::connect;
      }
      break;
    default:
      break;
  }
  return Method::other;
}

// ---------------------------------------------------------------------------

ParseError find_head_end(std::string_view buf, const HeadLimits& limits, bool is_request,
                         size_t& scanned, size_t& head_size) {
  head_size = 0;
  const char* p = buf.data();
  const size_t n = buf.size();
  const size_t previous = scanned <= n ? scanned : 0;
  // Only LFs not seen before can end the head; the two bytes before each are
  // looked back at, so the total work over all calls stays linear.
  size_t i = previous;
  while (i < n) {
    const void* hit = std::memchr(p + i, '\n', n - i);
    if (hit == nullptr) {
      break;
    }
    size_t lf = static_cast<size_t>(static_cast<const char*>(hit) - p);
    // An empty line ends the head. "\n\n" and "\n\r\n" end it too, so that
    // a bare-LF head is answered 400 by the parser at once rather than
    // waiting for header_timeout.
    bool empty_line =
        lf >= 1 && (p[lf - 1] == '\n' || (p[lf - 1] == '\r' && lf >= 2 && p[lf - 2] == '\n'));
    if (empty_line) {
      size_t end = lf + 1;
      scanned = end;
      if (is_request && request_line_unterminated(buf.substr(0, end), limits)) {
        return err(ParseStatus::uri_too_long, "request line too long");
      }
      if (end > limits.max_header_size) {
        return limit_error(buf.substr(0, end), limits, is_request);
      }
      head_size = end;
      return ParseError{};
    }
    i = lf + 1;
  }
  scanned = n;
  // Checked once, on the call that first passes the request-line limit, so
  // the work stays linear.
  size_t line_limit = leading_crlf(buf) + limits.max_uri_size + kRequestLineSlack;
  if (is_request && n > line_limit && previous <= line_limit &&
      request_line_unterminated(buf, limits)) {
    return err(ParseStatus::uri_too_long, "request line too long");
  }
  if (n > limits.max_header_size) {
    return limit_error(buf, limits, is_request);
  }
  return err(ParseStatus::incomplete, "");
}

ParseError parse_request_head(std::string_view head, const HeadLimits& limits, RequestHead& out) {
  out.clear();
  const char* p = head.data();
  const size_t n = head.size();
  size_t i = leading_crlf(head);

  // request-line = method SP request-target SP HTTP-version CRLF
  // (RFC 9112 3): exactly one SP between the parts, nothing else.
  size_t method_start = i;
  while (i < n && has_class(p[i], kTchar)) {
    ++i;
  }
  if (i >= n) {
    return err(ParseStatus::incomplete, "truncated head");
  }
  if (i == method_start || p[i] != ' ') {
    // RFC 9110 9.1: method = token.
    return err(ParseStatus::bad_request, "invalid method");
  }
  std::string_view method(p + method_start, i - method_start);
  ++i;

  size_t target_start = i;
  i = scan_target(p, i, n);
  // RFC 9112 3: a server should answer 414 to a request-target longer than
  // any it is willing to parse; checked before anything else about it.
  if (i - target_start > limits.max_uri_size) {
    return err(ParseStatus::uri_too_long, "request-target too long");
  }
  if (i >= n) {
    return err(ParseStatus::incomplete, "truncated head");
  }
  if (i == target_start) {
    return err(ParseStatus::bad_request, "empty request-target or extra space");
  }
  if (p[i] != ' ') {
    if (p[i] == '\r' || p[i] == '\n') {
      return err(ParseStatus::bad_request, "missing HTTP version");
    }
    return err(ParseStatus::bad_request, "invalid byte in request-target");
  }
  std::string_view target(p + target_start, i - target_start);
  ++i;

  size_t version_end = i;
  while (version_end < n && p[version_end] != '\r' && p[version_end] != '\n') {
    ++version_end;
  }
  if (version_end >= n) {
    return err(ParseStatus::incomplete, "truncated head");
  }
  int major = 0;
  int minor = 0;
  if (!parse_version(std::string_view(p + i, version_end - i), major, minor)) {
    return err(ParseStatus::bad_request, "malformed HTTP version");
  }
  if (p[version_end] == '\n') {
    return err(ParseStatus::bad_request, "bare LF line ending");
  }
  if (version_end + 1 >= n) {
    return err(ParseStatus::incomplete, "truncated head");
  }
  if (p[version_end + 1] != '\n') {
    return err(ParseStatus::bad_request, "bare CR in request line");
  }
  // RFC 9110 6.2 / 15.6.6: well-formed but not a version we speak.
  if (major != 1 || minor > 1) {
    return err(ParseStatus::version_unsupported, "unsupported HTTP version");
  }
  i = version_end + 2;

  if (n > limits.max_header_size) {
    return err(ParseStatus::header_too_large, "head too large");
  }

  out.method = method_from(method);
  out.method_text.assign(method);
  out.target.assign(target);
  out.version_minor = minor;

  std::string_view authority;
  if (auto e = check_target(target, out.method, authority); e.status != ParseStatus::ok) {
    return e;
  }

  FieldFacts facts;
  if (auto e = parse_fields(head.substr(i), ParseStatus::bad_request, out.headers, facts);
      e.status != ParseStatus::ok) {
    return e;
  }

  // RFC 9112 3.2: an HTTP/1.1 request without Host, any request with more
  // than one, or a Host with an invalid value is 400. Two Hosts let a proxy
  // and a backend route on different ones.
  if (facts.host_count > 1) {
    return err(ParseStatus::bad_request, "duplicate host");
  }
  if (facts.host_count == 0 && minor == 1) {
    return err(ParseStatus::bad_request, "missing host");
  }
  if (facts.host_count == 1 && !all_of_class(facts.host, kHostByte)) {
    return err(ParseStatus::bad_request, "invalid host");
  }
  if (!authority.empty()) {
    // RFC 9112 3.2.2: with an absolute-form target the Host field is
    // ignored and replaced by the target's authority, so that routing here
    // and at the upstream use the same host.
    out.headers.set("Host", authority);
  }

  if (auto e = decide_request_framing(facts, out); e.status != ParseStatus::ok) {
    return e;
  }

  // RFC 9112 9.3: HTTP/1.1 is persistent unless "close"; HTTP/1.0 only with
  // "keep-alive" (RFC 9112 C.2.2).
  out.keep_alive = minor == 1 ? !facts.conn_close : (facts.conn_keep_alive && !facts.conn_close);
  // RFC 9110 10.1.1: a 100-continue expectation in HTTP/1.0 is ignored.
  out.expect_continue = minor == 1 && facts.expect_continue;
  // RFC 6455 4.1 / RFC 9110 7.8: a WebSocket handshake is a GET with
  // "Upgrade: websocket" named in Connection; Upgrade in 1.0 is ignored.
  out.upgrade_websocket =
      minor == 1 && out.method == Method::get && facts.upgrade_websocket && facts.conn_upgrade;
  return ParseError{};
}

ParseError parse_response_head(std::string_view head, Method request_method, ResponseHead& out) {
  out.clear();
  const char* p = head.data();
  const size_t n = head.size();
  const ParseStatus bad = ParseStatus::bad_response;

  // status-line = HTTP-version SP status-code SP [ reason-phrase ] CRLF
  // (RFC 9112 4). The SP before an empty reason is commonly left out, and
  // the reason is meaningless, so "HTTP/1.1 200\r\n" is accepted.
  if (n < 12) {
    return err(ParseStatus::incomplete, "truncated head");
  }
  int major = 0;
  int minor = 0;
  if (!parse_version(head.substr(0, 8), major, minor) || major != 1 || minor > 1) {
    return err(bad, "unsupported or malformed HTTP version");
  }
  if (p[8] != ' ' || !is_digit(p[9]) || !is_digit(p[10]) || !is_digit(p[11])) {
    return err(bad, "malformed status line");
  }
  int status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
  if (status < 100) {
    return err(bad, "invalid status code");
  }
  size_t i = 12;
  size_t reason_start = i;
  if (i < n && p[i] == ' ') {
    ++i;
    reason_start = i;
    i = scan_field_value(p, i, n);
  }
  if (i >= n) {
    return err(ParseStatus::incomplete, "truncated head");
  }
  if (p[i] != '\r') {
    return err(bad, p[i] == '\n' ? "bare LF line ending" : "invalid byte in status line");
  }
  if (i + 1 >= n) {
    return err(ParseStatus::incomplete, "truncated head");
  }
  if (p[i + 1] != '\n') {
    return err(bad, "bare CR in status line");
  }
  out.status = status;
  out.version_minor = minor;
  out.reason.assign(p + reason_start, i - reason_start);
  i += 2;

  FieldFacts facts;
  if (auto e = parse_fields(head.substr(i), bad, out.headers, facts); e.status != ParseStatus::ok) {
    return e;
  }

  // Framing errors are refused even where the message has no body (HEAD,
  // 304): a response we cannot frame unambiguously is not relayed.
  if (facts.conn_options > kMaxConnectionOptions) {
    return err(bad, "too many connection options");
  }
  if (facts.te_seen && facts.cl_fields > 0) {
    return err(bad, "content-length and transfer-encoding");
  }
  if (facts.te_seen && (minor == 0 || facts.te_malformed || facts.te_chunked > 1)) {
    return err(bad, "malformed transfer-encoding");
  }
  if (facts.cl_error != nullptr) {
    return err(bad, facts.cl_error);
  }
  if (facts.cl_elements > 1) {
    set_canonical_content_length(out.headers, facts.cl_value);
  }

  out.keep_alive = minor == 1 ? !facts.conn_close : (facts.conn_keep_alive && !facts.conn_close);

  // RFC 9112 6.3, in its order.
  if (request_method == Method::head || status < 200 || status == 204 || status == 304) {
    // (1) no body after HEAD, 1xx, 204, 304. A 101 hands the connection to
    // another protocol: it is never reused for HTTP.
    out.body = BodyKind::none;
    if (status == 101) {
      out.keep_alive = false;
    }
    return ParseError{};
  }
  if (request_method == Method::connect && status < 300) {
    // (2) a 2xx to CONNECT turns the connection into a tunnel.
    out.body = BodyKind::none;
    out.keep_alive = false;
    return ParseError{};
  }
  if (facts.te_seen) {
    // (4) chunked last: chunked; otherwise the body runs to close.
    if (facts.te_last_chunked) {
      out.body = BodyKind::chunked;
    } else {
      out.body = BodyKind::until_close;
      out.keep_alive = false;
    }
    return ParseError{};
  }
  if (facts.cl_fields > 0) {
    // (6) a valid Content-Length.
    out.body = BodyKind::content_length;
    out.content_length = facts.cl_value;
    return ParseError{};
  }
  // (8) otherwise the body is everything until the upstream closes.
  out.body = BodyKind::until_close;
  out.keep_alive = false;
  return ParseError{};
}

ParseError first_final_response(std::string_view received, size_t max_head, ResponseHead& out,
                                size_t& consumed) {
  HeadLimits limits;
  limits.max_header_size = max_head;
  consumed = 0;
  while (true) {
    std::string_view rest = received.substr(consumed);
    size_t scanned = 0;
    size_t head_size = 0;
    ParseError e = find_head_end(rest, limits, false, scanned, head_size);
    if (e.status != ParseStatus::ok) {
      return e;
    }
    e = parse_response_head(rest.substr(0, head_size), Method::get, out);
    if (e.status != ParseStatus::ok) {
      // The head is complete: "truncated" (under 12 bytes) is malformed here.
      return {ParseStatus::bad_response, e.reason};
    }
    consumed += head_size;
    // 101 is an answer (a switch), not an interim response.
    if (out.status >= 200 || out.status == 101) {
      return {};
    }
  }
}

// ---------------------------------------------------------------------------
// RequestHead / ResponseHead

void RequestHead::clear() {
  method = Method::other;
  method_text.clear();
  target.clear();
  version_minor = 1;
  headers.clear();
  body = BodyKind::none;
  content_length = 0;
  keep_alive = true;
  expect_continue = false;
  upgrade_websocket = false;
}

std::string_view RequestHead::path() const {
  std::string_view t = target;
  if (t.empty() || t.front() != '/') {
    size_t prefix = absolute_form_prefix(t);
    if (prefix == 0) {
      return "/";  // "*" and authority-form
    }
    t.remove_prefix(prefix);
    size_t slash = t.find_first_of("/?#");
    if (slash == std::string_view::npos || t[slash] != '/') {
      return "/";
    }
    t.remove_prefix(slash);
  }
  return t.substr(0, t.find('?'));
}

std::string_view RequestHead::query() const {
  std::string_view t = target;
  size_t q = t.find('?');
  if (q == std::string_view::npos) {
    return {};
  }
  return t.substr(q + 1);
}

bool RequestHead::idempotent() const {
  // RFC 9110 9.2.2: the safe methods, PUT and DELETE.
  switch (method) {
    case Method::get:
    case Method::head:
    case Method::options:
    case Method::trace:
    case Method::put:
    case Method::del:
      return true;
    default:
      return false;
  }
}

void ResponseHead::clear() {
  status = 0;
  reason.clear();
  version_minor = 1;
  headers.clear();
  body = BodyKind::none;
  content_length = 0;
  keep_alive = true;
}

// ---------------------------------------------------------------------------
// BodyDecoder

BodyDecoder BodyDecoder::for_kind(BodyKind kind, uint64_t content_length) {
  BodyDecoder d;
  d.kind_ = kind;
  switch (kind) {
    case BodyKind::none:
      d.done_ = true;
      break;
    case BodyKind::content_length:
      d.remaining_ = content_length;
      d.done_ = content_length == 0;
      break;
    case BodyKind::chunked:
      d.state_ = State::size_first;
      d.done_ = false;
      break;
    case BodyKind::until_close:
      d.done_ = false;
      break;
  }
  return d;
}

BodyDecoder::Step BodyDecoder::fail(Step s, const char* reason) {
  error_ = reason;
  s.data = {};
  s.error = ParseError{ParseStatus::bad_request, reason};
  return s;
}

BodyDecoder::Step BodyDecoder::feed(std::string_view input) {
  Step s;
  if (error_ != nullptr) {
    return fail(s, error_);
  }
  if (done_) {
    s.done = true;
    return s;
  }
  switch (kind_) {
    case BodyKind::none:
      done_ = true;
      s.done = true;
      return s;
    case BodyKind::content_length: {
      // RFC 9112 6.3 (6): exactly Content-Length bytes; what follows belongs
      // to the next message.
      uint64_t take = remaining_ < input.size() ? remaining_ : input.size();
      s.data = input.substr(0, static_cast<size_t>(take));
      s.consumed = static_cast<size_t>(take);
      remaining_ -= take;
      body_bytes_ += take;
      done_ = remaining_ == 0;
      s.done = done_;
      return s;
    }
    case BodyKind::until_close:
      s.data = input;
      s.consumed = input.size();
      body_bytes_ += input.size();
      return s;
    case BodyKind::chunked:
      return feed_chunked(input);
  }
  return s;
}

BodyDecoder::Step BodyDecoder::feed_chunked(std::string_view input) {
  Step s;
  size_t i = 0;
  while (i < input.size()) {
    if (state_ == State::data) {
      uint64_t avail = input.size() - i;
      uint64_t take = remaining_ < avail ? remaining_ : avail;
      s.data = input.substr(i, static_cast<size_t>(take));
      i += static_cast<size_t>(take);
      remaining_ -= take;
      body_bytes_ += take;
      if (remaining_ == 0) {
        state_ = State::data_cr;
      }
      // At most one span per call: hand it out now.
      s.consumed = i;
      return s;
    }
    const char* reason = nullptr;
    if (!chunk_byte(input[i], reason)) {
      s.consumed = i;
      return fail(s, reason);
    }
    ++i;
    if (state_ == State::done) {
      done_ = true;
      s.done = true;
      break;
    }
  }
  s.consumed = i;
  return s;
}

// One byte of chunked framing (RFC 9112 7.1):
//   chunk      = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//   last-chunk = 1*("0") [ chunk-ext ] CRLF
//   trailer-section CRLF
bool BodyDecoder::chunk_byte(char c, const char*& reason) {
  switch (state_) {
    case State::size_first:
      // chunk-size = 1*HEXDIG: no sign, no leading whitespace, no "0x".
      if (!has_class(c, kHexDigit)) {
        reason = "invalid chunk size";
        return false;
      }
      line_len_ = 1;
      remaining_ = 0;
      [[fallthrough]];
    case State::size_digits: {
      if (state_ == State::size_digits) {
        ++line_len_;
      }
      if (has_class(c, kHexDigit)) {
        // A size over 64 bits would wrap to a small one and desync the
        // framing: refuse it instead (the "huge chunk" smuggling trick).
        if (remaining_ > (std::numeric_limits<uint64_t>::max() >> 4)) {
          reason = "chunk size overflow";
          return false;
        }
        int digit = is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10;
        remaining_ = (remaining_ << 4) | static_cast<uint64_t>(digit);
        state_ = State::size_digits;
      } else if (c == ';') {
        state_ = State::ext;
      } else if (is_ows(c)) {
        state_ = State::size_ws;  // BWS is only allowed before ';'
      } else if (c == '\r') {
        state_ = State::size_lf;
      } else {
        reason = "invalid chunk size";
        return false;
      }
      break;
    }
    case State::size_ws:
      ++line_len_;
      if (c == ';') {
        state_ = State::ext;
      } else if (!is_ows(c)) {
        reason = "whitespace after chunk size";
        return false;
      }
      break;
    case State::ext:
      // Extensions are skipped, but a bare LF or a CTL in one would let two
      // parsers end the line in different places.
      ++line_len_;
      if (c == '\r') {
        state_ = State::size_lf;
      } else if (!has_class(c, kFieldByte)) {
        reason = "invalid byte in chunk extension";
        return false;
      }
      break;
    case State::size_lf:
      if (c != '\n') {
        reason = "bare CR in chunk-size line";
        return false;
      }
      if (remaining_ == 0) {
        state_ = State::trailer_start;
        line_len_ = 0;
      } else {
        state_ = State::data;
      }
      return true;
    case State::data_cr:
      // After chunk-data comes exactly CRLF; anything else means the sizes
      // lie (or another parser would read the data differently).
      if (c != '\r') {
        reason = "chunk data not followed by CRLF";
        return false;
      }
      state_ = State::data_lf;
      return true;
    case State::data_lf:
      if (c != '\n') {
        reason = "chunk data not followed by CRLF";
        return false;
      }
      state_ = State::size_first;
      return true;
    case State::trailer_start:
      ++trailer_bytes_;
      line_len_ = 1;
      if (c == '\r') {
        state_ = State::final_lf;
      } else if (has_class(c, kTchar)) {
        state_ = State::trailer_name;
      } else {
        // obs-fold, bare LF, or a non-token name.
        reason = "malformed trailer field";
        return false;
      }
      break;
    case State::trailer_name:
      ++trailer_bytes_;
      ++line_len_;
      if (c == ':') {
        state_ = State::trailer_value;
      } else if (!has_class(c, kTchar)) {
        reason = "malformed trailer field";
        return false;
      }
      break;
    case State::trailer_value:
      ++trailer_bytes_;
      ++line_len_;
      if (c == '\r') {
        state_ = State::trailer_lf;
      } else if (!has_class(c, kFieldByte)) {
        reason = "invalid byte in trailer field";
        return false;
      }
      break;
    case State::trailer_lf:
      ++trailer_bytes_;
      if (c != '\n') {
        reason = "bare CR in trailer field";
        return false;
      }
      state_ = State::trailer_start;
      break;
    case State::final_lf:
      if (c != '\n') {
        reason = "bare CR after trailer section";
        return false;
      }
      state_ = State::done;
      return true;
    case State::data:
    case State::done:
      break;
  }
  if (line_len_ > kMaxLine) {
    reason = "chunk line too long";
    return false;
  }
  if (trailer_bytes_ > kMaxTrailerSize) {
    reason = "trailer section too large";
    return false;
  }
  return true;
}

}  // namespace ward::http
