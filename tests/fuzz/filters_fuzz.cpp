// libFuzzer target for the filter chain: every built-in filter, configured
// the way users do, fed hostile request and response heads and bodies. The
// filters parse client input themselves (Accept-Encoding q-values, cookies,
// Origin, X-Request-ID, X-Forwarded-For through the client IP), so beyond
// "no crash" it traps on broken invariants:
//  - no filter puts CR, LF or NUL into a header (response splitting);
//  - a local reply has a status in 100..599;
//  - a gzip-encoded body inflates back to exactly the body that went in,
//    whatever the pieces and flush points were.
//
// Input: byte 0 picks the chain, method, status and piece size; the rest is
// "request headers \0 response headers \0 body", headers as "Name: value"
// lines (lines a real parser would refuse are skipped, as ward's does).

#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "filters/chain.h"
#include "filters/registry.h"
#include "proxy/config/reader.h"
#include "proxy/http/header_list.h"

namespace {

using namespace ward;

void check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

bool is_token_char(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

bool is_value_char(unsigned char c) {
  return c == '\t' || (c >= 0x20 && c != 0x7f);
}

// "Name: value" lines into `out`, skipping what the HTTP/1 parser refuses.
void parse_headers(std::string_view text, http::HeaderList& out) {
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    size_t colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos) {
      continue;
    }
    std::string_view name = line.substr(0, colon);
    std::string_view value = http::trim_ows(line.substr(colon + 1));
    bool ok = true;
    for (unsigned char c : name) {
      ok = ok && is_token_char(c);
    }
    for (unsigned char c : value) {
      ok = ok && is_value_char(c);
    }
    if (ok) {
      out.add(name, value);
    }
  }
}

void check_no_splitting(const http::HeaderList& headers) {
  headers.for_each([](const http::HeaderList::Field& f) {
    check(!f.name.empty());
    for (unsigned char c : f.name) {
      check(c != '\r' && c != '\n' && c != 0 && c != ':');
    }
    for (unsigned char c : f.value) {
      check(c != '\r' && c != '\n' && c != 0);
    }
  });
}

std::string inflate_gzip(std::string_view in, bool& ok) {
  z_stream z{};
  ok = inflateInit2(&z, 15 + 16) == Z_OK;
  std::string out;
  if (!ok) {
    return out;
  }
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  char buf[16384];
  int rc = Z_OK;
  while (rc == Z_OK) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    rc = inflate(&z, Z_NO_FLUSH);
    out.append(buf, sizeof buf - z.avail_out);
    if (rc == Z_BUF_ERROR && z.avail_in == 0) {
      break;
    }
  }
  ok = rc == Z_STREAM_END;
  inflateEnd(&z);
  return out;
}

struct Chains {
  filters::FilterRegistry registry;
  observe::Registry metrics{1};
  filters::RuntimeState runtime;
  std::vector<filters::FilterChain> chains;

