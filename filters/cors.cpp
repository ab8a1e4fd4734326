#include "filters/cors.h"

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "filters/headers.h"

namespace ward::filters {

namespace {

// The methods a preflight may ask for by default: every method an API
// commonly takes. (GET, HEAD and POST need no preflight but are listed so
// the field reads as the complete set.)
constexpr std::string_view kDefaultMethods = "GET, HEAD, POST, PUT, PATCH, DELETE";
constexpr config::Duration kDefaultMaxAge = std::chrono::minutes(10);

constexpr std::string_view kAllowOrigin = "Access-Control-Allow-Origin";
constexpr std::string_view kAllowCredentials = "Access-Control-Allow-Credentials";
constexpr std::string_view kExposeHeaders = "Access-Control-Expose-Headers";
constexpr std::string_view kAllowMethods = "Access-Control-Allow-Methods";
constexpr std::string_view kAllowHeaders = "Access-Control-Allow-Headers";
constexpr std::string_view kMaxAge = "Access-Control-Max-Age";
constexpr std::string_view kRequestMethod = "Access-Control-Request-Method";
constexpr std::string_view kRequestHeaders = "Access-Control-Request-Headers";

// ---- Origins ---------------------------------------------------------------

// An origin as browsers serialise it (RFC 6454 6.2): scheme "://" host
// [":" port], nothing else. Views into the text; `port` 0 is the scheme's
// default, so https://a.com and https://a.com:443 are the same origin.
struct OriginParts {
  std::string_view scheme;
  std::string_view host;
  uint32_t port = 0;
};

uint32_t default_port(std::string_view scheme) {
  if (http::iequals(scheme, "http") || http::iequals(scheme, "ws")) {
    return 80;
  }
  if (http::iequals(scheme, "https") || http::iequals(scheme, "wss")) {
    return 443;
  }
  return 0;
}

bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

bool is_scheme(std::string_view s) {
  if (s.empty() || !is_alpha(s.front())) {
    return false;
  }
  for (char c : s) {
    if (!is_alpha(c) && !is_digit(c) && c != '+' && c != '-' && c != '.') {
      return false;
    }
  }
  return true;
}

// A DNS name or IPv4 literal as it appears in an origin (browsers send IDNs
// as punycode), or an IPv6 literal in brackets.
bool is_origin_host(std::string_view h) {
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') {
    for (char c : h.substr(1, h.size() - 2)) {
      if (!is_digit(c) && !((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) && c != ':' &&
          c != '.') {
        return false;
      }
    }
    return h.size() > 2;
  }
  if (h.empty()) {
    return false;
  }
  for (char c : h) {
    if (!is_alpha(c) && !is_digit(c) && c != '-' && c != '.' && c != '_') {
      return false;
    }
  }
  return true;
}

std::optional<OriginParts> parse_origin(std::string_view text) {
  const size_t sep = text.find("://");
  if (sep == std::string_view::npos || !is_scheme(text.substr(0, sep))) {
    return std::nullopt;
  }
  OriginParts parts;
  parts.scheme = text.substr(0, sep);
  std::string_view rest = text.substr(sep + 3);
  // The port separator is the first ':' after an IPv6 literal's ']'.
  const size_t host_end = rest.starts_with('[') ? rest.find(']') : 0;
  if (host_end == std::string_view::npos) {
    return std::nullopt;
  }
  const size_t colon = rest.find(':', host_end);
  parts.host = rest.substr(0, colon);
  if (!is_origin_host(parts.host)) {
    return std::nullopt;
  }
  if (colon != std::string_view::npos) {
    std::string_view digits = rest.substr(colon + 1);
    uint32_t port = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
    if (digits.empty() || digits.size() > 5 || ec != std::errc() ||
        end != digits.data() + digits.size() || port == 0 || port > 65535) {
      return std::nullopt;
    }
    parts.port = port;
  }
  if (parts.port == default_port(parts.scheme)) {
    parts.port = 0;
  }
  return parts;
}

// One allowed origin, `https://app.example.com`, or with a wildcard for
// any subdomain, `https://*.example.com` (which does not match
// https://example.com itself).
struct OriginRule {
  std::string scheme;  // lower case
  std::string host;    // lower case; for a wildcard the suffix ".example.com"
  uint32_t port = 0;   // 0 = the scheme's default
  bool wildcard = false;
  std::string text;  // as browsers serialise it; what an exact rule answers

