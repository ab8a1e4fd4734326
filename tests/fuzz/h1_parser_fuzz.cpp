// libFuzzer target for the HTTP/1 parser: find_head_end (whole and split),
// parse_request_head, BodyDecoder of every kind (whole and split),
// parse_response_head, first_final_response (a health check's reading of
// an answer), and the forwarding rules. Beyond "no crash", it traps
// on broken invariants: split input must decide exactly like whole input,
// data spans must lie in the consumed input, and a parsed request that is
// re-serialised must parse again to the same framing.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "proxy/http/forwarding.h"
#include "proxy/http/h1_parser.h"

namespace {

using namespace ward::http;

void check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

struct BodyResult {
  std::string data;
  size_t consumed = 0;
  bool done = false;
  ParseStatus status = ParseStatus::ok;
};

// Feeds `in` in pieces of `piece` bytes, keeping unconsumed bytes buffered as
// a connection would.
BodyResult decode(BodyKind kind, uint64_t length, std::string_view in, size_t piece) {
  BodyDecoder d = BodyDecoder::for_kind(kind, length);
  BodyResult r;
  std::string buffered;
  size_t offered = 0;
  while (true) {
    bool more = offered < in.size();
    if (more) {
      size_t n = std::min(piece, in.size() - offered);
      buffered.append(in.substr(offered, n));
      offered += n;
    }
    while (true) {
      BodyDecoder::Step s = d.feed(buffered);
      check(s.consumed <= buffered.size());
      if (!s.data.empty()) {
        check(s.data.data() >= buffered.data() &&
              s.data.data() + s.data.size() <= buffered.data() + s.consumed);
        r.data.append(s.data);
      }
      r.consumed += s.consumed;
      buffered.erase(0, s.consumed);
      if (s.error.status != ParseStatus::ok) {
        r.status = s.error.status;
        return r;
      }
      if (s.done) {
        r.done = true;
        check(d.done());
        return r;
      }
      if (s.consumed == 0) {
        break;
      }
    }
    if (!more) {
      check(d.body_bytes() == r.data.size());
      return r;
    }
  }
}

void fuzz_bodies(std::string_view body, size_t piece) {
  const BodyKind kinds[] = {BodyKind::none, BodyKind::content_length, BodyKind::chunked,
                            BodyKind::until_close};
  for (BodyKind kind : kinds) {
    uint64_t length = body.size() / 2;
    BodyResult whole = decode(kind, length, body, body.size() + 1);
    BodyResult split = decode(kind, length, body, piece);
    check(whole.data == split.data);
    check(whole.done == split.done);
    check(whole.status == split.status);
    check(whole.consumed == split.consumed);
    if (kind == BodyKind::until_close) {
      check(whole.data == body);
    }
    if (kind == BodyKind::content_length) {
      check(whole.data == body.substr(0, length));
    }
  }
}

bool is_tchar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// Every field that parsed is well-formed (RFC 9110 5.1, 5.5): what is
// forwarded can only be what the grammar allows.
void check_fields(const HeaderList& headers) {
  headers.for_each([](const HeaderList::Field& f) {
    check(!f.name.empty());
    for (char c : f.name) {
      check(is_tchar(c));
    }
    for (char c : f.value) {
      auto u = static_cast<unsigned char>(c);
      check(u == '\t' || (u >= 0x20 && u != 0x7f));
    }
    if (!f.value.empty()) {
      check(f.value.front() != ' ' && f.value.front() != '\t');
      check(f.value.back() != ' ' && f.value.back() != '\t');
    }
  });
}

// Writes the head back out the way the proxy would send it upstream.
std::string serialize(const RequestHead& h) {
  std::string out =
      h.method_text + " " + h.target + (h.version_minor == 0 ? " HTTP/1.0" : " HTTP/1.1") + "\r\n";
  h.headers.serialize_to(out);
  out += "\r\n";
  return out;
}

void fuzz_request(std::string_view in, size_t piece) {
  HeadLimits limits;
  limits.max_header_size = 2048;
  limits.max_uri_size = 512;

  size_t scanned = 0;
  size_t head_size = 0;
  ParseError whole = find_head_end(in, limits, true, scanned, head_size);

  // The same bytes arriving in pieces must give the same answer.
  size_t split_scanned = 0;
  size_t split_head = 0;
  ParseError split{ParseStatus::incomplete, ""};
  for (size_t n = std::min(piece, in.size());; n = std::min(n + piece, in.size())) {
    split = find_head_end(in.substr(0, n), limits, true, split_scanned, split_head);
    if (split.status != ParseStatus::incomplete || n == in.size()) {
      break;
    }
  }
  check(whole.status == split.status);
  check(whole.status != ParseStatus::ok || head_size == split_head);
  if (whole.status != ParseStatus::ok) {
    return;
  }
  check(head_size > 0 && head_size <= in.size() && head_size <= limits.max_header_size);

  static RequestHead head;  // reused, as a connection reuses it
  std::string_view head_bytes = in.substr(0, head_size);
  ParseError e = parse_request_head(head_bytes, limits, head);
  check(e.status != ParseStatus::incomplete);
  if (e.status != ParseStatus::ok) {
    return;
  }
  check(head.body != BodyKind::until_close);
  check_fields(head.headers);
  for (char c : head.target) {
    auto u = static_cast<unsigned char>(c);
    check(u > 0x20 && u != 0x7f);
  }
  check(head.target.size() <= limits.max_uri_size);
  if (head.version_minor == 1) {
    check(head.headers.count("Host") == 1);
  }
  check(!head.method_text.empty() && !head.target.empty());
  (void)head.path();
  (void)head.query();
  (void)head.idempotent();

  // Round trip: what we would forward parses again to the same framing.
  std::string again = serialize(head);
  static RequestHead head2;
  HeadLimits wide;
  wide.max_header_size = again.size() + 1;
  ParseError e2 = parse_request_head(again, wide, head2);
  check(e2.status == ParseStatus::ok);
  check(head2.body == head.body && head2.content_length == head.content_length);
  check(head2.keep_alive == head.keep_alive && head2.target == head.target);
  check(head2.upgrade_websocket == head.upgrade_websocket);

  // The forwarding rules on the parsed head.
  ward::util::CidrSet trusted;
  trusted.add(*ward::util::Cidr::parse("10.0.0.0/8"));
  ForwardContext ctx;
  ctx.peer = *ward::util::IpAddress::parse(in.size() % 2 ? "10.0.0.1" : "192.0.2.1");
  ctx.peer_trusted = trusted.contains(ctx.peer);
  ctx.client = decide_client_ip(head.headers, ctx.peer, trusted);
  ctx.tls = in.size() % 3 == 0;
  prepare_upstream_request(head, ctx);
  for (const char* hop : {"Transfer-Encoding", "Keep-Alive", "Proxy-Connection", "TE", "Trailer"}) {
    check(head.headers.count(hop) == 0);
  }
  check(head.headers.count("Connection") == (head.upgrade_websocket ? 1u : 0u));
  check(head.upgrade_websocket || head.headers.count("Upgrade") == 0);
  check(head.headers.count("X-Forwarded-For") == 1);
  check(head.headers.count("X-Real-IP") == 1);
  check(ctx.peer_trusted || head.headers.count("X-Forwarded-Proto") == 1);
  check(head.headers.count("Host") <= 1);
  if (head.body == BodyKind::content_length) {
    check(head.headers.count("Content-Length") > 0);
  }

  fuzz_bodies(in.substr(head_size), piece);
}

void fuzz_response(std::string_view in, size_t piece) {
  HeadLimits limits;
  size_t scanned = 0;
  size_t head_size = 0;
  ParseError found = find_head_end(in, limits, false, scanned, head_size);
  check(found.status != ParseStatus::uri_too_long);
  std::string_view head_bytes = found.status == ParseStatus::ok ? in.substr(0, head_size) : in;
  static ResponseHead head;
  for (Method m : {Method::get, Method::head, Method::connect}) {
    ParseError e = parse_response_head(head_bytes, m, head);
    if (e.status != ParseStatus::ok) {
      check(e.status == ParseStatus::bad_response || e.status == ParseStatus::incomplete);
      continue;
    }
    check(head.status >= 100 && head.status <= 999);
    check_fields(head.headers);
    if (head.body == BodyKind::until_close) {
      check(!head.keep_alive);
    }
    if (m == Method::head) {
      check(head.body == BodyKind::none);
    }
  }
  if (parse_response_head(head_bytes, Method::get, head).status == ParseStatus::ok) {
    prepare_downstream_response(head);
    check(head.headers.count("Transfer-Encoding") == 0);
  }
  (void)piece;
}

}  // namespace