  Chains() {
    filters::register_builtin_filters(registry);
    // Each chain is what a user would write; every filter appears at least once.
    const char* specs[] = {
        R"([{request_id: {}}, {security_headers: {hide_server: true}},
            {cors: {allow_origins: ["https://app.example", "https://*.b.example"],
                    allow_credentials: true, expose_headers: [X-Total]}},
            {compress: {min_size: 0}}])",
        R"([{rate_limit: {key: "cookie:sid", rate: 5/second, burst: 3}},
            {ip_access: {allow: ["127.0.0.0/8", "::1/128"], deny: ["127.0.0.66/32"]}},
            {headers: {request_set: {X-Tenant: blue}, response_remove: [Server]}},
            {compress: {algorithms: [gzip], min_size: 0, types: ["text/*", "application/*"]}}])",
        R"([{api_key: {keys: [k-1, k-2], header: X-Key}},
            {rate_limit: {key: "header:X-Client", rate: 1/second, burst: 1}},
            {cors: {allow_origins: "*"}}, {request_id: {header: X-Trace}}])",
    };
    for (const char* text : specs) {
      YAML::Node list = YAML::Load(text);
      std::vector<config::FilterSpec> filter_specs;
      for (const auto& item : list) {
        for (const auto& kv : item) {
          config::FilterSpec spec;
          spec.name = kv.first.as<std::string>();
          spec.options = kv.second;
          filter_specs.push_back(spec);
        }
      }
      config::Reader reader("fuzz.yaml");
      chains.push_back(registry.build(filter_specs, "fuzz", reader, metrics, runtime));
      for (const auto& e : reader.take_errors()) {
        std::fprintf(stderr, "filters_fuzz: bad chain config: %s\n", e.to_string().c_str());
        __builtin_trap();
      }
      check(chains.back().size() == filter_specs.size());
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Chains* chains = new Chains();  // built once; never freed (fuzzer lifetime)
  static int64_t now_ns = 0;
  if (size < 1) {
    return 0;
  }
  const uint8_t flags = data[0];
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  size_t a = in.find('\0');
  std::string_view req_text = in.substr(0, a);
  std::string_view rest = a == std::string_view::npos ? std::string_view() : in.substr(a + 1);
  size_t b = rest.find('\0');
  std::string_view resp_text = rest.substr(0, b);
  std::string_view body = b == std::string_view::npos ? std::string_view() : rest.substr(b + 1);

  static constexpr const char* kMethods[] = {"GET", "POST", "OPTIONS", "HEAD"};
  static constexpr int kStatuses[] = {200, 201, 204, 206, 304, 404, 500, 101};
  const auto& chain = chains->chains[flags % chains->chains.size()];

  http::HeaderList req_headers;
  http::HeaderList resp_headers;
  parse_headers(req_text, req_headers);
  parse_headers(resp_text, resp_headers);
  std::vector<filters::FilterState> states(chain.size());

  filters::RequestContext ctx;
  ctx.method = kMethods[(flags >> 2) & 3];
  ctx.path = "/fuzz";
  std::string host(req_headers.get("host").value_or(""));  // stable while filters edit
  ctx.host = host;
  ctx.request_headers = &req_headers;
  ctx.client_ip_text = (flags & 0x80) ? "127.0.0.66" : "127.0.0.1";
  ctx.client_ip = *util::IpAddress::parse(ctx.client_ip_text);
  ctx.tls = (flags & 0x40) != 0;
  now_ns += 50'000'000;  // 50 ms a request: buckets refill, expire and fill up again
  ctx.now_ns = now_ns;

  size_t ran = chain.run_request(ctx, states.data());
  check(ran <= chain.size());
  check_no_splitting(req_headers);
  int status = kStatuses[(flags >> 4) & 7];
  if (ctx.replied()) {
    check(ctx.reply_status >= 100 && ctx.reply_status <= 599);
    status = ctx.reply_status;
    resp_headers.clear();
    ctx.local_reply = true;
  }
  ctx.status = status;
  ctx.response_headers = &resp_headers;
  ctx.response_has_body =
      status >= 200 && status != 204 && status != 304 && std::string_view(ctx.method) != "HEAD";
  chain.run_response(ctx, states.data(), ran);
  check_no_splitting(resp_headers);
  chain.run_log(ctx, ran);

  if (ctx.response_encoder) {
    // The body in pieces of 1..64 bytes with a flush every few pieces.
    size_t piece = 1 + (flags & 0x3f);
    std::string encoded;
    size_t n = 0;
    for (size_t off = 0; off < body.size(); off += piece, ++n) {
      auto mode =
          (n % 3 == 2) ? filters::BodyEncoder::Mode::flush : filters::BodyEncoder::Mode::none;
      check(ctx.response_encoder->encode(body.substr(off, piece), mode, encoded));
    }
    check(ctx.response_encoder->encode({}, filters::BodyEncoder::Mode::finish, encoded));
    auto encoding = resp_headers.get("content-encoding");
    if (encoding && *encoding == "gzip") {
      bool ok = false;
      std::string back = inflate_gzip(encoded, ok);
      check(ok);
      check(back == body);
    }
  }
  return 0;
}