  bool matches(const OriginParts& o) const {
    if (o.port != port || !http::iequals(o.scheme, scheme)) {
      return false;
    }
    if (!wildcard) {
      return http::iequals(o.host, host);
    }
    return o.host.size() > host.size() &&
           http::iequals(o.host.substr(o.host.size() - host.size()), host);
  }
};

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

// Why `text` is not an allowed-origin pattern, or the rule.
std::optional<OriginRule> parse_rule(std::string_view text, std::string& problem) {
  if (text == "null") {
    // Sandboxed iframes, file: pages and some redirects all send "null":
    // allowing it would allow every one of them.
    problem = "'null' cannot be allowed: every sandboxed document and local file sends it";
    return std::nullopt;
  }
  std::string concrete(text);
  const size_t sep = concrete.find("://");
  const bool wildcard = sep != std::string::npos && concrete.compare(sep + 3, 2, "*.") == 0;
  if (wildcard) {
    concrete.replace(sep + 3, 1, "x");  // parse the rest as a normal origin
  }
  auto parts = parse_origin(concrete);
  if (!parts) {
    const size_t slash = sep == std::string::npos ? std::string::npos : concrete.find('/', sep + 3);
    if (slash != std::string::npos) {
      problem = "an origin has no path; write " +
                config::Reader::quote(std::string(text.substr(0, slash)));
    } else {
      problem = "expected an origin such as https://example.com or https://*.example.com, got " +
                config::Reader::quote(text);
    }
    return std::nullopt;
  }
  OriginRule rule;
  rule.scheme = lower(parts->scheme);
  rule.host = lower(parts->host);
  rule.port = parts->port;
  rule.wildcard = wildcard;
  if (wildcard) {
    rule.host.erase(0, 1);  // "x.example.com" -> ".example.com"
    // "*.com" would allow every site under a top-level domain.
    if (rule.host.find('.', 1) == std::string::npos) {
      problem = "a wildcard needs a domain of two labels or more after '*.', got " +
                config::Reader::quote(text);
      return std::nullopt;
    }
  }
  rule.text = rule.scheme + "://" + (wildcard ? "*" : "") + rule.host;
  if (rule.port != 0) {
    rule.text += ":" + std::to_string(rule.port);
  }
  return rule;
}

// ---- Options ---------------------------------------------------------------

struct Options {
  bool any_origin = false;  // allow_origins: "*"
  std::vector<OriginRule> origins;
  std::string allow_methods{kDefaultMethods};
  bool reflect_methods = false;  // allow_methods: "*"
  std::string allow_headers;
  bool reflect_headers = true;  // the default, and allow_headers: "*"
  std::string expose_headers;   // "" = none
  bool credentials = false;
  std::string max_age = std::to_string(kDefaultMaxAge.count() / 1000);
};

// A list of tokens (methods, header names) or "*"; `star` is set for "*",
// otherwise `joined` gets "A, B, C".
bool read_tokens(config::Reader& reader, const config::Section& s, std::string_view key,
                 std::string& joined, bool& star) {
  const YAML::Node* node = s.get(key);
  if (node == nullptr) {
    return true;
  }
  const std::string path = s.child(key);
  if (node->IsScalar() && node->Scalar() == "*") {
    star = true;
    return true;
  }
  if (!node->IsSequence()) {
    reader.error(s.value_mark(key),
                 path + ": expected a list or '*', got " + config::Reader::describe(*node));
    return false;
  }
  std::string out;
  bool ok = true;
  size_t i = 0;
  for (const auto& item : *node) {
    const std::string item_path = path + "[" + std::to_string(i++) + "]";
    auto token = reader.string_of(item, item.Mark(), item_path);
    if (!token) {
      ok = false;
      continue;
    }
    if (*token == "*") {
      if (node->size() == 1) {
        star = true;
        return ok;
      }
      reader.error(item.Mark(), item_path + ": '*' stands for everything; give it alone");
      ok = false;
      continue;
    }
    if (!is_header_name(*token)) {
      reader.error(item.Mark(), item_path + ": " + config::Reader::quote(*token) +
                                    " is not a valid method or header name");
      ok = false;
      continue;
    }
    out += out.empty() ? "" : ", ";
    out += *token;
  }
  star = false;
  joined = std::move(out);
  return ok;
}

bool read_origins(config::Reader& reader, const config::Section& s, const YAML::Mark& missing,
                  Options& options) {
  const YAML::Node* node = s.get("allow_origins");
  const std::string path = s.child("allow_origins");
  if (node == nullptr) {
    reader.error(s.has("allow_origins") ? s.key_mark("allow_origins") : missing,
                 "missing required key 'allow_origins' in cors");
    return false;
  }
  if (node->IsScalar() && node->Scalar() == "*") {
    options.any_origin = true;
    return true;
  }
  if (!node->IsSequence()) {
    reader.error(s.value_mark("allow_origins"), path + ": expected a list of origins or '*', got " +
                                                    config::Reader::describe(*node));
    return false;
  }
  if (node->size() == 0) {
    reader.error(s.value_mark("allow_origins"), path + ": needs at least one origin");
    return false;
  }
  bool ok = true;
  size_t i = 0;
  for (const auto& item : *node) {
    const std::string item_path = path + "[" + std::to_string(i++) + "]";
    auto text = reader.string_of(item, item.Mark(), item_path);
    if (!text) {
      ok = false;
    } else if (*text == "*" && node->size() == 1) {
      options.any_origin = true;
    } else if (*text == "*") {
      reader.error(item.Mark(), item_path + ": '*' allows every origin; give it alone");
      ok = false;
    } else {
      std::string problem;
      if (auto rule = parse_rule(*text, problem)) {
        options.origins.push_back(std::move(*rule));
      } else {
        reader.error(item.Mark(), item_path + ": " + problem);
        ok = false;
      }
    }
  }
  return ok;
}

bool read_max_age(config::Reader& reader, const config::Section& s, Options& options) {
  config::Duration max_age = kDefaultMaxAge;
  if (!reader.read_duration(s, "max_age", max_age, config::Duration(0))) {
    return false;
  }
  // Access-Control-Max-Age counts whole seconds; rounding would be a
  // silent change of what was written.
  if (max_age.count() % 1000 != 0) {
    reader.error(s.value_mark("max_age"), s.child("max_age") + ": must be whole seconds, got " +
                                              std::to_string(max_age.count()) + "ms");
    return false;
  }
  options.max_age = std::to_string(max_age.count() / 1000);
  return true;
}

std::optional<Options> read_options(BuildContext& ctx) {
  bool ok = true;
  config::Section s = checked_options(ctx,
                                      {"allow_origins", "allow_methods", "allow_headers",
                                       "expose_headers", "allow_credentials", "max_age"},
                                      ok);
  config::Reader& reader = ctx.reader;
  Options options;
  ok = read_origins(reader, s, options_mark(ctx), options) && ok;
  ok =
      read_tokens(reader, s, "allow_methods", options.allow_methods, options.reflect_methods) && ok;
  if (s.get("allow_methods") != nullptr && !options.reflect_methods &&
      options.allow_methods.empty() && ok) {
    reader.error(s.value_mark("allow_methods"),
                 "cors.allow_methods: needs at least one method (omit it for the default)");
    ok = false;
  }
  ok =
      read_tokens(reader, s, "allow_headers", options.allow_headers, options.reflect_headers) && ok;
  bool expose_all = false;
  ok = read_tokens(reader, s, "expose_headers", options.expose_headers, expose_all) && ok;
  ok = reader.read(s, "allow_credentials", options.credentials) && ok;
  ok = read_max_age(reader, s, options) && ok;
  if (expose_all) {
    if (options.credentials) {
      // Fetch: with credentials a "*" is a header literally named "*".
      reader.error(s.value_mark("expose_headers"),
                   "cors.expose_headers: '*' does not work with allow_credentials; list the "
                   "headers");
      ok = false;
    }
    options.expose_headers = "*";
  }
  if (!ok) {
    return std::nullopt;
  }
  return options;
}

// ---- The filter ------------------------------------------------------------

// What on_request decided, kept in FilterState::a for on_response.
enum Decision : int64_t {
  kNoOrigin = 0,  // not a CORS request
  kAllowed = 1,
  kDenied = 2,
  kPreflightAllowed = 3,
  kPreflightDenied = 4,
};
// FilterState::b for an allowed origin: the Access-Control-Allow-Origin value.
constexpr int64_t kAnswerStar = 0;   // "*"
constexpr int64_t kAnswerEcho = -1;  // the request's Origin, as sent
// b >= 1: the text of options.origins[b - 1]

// "a, b,c": a list of tokens (what a browser sends in
// Access-Control-Request-Headers); empty elements are allowed (RFC 9110 5.6.1).
bool is_token_list(std::string_view value) {
  while (true) {
    const size_t comma = value.find(',');
    std::string_view element = http::trim_ows(value.substr(0, comma));
    if (!element.empty() && !is_header_name(element)) {
      return false;
    }
    if (comma == std::string_view::npos) {
      return true;
    }
    value.remove_prefix(comma + 1);
  }
}

bool is_cors_field(std::string_view name) {
  constexpr std::string_view kPrefix = "Access-Control-";
  return name.size() >= kPrefix.size() && http::iequals(name.substr(0, kPrefix.size()), kPrefix);
}

// Caches must key the response on Origin when the answer depends on it
// (Fetch 3.2.5 "CORS protocol and HTTP caches").
void vary_on_origin(http::HeaderList& fields) {
  bool covered = false;
  fields.for_each([&](const http::HeaderList::Field& f) {
    if (http::iequals(f.name, "Vary") &&
        (http::has_token(f.value, "Origin") || http::has_token(f.value, "*"))) {
      covered = true;
    }
  });
  if (!covered) {
    fields.append_to_list("Vary", "Origin");
  }
}

class CorsFilter : public Filter {
 public:
  explicit CorsFilter(Options options)
      : options_(std::move(options)),
        // Only "allow any origin, without credentials" answers every
        // origin alike ("*"); everything else echoes or omits per origin.
        varies_(!(options_.any_origin && !options_.credentials)) {}

