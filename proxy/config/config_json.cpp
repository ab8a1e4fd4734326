#include "proxy/config/config_json.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <string_view>

#include "proxy/util/json.h"

namespace ward::config {

namespace {

constexpr std::string_view kRedacted = "<redacted>";

// Option names that hold credentials. Substrings, case-insensitive, so
// "keys", "keys_file", "client_secret", "X-Api-Key" all match.
constexpr std::array<std::string_view, 5> kSecretWords{"key", "secret", "token", "password",
                                                       "authorization"};

bool is_secret_name(std::string_view name) {
  std::string lowered(name);
  std::transform(lowered.begin(), lowered.end(), lowered.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return std::any_of(kSecretWords.begin(), kSecretWords.end(), [&](std::string_view word) {
    return lowered.find(word) != std::string::npos;
  });
}

// True if `s` is a JSON number as written (RFC 8259 section 6), so a plain
// YAML `burst: 10` shows as 10 and not "10".
bool is_json_number(std::string_view s) {
  size_t i = 0;
  auto digits = [&] {
    size_t start = i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
      ++i;
    }
    return i - start;
  };
  if (i < s.size() && s[i] == '-') {
    ++i;
  }
  size_t int_start = i;
  size_t n = digits();
  if (n == 0 || (n > 1 && s[int_start] == '0')) {
    return false;
  }
  if (i < s.size() && s[i] == '.') {
    ++i;
    if (digits() == 0) {
      return false;
    }
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
      ++i;
    }
    if (digits() == 0) {
      return false;
    }
  }
  return i == s.size();
}

// Builds one JSON object at a time; keys are always plain ASCII here.
class JsonWriter {
 public:
  std::string& out() { return out_; }

  void begin_object() { open('{'); }
  void end_object() { close('}'); }
  void begin_array() { open('['); }
  void end_array() { close(']'); }

  void key(std::string_view k) {
    comma();
    util::json_string_append(out_, k);
    out_.push_back(':');
    after_key_ = true;
  }
  void string(std::string_view v) {
    comma();
    util::json_string_append(out_, v);
  }
  void raw(std::string_view v) {
    comma();
    out_ += v;
  }
  void number(uint64_t v) { raw(std::to_string(v)); }
  void boolean(bool v) { raw(v ? "true" : "false"); }
  void null() { raw("null"); }
  // An optional string: "" is written as null.
  void string_or_null(std::string_view v) {
    if (v.empty()) {
      null();
    } else {
      string(v);
    }
  }

 private:
  void open(char c) {
    comma();
    out_.push_back(c);
    first_ = true;
  }
  void close(char c) {
    out_.push_back(c);
    first_ = false;
  }
  void comma() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (!first_) {
      out_.push_back(',');
    }
    first_ = false;
  }

  std::string out_;
  bool first_ = true;
  bool after_key_ = false;
};

std::string duration_text(Duration d) {
  auto ms = d.count();
  if (ms != 0 && ms % 3'600'000 == 0) {
    return std::to_string(ms / 3'600'000) + "h";
  }
  if (ms != 0 && ms % 60'000 == 0) {
    return std::to_string(ms / 60'000) + "m";
  }
  if (ms % 1000 == 0) {
    return std::to_string(ms / 1000) + "s";
  }
  return std::to_string(ms) + "ms";
}

std::string_view balance_text(Balance b) {
  switch (b) {
    case Balance::least_conn:
      return "least_conn";
    case Balance::random_two:
      return "random_two";
    case Balance::ip_hash:
      return "ip_hash";
    case Balance::round_robin:
      break;
  }
  return "round_robin";
}

// Filter options as JSON. The loader bounded the tree's depth and size and
// made every key a scalar, so plain recursion is safe.
void write_yaml(JsonWriter& w, const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      w.begin_object();
      for (const auto& kv : node) {
        std::string name = kv.first.Scalar();
        w.key(name);
        if (is_secret_name(name)) {
          w.string(kRedacted);
        } else {
          write_yaml(w, kv.second);
        }
      }
      w.end_object();
      break;
    case YAML::NodeType::Sequence:
      w.begin_array();
      for (const auto& item : node) {
        write_yaml(w, item);
      }
      w.end_array();
      break;
    case YAML::NodeType::Scalar: {
      const std::string& s = node.Scalar();
      // Only plain scalars ("?" tag) are numbers or booleans; "10" quoted is
      // a string in YAML too.
      bool plain = node.Tag() == "?";
      if (plain && (s == "true" || s == "false" || is_json_number(s))) {
        w.raw(s);
      } else {
        w.string(s);
      }
      break;
    }
    default:
      w.null();
      break;
  }
}

