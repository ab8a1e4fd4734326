#include "filters/security_headers.h"

#include <string>
#include <utility>
#include <vector>

#include "filters/headers.h"

namespace ward::filters {

namespace {

constexpr std::string_view kOverride = "override";
constexpr std::string_view kHideServer = "hide_server";
constexpr std::string_view kHsts = "Strict-Transport-Security";

struct SecurityHeader {
  std::string name;
  std::string value;
  // RFC 6797 7.2: HSTS is sent over secure transport only; on plain HTTP a
  // browser ignores it, and a MITM could strip or forge it anyway.
  bool tls_only = false;
};

struct Options {
  std::vector<SecurityHeader> headers;
  bool override = false;
  bool hide_server = false;
};

std::vector<SecurityHeader> default_headers() {
  return {
      {std::string(kHsts), "max-age=31536000; includeSubDomains", true},
      {"X-Frame-Options", "SAMEORIGIN", false},
      {"X-Content-Type-Options", "nosniff", false},
      {"X-XSS-Protection", "1; mode=block", false},
      {"Referrer-Policy", "strict-origin-when-cross-origin", false},
  };
}

SecurityHeader* find_header(std::vector<SecurityHeader>& headers, std::string_view name) {
  for (auto& h : headers) {
    if (http::iequals(h.name, name)) {
      return &h;
    }
  }
  return nullptr;
}

// `override` / `hide_server`: a null value keeps the default.
bool read_flag(config::Reader& reader, const config::MapEntry& e, bool& out) {
  if (e.value.IsNull()) {
    return true;
  }
  auto value = reader.bool_of(e.value, e.value.Mark(), "security_headers." + e.key);
  if (value) {
    out = *value;
  }
  return value.has_value();
}

// One `Name: value` (or `Name: null`) entry applied to the defaults.
bool read_header(config::Reader& reader, const config::MapEntry& e,
                 std::vector<SecurityHeader>& headers, std::vector<config::MapEntry>& seen) {
  const std::string path = "security_headers." + e.key;
  // `Override: true` is surely the option misspelt, not a header to send.
  if (http::iequals(e.key, kOverride) || http::iequals(e.key, kHideServer)) {
    reader.error(e.key_mark, "security_headers: " + config::Reader::quote(e.key) +
                                 " is not a header; option names are lower case");
    return false;
  }
  if (!check_header_name(reader, e.key, e.key_mark, "security_headers")) {
    return false;
  }
  for (const auto& other : seen) {
    if (http::iequals(other.key, e.key)) {
      reader.error(e.key_mark, "security_headers: duplicate header " +
                                   config::Reader::quote(e.key) + " (first at line " +
                                   std::to_string(other.key_mark.line + 1) + ")");
      return false;
    }
  }
  seen.push_back(e);
  SecurityHeader* existing = find_header(headers, e.key);
  if (e.value.IsNull()) {
    if (existing == nullptr) {
      reader.error(e.key_mark, path + ": null removes a default header, and " +
                                   config::Reader::quote(e.key) + " is not one");
      return false;
    }
    headers.erase(headers.begin() + (existing - headers.data()));
    return true;
  }
  auto value = read_header_value(reader, e.value, e.value.Mark(), path);
  if (!value) {
    return false;
  }
  if (existing != nullptr) {
    existing->name = e.key;  // the spelling the user chose
    existing->value = std::move(*value);
  } else {
    headers.push_back({e.key, std::move(*value), http::iequals(e.key, kHsts)});
  }
  return true;
}

// The options are one map mixing two option names with header names, so
// they are read entry by entry rather than as a Section of known keys.
std::optional<Options> read_options(config::Reader& reader, const YAML::Node& node) {
  Options options;
  options.headers = default_headers();
  if (node.IsNull()) {
    return options;
  }
  if (!node.IsMap()) {
    reader.error(node.Mark(),
                 "security_headers: expected a map, got " + config::Reader::describe(node));
    return std::nullopt;
  }
  auto entries = reader.entries(node);
  bool ok = entries.size() == node.size();  // entries() reported a repeated key
  std::vector<config::MapEntry> seen;
  for (const auto& e : entries) {
    if (e.key == kOverride) {
      ok = read_flag(reader, e, options.override) && ok;
    } else if (e.key == kHideServer) {
      ok = read_flag(reader, e, options.hide_server) && ok;
    } else {
      ok = read_header(reader, e, options.headers, seen) && ok;
    }
  }
  if (!ok) {
    return std::nullopt;
  }
  return options;
}

class SecurityHeadersFilter : public Filter {
 public:
  explicit SecurityHeadersFilter(Options options) : options_(std::move(options)) {}

  FilterStatus on_request(RequestContext& /*ctx*/) override { return FilterStatus::next; }

  // Runs for local replies too (ctx.local_reply): a 429 or 404 is a page a
  // browser renders, and framing or sniffing it is as possible as any other.
  void on_response(RequestContext& ctx) override {
    http::HeaderList& fields = *ctx.response_headers;
    if (options_.hide_server) {
      // Product and version tokens only help an attacker pick an exploit.
      fields.remove_if([](const http::HeaderList::Field& f) {
        return http::iequals(f.name, "Server") || http::iequals(f.name, "X-Powered-By");
      });
    }
    for (const auto& h : options_.headers) {
      if (h.tls_only && !ctx.tls) {
        continue;
      }
      if (options_.override) {
        fields.set(h.name, h.value);
      } else if (!fields.get(h.name)) {
        fields.add(h.name, h.value);
      }
    }
  }

 private:
  const Options options_;
};

}  // namespace

std::unique_ptr<Filter> make_security_headers_filter(BuildContext& ctx) {
  auto options = read_options(ctx.reader, ctx.spec.options);
  if (!options) {
    return nullptr;
  }
  return std::make_unique<SecurityHeadersFilter>(std::move(*options));
}

}  // namespace ward::filters