  FilterStatus on_request(RequestContext& ctx) override {
    const http::HeaderList& fields = *ctx.request_headers;
    auto origin = fields.get("Origin");
    if (!origin) {
      return FilterStatus::next;
    }
    // Two Origin fields: a browser never sends that; refuse to pick one.
    const std::optional<int64_t> answer =
        fields.count("Origin") == 1 ? answer_for(*origin) : std::nullopt;
    ctx.state->b = answer.value_or(0);
    // Fetch 4.8: a preflight is an OPTIONS request with Origin and
    // Access-Control-Request-Method. Answered here whatever the origin, so
    // the upstream never sees one.
    if (ctx.method == "OPTIONS" && fields.get(kRequestMethod)) {
      ctx.state->a = answer ? kPreflightAllowed : kPreflightDenied;
      ctx.reply(204);
      return FilterStatus::stop;
    }
    ctx.state->a = answer ? kAllowed : kDenied;
    return FilterStatus::next;
  }

  // Upstream answers and local replies (a 401 or 429 must be readable by
  // the page that caused it) alike.
  void on_response(RequestContext& ctx) override {
    http::HeaderList& out = *ctx.response_headers;
    out.remove_if([](const http::HeaderList::Field& f) { return is_cors_field(f.name); });
    if (varies_) {
      vary_on_origin(out);
    }
    const int64_t decision = ctx.state->a;
    if (decision == kNoOrigin && !varies_) {
      // The answer is the same "*" for everyone, so a cached copy of this
      // response serves later cross-origin requests too.
      out.add(kAllowOrigin, "*");
      return;
    }
    if (decision != kAllowed && decision != kPreflightAllowed) {
      return;
    }
    if (!write_allow_origin(ctx, out)) {
      return;
    }
    if (options_.credentials) {
      out.add(kAllowCredentials, "true");
    }
    if (decision == kAllowed) {
      if (!options_.expose_headers.empty()) {
        out.add(kExposeHeaders, options_.expose_headers);
      }
      return;
    }
    write_preflight(*ctx.request_headers, out);
  }