void write_filters(JsonWriter& w, const std::vector<FilterSpec>& filters) {
  w.begin_array();
  for (const auto& f : filters) {
    w.begin_object();
    w.key(f.name);
    write_yaml(w, f.options);
    w.end_object();
  }
  w.end_array();
}

void write_logging(JsonWriter& w, const LoggingConfig& logging) {
  w.key("logging");
  w.begin_object();
  w.key("level");
  w.string(logging.level);
  w.key("error_log");
  w.string(logging.error_log);
  w.key("access_log");
  w.begin_object();
  w.key("path");
  w.string(logging.access_log.path);
  w.key("format");
  w.string(logging.access_log.format == AccessLogFormat::combined ? "combined" : "json");
  w.key("max_size");
  w.number(logging.access_log.max_size);
  w.key("max_files");
  w.number(logging.access_log.max_files);
  w.end_object();
  w.end_object();
}

void write_limits(JsonWriter& w, const Limits& l) {
  w.key("limits");
  w.begin_object();
  for (auto [name, d] : {std::pair{"header_timeout", l.header_timeout},
                         {"idle_timeout", l.idle_timeout},
                         {"request_timeout", l.request_timeout},
                         {"body_timeout", l.body_timeout},
                         {"drain_timeout", l.drain_timeout}}) {
    w.key(name);
    w.string(duration_text(d));
  }
  w.key("max_header_size");
  w.number(l.max_header_size);
  w.key("max_uri_size");
  w.number(l.max_uri_size);
  w.key("max_body_size");
  w.number(l.max_body_size);
  w.key("max_connections");
  w.number(l.max_connections);
  w.key("max_concurrent_streams");
  w.number(l.max_concurrent_streams);
  w.end_object();
}

void write_listener_tls(JsonWriter& w, const ListenerTls& tls) {
  w.begin_object();
  w.key("certificates");
  w.begin_array();
  for (const auto& c : tls.certificates) {
    w.begin_object();
    w.key("cert");
    w.string(c.cert);
    // The key's path is not a secret (its contents are, and are never read here).
    w.key("key");
    w.string(c.key);
    w.end_object();
  }
  w.end_array();
  w.key("min_version");
  w.string(tls.min_version);
  w.key("ciphers");
  w.string(tls.ciphers);
  w.key("alpn");
  w.begin_array();
  for (const auto& p : tls.alpn) {
    w.string(p);
  }
  w.end_array();
  w.key("session_tickets");
  w.boolean(tls.session_tickets);
  w.key("client_ca");
  w.string_or_null(tls.client_ca);
  w.end_object();
}

void write_listeners(JsonWriter& w, const std::vector<Listener>& listeners) {
  w.key("listeners");
  w.begin_array();
  for (const auto& l : listeners) {
    w.begin_object();
    w.key("name");
    w.string(l.name);
    w.key("address");
    w.string(l.address.text);
    w.key("redirect_https");
    if (l.redirect_https) {
      w.number(*l.redirect_https);
    } else {
      w.null();
    }
    w.key("proxy_protocol");
    w.boolean(l.proxy_protocol);
    w.key("tls");
    if (l.tls) {
      write_listener_tls(w, *l.tls);
    } else {
      w.null();
    }
    w.end_object();
  }
  w.end_array();
}