// first_final_response, as the bytes arrive: once it decides (anything but
// incomplete) more bytes must not change the decision, since a health check
// stops reading there; a final head is never 1xx other than 101, and it
// ends within the input.
void fuzz_final_response(std::string_view in, size_t piece) {
  constexpr size_t kMaxHead = 1024;  // small, so fuzzed inputs reach the limit
  // At most ~64 looks per input: each is linear in the bytes so far.
  size_t step = std::max(piece, in.size() / 64 + 1);
  bool decided = false;
  ParseStatus first = ParseStatus::ok;
  int first_status = 0;
  size_t first_consumed = 0;
  for (size_t n = std::min(step, in.size());; n = std::min(n + step, in.size())) {
    ResponseHead head;
    size_t consumed = 0;
    ParseError e = first_final_response(in.substr(0, n), kMaxHead, head, consumed);
    if (e.status == ParseStatus::ok) {
      check(consumed <= n);
      check(head.status >= 200 || head.status == 101);
    }
    if (decided) {
      check(e.status == first);
      check(e.status != ParseStatus::ok ||
            (head.status == first_status && consumed == first_consumed));
    } else if (e.status != ParseStatus::incomplete) {
      decided = true;
      first = e.status;
      first_status = head.status;
      first_consumed = consumed;
    }
    if (n == in.size()) {
      break;
    }
  }
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    return 0;
  }
  // The first byte picks how the input is split into reads (1..16 bytes).
  size_t piece = (data[0] & 0x0f) + 1;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  fuzz_request(in, piece);
  fuzz_response(in, piece);
  fuzz_final_response(in, piece);
  // Bodies on their own too, so the decoder sees inputs that are not heads.
  fuzz_bodies(in, piece);
  return 0;
}