 private:
  // The Access-Control-Allow-Origin answer for an allowed origin (see
  // kAnswerStar / kAnswerEcho), or nullopt when the origin is not allowed.
  std::optional<int64_t> answer_for(std::string_view origin) const {
    if (options_.any_origin && !options_.credentials) {
      return kAnswerStar;
    }
    auto parts = parse_origin(origin);
    if (!parts) {
      return std::nullopt;  // "null" and anything malformed
    }
    if (options_.any_origin) {
      return kAnswerEcho;  // Fetch: with credentials "*" is refused; echo
    }
    for (size_t i = 0; i < options_.origins.size(); ++i) {
      const OriginRule& rule = options_.origins[i];
      if (rule.matches(*parts)) {
        return rule.wildcard ? kAnswerEcho : static_cast<int64_t>(i + 1);
      }
    }
    return std::nullopt;
  }

  bool write_allow_origin(const RequestContext& ctx, http::HeaderList& out) const {
    const int64_t answer = ctx.state->b;
    if (answer == kAnswerStar) {
      out.add(kAllowOrigin, "*");
      return true;
    }
    if (answer >= 1) {
      out.add(kAllowOrigin, options_.origins[static_cast<size_t>(answer - 1)].text);
      return true;
    }
    // Echo what was sent, checked again: a later filter could have edited
    // the request's Origin, and an unchecked echo would allow anything.
    auto origin = ctx.request_headers->get("Origin");
    if (!origin || answer_for(*origin) != kAnswerEcho) {
      return false;
    }
    out.add(kAllowOrigin, *origin);
    return true;
  }

  void write_preflight(const http::HeaderList& request, http::HeaderList& out) const {
    if (options_.reflect_methods) {
      auto method = request.get(kRequestMethod);
      if (method && is_header_name(*method)) {
        out.add(kAllowMethods, *method);
      }
    } else {
      out.add(kAllowMethods, options_.allow_methods);
    }
    if (options_.reflect_headers) {
      auto asked = request.get(kRequestHeaders);
      if (asked && !http::trim_ows(*asked).empty() && is_token_list(*asked)) {
        out.add(kAllowHeaders, *asked);
      }
    } else if (!options_.allow_headers.empty()) {
      out.add(kAllowHeaders, options_.allow_headers);
    }
    out.add(kMaxAge, options_.max_age);
  }

  const Options options_;
  const bool varies_;
};

}  // namespace

std::unique_ptr<Filter> make_cors_filter(BuildContext& ctx) {
  auto options = read_options(ctx);
  if (!options) {
    return nullptr;
  }
  return std::make_unique<CorsFilter>(std::move(*options));
}

}  // namespace ward::filters