void write_routes(JsonWriter& w, const std::vector<Route>& routes) {
  w.key("routes");
  w.begin_array();
  for (const auto& r : routes) {
    w.begin_object();
    w.key("name");
    w.string(r.name);
    w.key("match");
    w.begin_object();
    w.key("host");
    w.string_or_null(r.match.host);
    w.key("path_prefix");
    w.string(r.match.path_prefix);
    w.key("methods");
    w.begin_array();
    for (const auto& m : r.match.methods) {
      w.string(m);
    }
    w.end_array();
    w.end_object();
    w.key("upstream");
    w.string(r.upstream);
    w.key("strip_prefix");
    w.boolean(r.strip_prefix);
    w.key("filters");
    write_filters(w, r.filters);
    w.end_object();
  }
  w.end_array();
}

void write_health_check(JsonWriter& w, const HealthCheck& hc) {
  w.begin_object();
  w.key("path");
  w.string(hc.path);
  w.key("interval");
  w.string(duration_text(hc.interval));
  w.key("timeout");
  w.string(duration_text(hc.timeout));
  w.key("healthy_threshold");
  w.number(hc.healthy_threshold);
  w.key("unhealthy_threshold");
  w.number(hc.unhealthy_threshold);
  w.key("expect_status");
  w.string(hc.expect_status_text());
  w.end_object();
}

void write_upstream(JsonWriter& w, const Upstream& u) {
  w.begin_object();
  w.key("balance");
  w.string(balance_text(u.balance));
  w.key("servers");
  w.begin_array();
  for (const auto& s : u.servers) {
    w.begin_object();
    w.key("address");
    w.string(s.address.text);
    w.key("weight");
    w.number(s.weight);
    w.end_object();
  }
  w.end_array();
  w.key("dns_refresh");
  w.string(duration_text(u.dns_refresh));
  w.key("connect_timeout");
  w.string(duration_text(u.connect_timeout));
  w.key("keepalive");
  w.number(u.keepalive);
  w.key("retries");
  w.number(u.retries);
  w.key("tls");
  w.boolean(u.tls);
  w.key("tls_ca");
  w.string_or_null(u.tls_ca);
  w.key("tls_server_name");
  w.string_or_null(u.tls_server_name);
  w.key("health_check");
  if (u.health_check) {
    write_health_check(w, *u.health_check);
  } else {
    w.null();
  }
  w.key("passive");
  if (u.passive) {
    w.begin_object();
    w.key("consecutive_failures");
    w.number(u.passive->consecutive_failures);
    w.key("ejection_time");
    w.string(duration_text(u.passive->ejection_time));
    w.end_object();
  } else {
    w.null();
  }
  w.end_object();
}

}  // namespace

std::string to_json(const Config& config, uint64_t generation) {
  JsonWriter w;
  w.begin_object();
  w.key("generation");
  w.number(generation);
  w.key("source");
  w.string(config.source_path);
  w.key("workers");
  w.number(config.workers);
  w.key("admin");
  w.begin_object();
  w.key("address");
  w.string(config.admin.address.text);
  w.end_object();
  write_logging(w, config.logging);
  write_limits(w, config.limits);
  write_listeners(w, config.listeners);
  w.key("trusted_proxies");
  w.begin_array();
  for (const auto& c : config.trusted_proxies) {
    w.string(c.to_string());
  }
  w.end_array();
  w.key("filters");
  write_filters(w, config.filters);
  write_routes(w, config.routes);
  w.key("upstreams");
  w.begin_object();
  for (const auto& u : config.upstreams) {
    w.key(u.name);
    write_upstream(w, u);
  }
  w.end_object();
  w.end_object();
  return std::move(w.out());
}

}  // namespace ward::config
