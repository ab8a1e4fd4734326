#include "proxy/config/loader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <yaml-cpp/eventhandler.h>

#include "proxy/config/env_subst.h"
#include "proxy/config/reader.h"
#include "proxy/config/units.h"

namespace ward::config {

const std::vector<std::string>& catalogue_filters() {
  static const std::vector<std::string> kNames = {"rate_limit", "security_headers", "cors",
                                                  "ip_access",  "api_key",          "request_id",
                                                  "compress",   "headers"};
  return kNames;
}

namespace {

// Bounds on the document's shape. A config is a few hundred nodes; these stop
// a hostile or broken file (a recursive alias `&a [*a]`, "billion laughs"
// alias fan-out) from making any later walk unbounded.
constexpr int kMaxDepth = 64;
constexpr size_t kMaxNodes = 100'000;
// A config file is kilobytes; refuse to slurp something that is clearly not one.
constexpr size_t kMaxFileSize = 16 * kMiB;
constexpr uint32_t kMaxWorkers = 1024;

const std::vector<std::string> kLogLevels{"trace", "debug", "info", "warn", "error"};
const std::vector<std::string> kAccessLogFormats{"json", "combined"};
const std::vector<std::string> kBalances{"round_robin", "least_conn", "random_two", "ip_hash"};
const std::vector<std::string> kTlsVersions{"1.2", "1.3"};
const std::vector<std::string> kAlpnProtocols{"h2", "http/1.1"};

std::string index_path(const std::string& path, size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return s;
}

// RFC 9110 5.6.2 token characters: what a method may be made of.
bool is_token(std::string_view s) {
  if (s.empty()) {
    return false;
  }
  for (unsigned char c : s) {
    bool ok = std::isalnum(c) || std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) !=
                                     std::string_view::npos;
    if (!ok) {
      return false;
    }
  }
  return true;
}

// Why `path` cannot be read, or nullopt if it can. Relative paths are relative
// to the working directory, as the server will open them.
std::optional<std::string> unreadable_reason(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return std::strerror(errno);
  }
  struct stat st {};
  std::optional<std::string> reason;
  if (::fstat(fd, &st) != 0) {
    reason = std::strerror(errno);
  } else if (S_ISDIR(st.st_mode)) {
    reason = std::strerror(EISDIR);
  }
  ::close(fd);
  return reason;
}

// A key under which two addresses collide when bound. Port 0 never collides
// (each bind gets its own ephemeral port); every spelling of "all interfaces"
// is the same, as are equal IPs written differently.
std::optional<std::string> bind_key(const Address& a) {
  if (a.port == 0) {
    return std::nullopt;
  }
  std::string host = a.host;
  if (auto ip = util::IpAddress::parse(host)) {
    host = ip->to_string();
  }
  if (host.empty() || host == "0.0.0.0" || host == "::") {
    host = "*";
  }
  return lower(host) + "|" + std::to_string(a.port);
}

std::string server_key(const Address& a) {
  std::string host = a.host;
  if (auto ip = util::IpAddress::parse(host)) {
    host = ip->to_string();
  }
  return lower(host) + "|" + std::to_string(a.port);
}

class SchemaLoader {
 public:
  SchemaLoader(const std::string& file, const LoadOptions& options)
      : reader_(file), options_(options) {
    config_.source_path = file;
  }

  LoadResult run(std::string_view yaml);

 private:
  // Pass 1: shape limits, ${VAR} substitution, non-string keys. Returns false
  // when the document is too big or deep to be walked any further.
  bool prepare(YAML::Node& node, int depth, bool is_key);

  void read_root(const YAML::Node& root);
  void read_workers(const Section& root);
  void read_admin(const Section& root);
  void read_logging(const Section& root);
  void read_limits(const Section& root);
  void read_listeners(const Section& root);
  // Where a listener's name and address are, for duplicate messages.
  struct ListenerMarks {
    YAML::Mark name;
    YAML::Mark address;
  };
  std::optional<Listener> read_listener(const YAML::Node& node, const std::string& path,
                                        ListenerMarks& marks);
  std::optional<ListenerTls> read_listener_tls(const Section& listener);
  void read_trusted_proxies(const Section& root);
  std::vector<FilterSpec> read_filters(const Section& parent, std::string_view key);
  void read_routes(const Section& root);
  std::optional<Route> read_route(const YAML::Node& node, const YAML::Mark& mark,
                                  const std::string& path, size_t index);
  void read_route_match(const Section& route, RouteMatch& match);
  void read_upstreams(const Section& root);
  std::optional<Upstream> read_upstream(const MapEntry& entry, const std::string& path);
  void read_servers(const Section& s, Upstream& upstream);
  std::optional<ServerConfig> read_server(const YAML::Node& node, const std::string& path);
  std::optional<HealthCheck> read_health_check(const Section& upstream);
  std::optional<Passive> read_passive(const Section& upstream);
  void check_routes_upstreams();

  // An address (CONFIG.md's address unit), reporting a bad one at `mark`.
  std::optional<Address> address_of(const YAML::Node& node, const YAML::Mark& mark,
                                    const std::string& path);
  // Listener and admin addresses are bound, so they must be IP literals.
  std::optional<Address> bind_address_of(const YAML::Node& node, const YAML::Mark& mark,
                                         const std::string& path);
  // A file the server will open: reported now rather than at start.
  void check_readable(const std::string& file, const YAML::Mark& mark, const std::string& path);
  // "<key> is not supported yet" when `enabled` is false.
  bool gate(bool enabled, const Section& s, std::string_view key);

  Reader reader_;
  const LoadOptions& options_;
  Config config_;
  size_t nodes_seen_ = 0;
  std::set<int> substituted_;  // positions of scalars already expanded
  std::vector<std::pair<std::string, YAML::Mark>> route_upstream_refs_;
  bool upstreams_read_ = false;
};

bool SchemaLoader::prepare(YAML::Node& node, int depth, bool is_key) {
  if (depth > kMaxDepth) {
    reader_.error(node.Mark(), "the document nests deeper than " + std::to_string(kMaxDepth) +
                                   " levels (a recursive alias?)");
    return false;
  }
  if (++nodes_seen_ > kMaxNodes) {
    reader_.error(node.Mark(), "the document has more than " + std::to_string(kMaxNodes) +
                                   " values once aliases are expanded");
    return false;
  }
  if (node.IsScalar()) {
    // An alias reaches the same scalar twice; expanding twice would expand a
    // variable's value as if it were config text.
    if (is_key || !substituted_.insert(node.Mark().pos).second) {
      return true;
    }
    const std::string& text = node.Scalar();
    if (text.find("${") == std::string::npos) {
      return true;
    }
    std::string error;
    if (auto expanded = expand_env(text, options_.env, error)) {
      node = *expanded;
    } else {
      reader_.error(node.Mark(), error);
      reader_.silence(node.Mark());
    }
    return true;
  }
  if (node.IsSequence()) {
    for (auto item : node) {
      if (!prepare(item, depth + 1, false)) {
        return false;
      }
    }
  } else if (node.IsMap()) {
    for (auto kv : node) {
      if (!kv.first.IsScalar()) {
        reader_.error(kv.first.Mark(), "map keys must be strings");
      }
      if (!prepare(kv.first, depth + 1, true) || !prepare(kv.second, depth + 1, false)) {
        return false;
      }
    }
  }
  return true;
}

// Counts the documents of a stream, and notices when yaml-cpp stops making
// progress: 0.7's parser starts a new empty document at the same place
// forever on a stray ',' (jbeder/yaml-cpp#1040), which is why YAML::LoadAll
// is not used.
class DocumentCounter : public YAML::EventHandler {
 public:
  // "','" or "byte 0xfe" for the byte at `pos`, for a syntax error message.
  static std::string describe_byte(const std::string& text, int pos) {
    if (pos < 0 || static_cast<size_t>(pos) >= text.size()) {
      return "end of input";
    }
    auto c = static_cast<unsigned char>(text[static_cast<size_t>(pos)]);
    if (c < 0x20 || c >= 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02x", c);
      return std::string("byte ") + hex;
    }
    return "'" + std::string(1, static_cast<char>(c)) + "'";
  }

  // Parses the whole stream. Returns the number of documents up to the last
  // one with content (so an empty trailing `---` does not count), or reports
  // the syntax error and returns nullopt.
  std::optional<size_t> count(const std::string& text, Reader& reader) {
    std::istringstream stream(text);
    YAML::Parser parser(stream);
    constexpr size_t kMaxDocuments = 1000;
    try {
      for (size_t i = 0; i < kMaxDocuments; ++i) {
        has_content_ = false;
        last_null_ = YAML::Mark::null_mark();
        int previous = start_.pos;
        if (!parser.HandleNextDocument(*this)) {
          break;
        }
        if (i > 0 && start_.pos <= previous) {
          YAML::Mark at = last_null_.is_null() ? start_ : last_null_;
          reader.error(at, "unexpected " + describe_byte(text, at.pos));
          return std::nullopt;
        }
        if (i == 1) {
          second_ = start_;
        }
        if (has_content_) {
          documents_ = i + 1;  // an empty first document still counts
        }
      }
    } catch (const YAML::Exception& e) {
      reader.error(e.mark, e.msg);
      return std::nullopt;
    }
    return documents_;
  }
  const YAML::Mark& second_start() const { return second_; }

  void OnDocumentStart(const YAML::Mark& mark) override { start_ = mark; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { last_null_ = mark; }
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override { has_content_ = true; }
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {
    has_content_ = true;
  }
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    has_content_ = true;
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    has_content_ = true;
  }
  void OnMapEnd() override {}

 private:
  YAML::Mark start_ = YAML::Mark::null_mark();
  YAML::Mark second_;
  YAML::Mark last_null_;
  size_t documents_ = 0;
  bool has_content_ = false;
};

LoadResult SchemaLoader::run(std::string_view yaml) {
  std::string text(yaml);
  DocumentCounter counter;
  auto documents = counter.count(text, reader_);
  if (documents && *documents > 1) {
    reader_.error(counter.second_start(),
                  "expected one YAML document, found " + std::to_string(*documents));
  }
  if (!reader_.has_errors()) {
    YAML::Node root;
    try {
      root = YAML::Load(text);
    } catch (const YAML::Exception& e) {
      reader_.error(e.mark, e.msg);
    }
    if (!reader_.has_errors() && prepare(root, 0, false)) {
      read_root(root);
    }
  }
  LoadResult result;
  result.errors = reader_.take_errors();
  if (result.errors.empty()) {
    result.config = std::make_shared<const Config>(std::move(config_));
  }
  return result;
}

void SchemaLoader::read_root(const YAML::Node& root) {
  Section s = reader_.section(root, YAML::Mark(), "",
                              {"workers", "admin", "logging", "limits", "listeners",
                               "trusted_proxies", "filters", "routes", "upstreams"});
  read_workers(s);
  read_admin(s);
  read_logging(s);
  read_limits(s);
  read_listeners(s);
  read_trusted_proxies(s);
  config_.filters = read_filters(s, "filters");
  read_upstreams(s);
  read_routes(s);
  check_routes_upstreams();
}

void SchemaLoader::read_workers(const Section& root) {
  uint32_t cpus =
      options_.cpu_count != 0 ? options_.cpu_count : std::thread::hardware_concurrency();
  config_.workers = std::clamp<uint32_t>(cpus, 1, kMaxWorkers);
  const YAML::Node* v = root.get("workers");
  if (v == nullptr || (v->IsScalar() && v->Scalar() == "auto")) {
    return;
  }
  if (!v->IsScalar() || v->Scalar().find_first_not_of("0123456789") != std::string::npos) {
    reader_.error(root.value_mark("workers"), "workers: expected 'auto' or a number from 1 to " +
                                                  std::to_string(kMaxWorkers) + ", got " +
                                                  Reader::describe(*v));
    return;
  }
  reader_.read(root, "workers", config_.workers, 1, kMaxWorkers);
}

void SchemaLoader::read_admin(const Section& root) {
  config_.admin.address = *parse_address("127.0.0.1:9901");
  Section s = reader_.section(root.node("admin"), root.key_mark("admin"), "admin", {"address"});
  if (const YAML::Node* v = s.get("address")) {
    if (auto a = bind_address_of(*v, s.value_mark("address"), s.child("address"))) {
      config_.admin.address = *a;
    }
  }
}

void SchemaLoader::read_logging(const Section& root) {
  auto& logging = config_.logging;
  Section s = reader_.section(root.node("logging"), root.key_mark("logging"), "logging",
                              {"level", "error_log", "access_log"});
  reader_.read_choice(s, "level", logging.level, kLogLevels);
  reader_.read(s, "error_log", logging.error_log);
  if (logging.error_log.empty()) {
    reader_.error(s.value_mark("error_log"), "logging.error_log: must not be empty");
  }

  auto& access = logging.access_log;
  Section a = reader_.section(s.node("access_log"), s.key_mark("access_log"), "logging.access_log",
                              {"path", "format", "max_size", "max_files"});
  reader_.read(a, "path", access.path);
  if (access.path.empty()) {
    reader_.error(a.value_mark("path"), "logging.access_log.path: must not be empty");
  }
  std::string format = "json";
  if (reader_.read_choice(a, "format", format, kAccessLogFormats)) {
    access.format = format == "combined" ? AccessLogFormat::combined : AccessLogFormat::json;
  }
  reader_.read_size(a, "max_size", access.max_size, 1);
  reader_.read(a, "max_files", access.max_files, 0, 1000);
}

void SchemaLoader::read_limits(const Section& root) {
  auto& l = config_.limits;
  Section s = reader_.section(root.node("limits"), root.key_mark("limits"), "limits",
                              {"header_timeout", "idle_timeout", "request_timeout", "body_timeout",
                               "drain_timeout", "max_header_size", "max_uri_size", "max_body_size",
                               "max_connections", "max_concurrent_streams"});
  // A zero timeout would fire at once; only the drain may be skipped entirely.
  reader_.read_duration(s, "header_timeout", l.header_timeout, 1ms);
  reader_.read_duration(s, "idle_timeout", l.idle_timeout, 1ms);
  reader_.read_duration(s, "request_timeout", l.request_timeout, 1ms);
  reader_.read_duration(s, "body_timeout", l.body_timeout, 1ms);
  reader_.read_duration(s, "drain_timeout", l.drain_timeout, 0ms);
  reader_.read_size(s, "max_header_size", l.max_header_size, 1);
  reader_.read_size(s, "max_uri_size", l.max_uri_size, 1);
  reader_.read_size(s, "max_body_size", l.max_body_size, 0);  // 0 = unlimited
  reader_.read(s, "max_connections", l.max_connections, 1, 10'000'000);
  // RFC 9113 6.5.2: SETTINGS_MAX_CONCURRENT_STREAMS is 32 bits; 0 would
  // refuse every stream.
  reader_.read(s, "max_concurrent_streams", l.max_concurrent_streams, 1, 1'000'000);
}

std::optional<Address> SchemaLoader::address_of(const YAML::Node& node, const YAML::Mark& mark,
                                                const std::string& path) {
  auto text = reader_.string_of(node, mark, path);
  if (!text) {
    return std::nullopt;
  }
  auto address = parse_address(*text);
  if (!address) {
    reader_.error(mark, path +
                            ": expected an address such as 127.0.0.1:8080, [::1]:8080 or "
                            ":8080, got " +
                            Reader::quote(*text));
  }
  return address;
}

std::optional<Address> SchemaLoader::bind_address_of(const YAML::Node& node, const YAML::Mark& mark,
                                                     const std::string& path) {
  auto address = address_of(node, mark, path);
  if (address && !address->host_is_ip) {
    reader_.error(mark, path + ": a listening address must be an IP address or ':PORT', got " +
                            Reader::quote(address->text));
    return std::nullopt;
  }
  return address;
}

void SchemaLoader::check_readable(const std::string& file, const YAML::Mark& mark,
                                  const std::string& path) {
  if (file.empty()) {
    reader_.error(mark, path + ": must not be empty");
  } else if (auto reason = unreadable_reason(file)) {
    reader_.error(mark, path + ": cannot read " + Reader::quote(file) + ": " + *reason);
  }
}

bool SchemaLoader::gate(bool enabled, const Section& s, std::string_view key) {
  if (!enabled) {
    reader_.error(s.key_mark(key), std::string(key) + " is not supported yet");
  }
  return enabled;
}

void SchemaLoader::read_listeners(const Section& root) {
  if (!reader_.require(root, "listeners")) {
    return;
  }
  auto items = reader_.list_of(*root.get("listeners"), root.value_mark("listeners"), "listeners");
  if (!items) {
    return;
  }
  if (items->empty()) {
    reader_.error(root.value_mark("listeners"), "listeners: at least one listener is required");
    return;
  }
  // name -> line, bind key -> who has it, for the duplicate messages.
  std::map<std::string, int> names;
  std::map<std::string, std::string> binds;
  if (auto key = bind_key(config_.admin.address)) {
    binds[*key] = "the admin address";
  }
  for (size_t i = 0; i < items->size(); ++i) {
    const YAML::Node& node = (*items)[i];
    std::string path = index_path("listeners", i);
    ListenerMarks marks;
    auto listener = read_listener(node, path, marks);
    if (!listener) {
      continue;
    }
    if (auto [it, fresh] = names.emplace(listener->name, marks.name.line + 1); !fresh) {
      reader_.error(marks.name, path + ".name: duplicate listener name " +
                                    Reader::quote(listener->name) + " (first at line " +
                                    std::to_string(it->second) + ")");
    }
    if (auto key = bind_key(listener->address)) {
      auto [it, fresh] = binds.emplace(*key, "listener " + Reader::quote(listener->name));
      if (!fresh) {
        reader_.error(marks.address, path + ".address: address " +
                                         Reader::quote(listener->address.text) +
                                         " is already used by " + it->second);
      }
    }
    config_.listeners.push_back(std::move(*listener));
  }
}

std::optional<Listener> SchemaLoader::read_listener(const YAML::Node& node, const std::string& path,
                                                    ListenerMarks& marks) {
  if (!node.IsMap()) {
    reader_.error(node.Mark(), path + ": expected a map, got " + Reader::describe(node));
    return std::nullopt;
  }
  Section s = reader_.section(node, node.Mark(), path,
                              {"name", "address", "redirect_https", "proxy_protocol", "tls"});
  Listener l;
  l.mark = reader_.mark_of(s.mark());
  marks.name = s.value_mark("name");
  marks.address = s.value_mark("address");
  bool ok = reader_.require(s, "name") && reader_.read(s, "name", l.name);
  if (ok && l.name.empty()) {
    reader_.error(marks.name, s.child("name") + ": must not be empty");
    ok = false;
  }
  if (reader_.require(s, "address")) {
    if (auto a = bind_address_of(*s.get("address"), marks.address, s.child("address"))) {
      l.address = *a;
    } else {
      ok = false;
    }
  } else {
    ok = false;
  }
  uint32_t redirect = 0;
  if (s.get("redirect_https") != nullptr && reader_.read(s, "redirect_https", redirect, 1, 65535)) {
    l.redirect_https = static_cast<uint16_t>(redirect);
  }
  reader_.read(s, "proxy_protocol", l.proxy_protocol);
  if (l.proxy_protocol) {
    gate(options_.features.proxy_protocol, s, "proxy_protocol");
  }
  if (s.has("tls")) {
    l.tls = read_listener_tls(s);
  }
  return ok ? std::optional(std::move(l)) : std::nullopt;
}

std::optional<ListenerTls> SchemaLoader::read_listener_tls(const Section& listener) {
  const YAML::Node* v = listener.get("tls");
  // `tls: false` says plainly "no TLS here"; accept it whatever is built.
  bool value = true;
  if (v != nullptr && v->IsScalar() && YAML::convert<bool>::decode(*v, value) && !value) {
    return std::nullopt;
  }
  if (!gate(options_.features.tls, listener, "tls")) {
    return std::nullopt;
  }
  Section s = reader_.section(
      v ? *v : YAML::Node(), listener.key_mark("tls"), listener.child("tls"),
      {"certificates", "min_version", "ciphers", "alpn", "session_tickets", "client_ca"});
  ListenerTls tls;
  if (reader_.require(s, "certificates")) {
    std::string path = s.child("certificates");
    auto items = reader_.list_of(*s.get("certificates"), s.value_mark("certificates"), path);
    if (items && items->empty()) {
      reader_.error(s.value_mark("certificates"), path + ": at least one certificate is required");
    }
    for (size_t i = 0; items && i < items->size(); ++i) {
      const YAML::Node& item = (*items)[i];
      if (!item.IsMap()) {
        reader_.error(item.Mark(), index_path(path, i) +
                                       ": expected a map with cert and key, got " +
                                       Reader::describe(item));
        continue;
      }
      Section c = reader_.section(item, item.Mark(), index_path(path, i), {"cert", "key"});
      TlsCertificate cert;
      cert.mark = reader_.mark_of(item.Mark());
      if (reader_.require(c, "cert") && reader_.read(c, "cert", cert.cert)) {
        check_readable(cert.cert, c.value_mark("cert"), c.child("cert"));
      }
      if (reader_.require(c, "key") && reader_.read(c, "key", cert.key)) {
        check_readable(cert.key, c.value_mark("key"), c.child("key"));
      }
      tls.certificates.push_back(std::move(cert));
    }
  }
  reader_.read_choice(s, "min_version", tls.min_version, kTlsVersions);
  reader_.read(s, "ciphers", tls.ciphers);
  if (tls.ciphers.empty()) {
    reader_.error(s.value_mark("ciphers"), s.child("ciphers") + ": must not be empty");
  }
  if (const YAML::Node* alpn = s.get("alpn")) {
    std::string path = s.child("alpn");
    if (auto items = reader_.list_of(*alpn, s.value_mark("alpn"), path)) {
      tls.alpn.clear();
      for (size_t i = 0; i < items->size(); ++i) {
        const YAML::Node& item = (*items)[i];
        auto name = reader_.string_of(item, item.Mark(), index_path(path, i));
        if (name && std::find(kAlpnProtocols.begin(), kAlpnProtocols.end(), *name) ==
                        kAlpnProtocols.end()) {
          reader_.error(item.Mark(), index_path(path, i) + ": unknown protocol " +
                                         Reader::quote(*name) + " (expected h2 or http/1.1)");
        } else if (name) {
          tls.alpn.push_back(*name);
        }
      }
      if (items->empty()) {
        reader_.error(s.value_mark("alpn"), path + ": at least one protocol is required");
      }
    }
  }
  reader_.read(s, "session_tickets", tls.session_tickets);
  if (reader_.read(s, "client_ca", tls.client_ca) && s.get("client_ca") != nullptr) {
    check_readable(tls.client_ca, s.value_mark("client_ca"), s.child("client_ca"));
  }
  return tls;
}

void SchemaLoader::read_trusted_proxies(const Section& root) {
  const YAML::Node* v = root.get("trusted_proxies");
  if (v == nullptr) {
    return;
  }
  auto items = reader_.list_of(*v, root.value_mark("trusted_proxies"), "trusted_proxies");
  for (size_t i = 0; items && i < items->size(); ++i) {
    const YAML::Node& item = (*items)[i];
    std::string path = index_path("trusted_proxies", i);
    auto text = reader_.string_of(item, item.Mark(), path);
    if (!text) {
      continue;
    }
    if (auto cidr = util::Cidr::parse(*text)) {
      config_.trusted_proxies.push_back(*cidr);
    } else {
      reader_.error(item.Mark(), path + ": expected a CIDR such as 10.0.0.0/8 or ::1/128, got " +
                                     Reader::quote(*text));
    }
  }
}

std::vector<FilterSpec> SchemaLoader::read_filters(const Section& parent, std::string_view key) {
  std::vector<FilterSpec> filters;
  const YAML::Node* v = parent.get(key);
  if (v == nullptr) {
    return filters;
  }
  std::string path = parent.child(key);
  auto items = reader_.list_of(*v, parent.value_mark(key), path);
  const auto& known = options_.features.filters;
  for (size_t i = 0; items && i < items->size(); ++i) {
    const YAML::Node& item = (*items)[i];
    std::string item_path = index_path(path, i);
    std::vector<MapEntry> entries;
    if (item.IsMap()) {
      entries = reader_.entries(item);
    }
    if (!item.IsMap() || item.size() != 1 || entries.size() != 1) {
      reader_.error(item.Mark(), item_path +
                                     ": a filter is a map with one key, its name, such as "
                                     "'- request_id: {}'; got " +
                                     Reader::describe(item));
      continue;
    }
    MapEntry& e = entries[0];
    if (std::find(known.begin(), known.end(), e.key) == known.end()) {
      const auto& catalogue = catalogue_filters();
      bool listed = std::find(catalogue.begin(), catalogue.end(), e.key) != catalogue.end();
      std::string message =
          "filter " + Reader::quote(e.key) + (listed ? " is not supported yet" : " is unknown");
      if (auto suggestion = closest_match(e.key, listed ? known : catalogue)) {
        message += " (did you mean " + Reader::quote(*suggestion) + "?)";
      }
      reader_.error(e.key_mark, message);
      continue;
    }
    FilterSpec spec;
    spec.name = e.key;
    spec.mark = reader_.mark_of(e.key_mark);
    if (e.value.IsNull()) {
      // `- request_id:` means the defaults, the same as `{}`: filters always
      // get a map to read their options from.
      spec.options = YAML::Node(YAML::NodeType::Map);
    } else if (e.value.IsMap()) {
      spec.options = e.value;
    } else {
      reader_.error(e.value.Mark(), item_path + "." + e.key + ": options must be a map, got " +
                                        Reader::describe(e.value));
      continue;
    }
    if (options_.features.check_filter) {
      options_.features.check_filter(spec, reader_);
    }
    filters.push_back(std::move(spec));
  }
  return filters;
}

void SchemaLoader::read_routes(const Section& root) {
  if (!reader_.require(root, "routes")) {
    return;
  }
  auto items = reader_.list_of(*root.get("routes"), root.value_mark("routes"), "routes");
  std::map<std::string, int> names;
  for (size_t i = 0; items && i < items->size(); ++i) {
    const YAML::Node& node = (*items)[i];
    std::string path = index_path("routes", i);
    auto route = read_route(node, node.Mark(), path, i);
    if (!route) {
      continue;
    }
    // Names label metrics and log lines; two routes under one name would
    // merge their numbers.
    if (auto [it, fresh] = names.emplace(route->name, route->mark.line); !fresh) {
      reader_.error(node.Mark(), path + ": duplicate route name " + Reader::quote(route->name) +
                                     " (first at line " + std::to_string(it->second) + ")");
    }
    config_.routes.push_back(std::move(*route));
  }
}

std::optional<Route> SchemaLoader::read_route(const YAML::Node& node, const YAML::Mark& mark,
                                              const std::string& path, size_t index) {
  if (!node.IsMap()) {
    reader_.error(mark, path + ": expected a map, got " + Reader::describe(node));
    return std::nullopt;
  }
  Section s =
      reader_.section(node, mark, path, {"name", "match", "upstream", "strip_prefix", "filters"});
  Route r;
  r.mark = reader_.mark_of(s.mark());
  r.name = "route" + std::to_string(index);
  bool ok = reader_.read(s, "name", r.name);
  if (ok && r.name.empty()) {
    reader_.error(s.value_mark("name"), s.child("name") + ": must not be empty");
    ok = false;
  }
  read_route_match(s, r.match);
  if (reader_.require(s, "upstream") && reader_.read(s, "upstream", r.upstream)) {
    route_upstream_refs_.emplace_back(r.upstream, s.value_mark("upstream"));
  }
  reader_.read(s, "strip_prefix", r.strip_prefix);
  r.filters = read_filters(s, "filters");
  return ok ? std::optional(std::move(r)) : std::nullopt;
}

void SchemaLoader::read_route_match(const Section& route, RouteMatch& match) {
  Section s = reader_.section(route.node("match"), route.key_mark("match"), route.child("match"),
                              {"host", "path_prefix", "methods"});
  std::string host;
  if (reader_.read(s, "host", host) && s.get("host") != nullptr) {
    host = lower(host);
    if (!host.empty() && host.back() == '.') {
      host.pop_back();  // a rooted name is the same host
    }
    std::string_view name = host;
    if (name.starts_with("*.")) {
      name.remove_prefix(2);
    }
    bool bad = name.empty() || name.find_first_of("*/ \t@?#") != std::string_view::npos;
    // A colon is only part of an IPv6 literal; "example.com:8080" would never
    // match since the request's port is ignored.
    if (!bad && name.find(':') != std::string_view::npos && !util::IpAddress::parse(name)) {
      bad = true;
    }
    if (bad) {
      reader_.error(s.value_mark("host"), s.child("host") +
                                              ": expected a host name such as api.example.com "
                                              "or *.example.com (no port), got " +
                                              Reader::quote(host));
    } else {
      match.host = host;
    }
  }
  if (reader_.read(s, "path_prefix", match.path_prefix) &&
      (match.path_prefix.empty() || match.path_prefix.front() != '/')) {
    reader_.error(
        s.value_mark("path_prefix"),
        s.child("path_prefix") + ": must start with '/', got " + Reader::quote(match.path_prefix));
  }
  if (const YAML::Node* v = s.get("methods")) {
    std::string path = s.child("methods");
    auto items = reader_.list_of(*v, s.value_mark("methods"), path);
    for (size_t i = 0; items && i < items->size(); ++i) {
      const YAML::Node& item = (*items)[i];
      auto method = reader_.string_of(item, item.Mark(), index_path(path, i));
      if (method && !is_token(*method)) {
        reader_.error(item.Mark(),
                      index_path(path, i) + ": not an HTTP method: " + Reader::quote(*method));
      } else if (method) {
        match.methods.push_back(upper(*method));
      }
    }
  }
}

void SchemaLoader::read_upstreams(const Section& root) {
  if (!reader_.require(root, "upstreams")) {
    return;
  }
  const YAML::Node& node = *root.get("upstreams");
  if (!node.IsMap()) {
    reader_.error(root.value_mark("upstreams"),
                  "upstreams: expected a map of names to upstreams, got " + Reader::describe(node));
    return;
  }
  upstreams_read_ = true;
  for (const auto& entry : reader_.entries(node)) {
    if (auto upstream = read_upstream(entry, "upstreams." + entry.key)) {
      config_.upstreams.push_back(std::move(*upstream));
    }
  }
}

std::optional<Upstream> SchemaLoader::read_upstream(const MapEntry& entry,
                                                    const std::string& path) {
  Upstream u;
  u.name = entry.key;
  u.mark = reader_.mark_of(entry.key_mark);
  if (u.name.empty()) {
    reader_.error(entry.key_mark, "upstreams: an upstream name must not be empty");
  }
  if (!entry.value.IsMap() && !entry.value.IsNull()) {
    reader_.error(entry.value.Mark(),
                  path + ": expected a map, got " + Reader::describe(entry.value));
    return std::nullopt;
  }
  Section s =
      reader_.section(entry.value, entry.key_mark, path,
                      {"balance", "servers", "dns_refresh", "connect_timeout", "keepalive",
                       "retries", "tls", "tls_ca", "tls_server_name", "health_check", "passive"});
  std::string balance = "round_robin";
  reader_.read_choice(s, "balance", balance, kBalances);
  u.balance = balance == "least_conn"   ? Balance::least_conn
              : balance == "random_two" ? Balance::random_two
              : balance == "ip_hash"    ? Balance::ip_hash
                                        : Balance::round_robin;
  read_servers(s, u);
  reader_.read_duration(s, "dns_refresh", u.dns_refresh, 1ms);
  reader_.read_duration(s, "connect_timeout", u.connect_timeout, 1ms);
  reader_.read(s, "keepalive", u.keepalive, 0, 100'000);
  reader_.read(s, "retries", u.retries, 0, 100);
  reader_.read(s, "tls", u.tls);
  if (u.tls) {
    gate(options_.features.upstream_tls, s, "tls");
  }
  if (reader_.read(s, "tls_ca", u.tls_ca) && s.get("tls_ca") != nullptr) {
    check_readable(u.tls_ca, s.value_mark("tls_ca"), s.child("tls_ca"));
  }
  reader_.read(s, "tls_server_name", u.tls_server_name);
  // Without `tls: true` these would be silently ignored: most likely a
  // forgotten line, and then traffic goes out in clear text.
  for (std::string_view key : {"tls_ca", "tls_server_name"}) {
    if (!u.tls && s.get(key) != nullptr) {
      reader_.error(s.key_mark(key), s.child(key) + ": has no effect without 'tls: true'");
    }
  }
  if (s.has("health_check") && gate(options_.features.health_checks, s, "health_check")) {
    u.health_check = read_health_check(s);
  }
  if (s.has("passive") && gate(options_.features.passive, s, "passive")) {
    u.passive = read_passive(s);
  }
  return u;
}

void SchemaLoader::read_servers(const Section& s, Upstream& upstream) {
  if (!reader_.require(s, "servers")) {
    return;
  }
  std::string path = s.child("servers");
  auto items = reader_.list_of(*s.get("servers"), s.value_mark("servers"), path);
  if (!items) {
    return;
  }
  if (items->empty()) {
    reader_.error(s.value_mark("servers"), path + ": at least one server is required");
    return;
  }
  std::map<std::string, std::string> seen;
  for (size_t i = 0; i < items->size(); ++i) {
    const YAML::Node& item = (*items)[i];
    auto server = read_server(item, index_path(path, i));
    if (!server) {
      continue;
    }
    if (auto [it, fresh] = seen.emplace(server_key(server->address), server->address.text);
        !fresh) {
      reader_.error(item.Mark(), index_path(path, i) + ": duplicate server " +
                                     Reader::quote(server->address.text) + " in upstream " +
                                     Reader::quote(upstream.name));
      continue;
    }
    upstream.servers.push_back(std::move(*server));
  }
}

std::optional<ServerConfig> SchemaLoader::read_server(const YAML::Node& node,
                                                      const std::string& path) {
  ServerConfig server;
  const YAML::Node* address_node = &node;
  YAML::Mark mark = node.Mark();
  std::string address_path = path;
  Section s;
  if (node.IsMap()) {
    s = reader_.section(node, node.Mark(), path, {"address", "weight"});
    if (!reader_.require(s, "address")) {
      return std::nullopt;
    }
    address_node = s.get("address");
    mark = s.value_mark("address");
    address_path = s.child("address");
    if (!reader_.read(s, "weight", server.weight, 1, 1'000'000)) {
      return std::nullopt;
    }
  } else if (!node.IsScalar()) {
    reader_.error(mark, path + ": expected an address or a map with 'address', got " +
                            Reader::describe(node));
    return std::nullopt;
  }
  auto address = address_of(*address_node, mark, address_path);
  if (!address) {
    return std::nullopt;
  }
  if (address->host.empty() || address->port == 0) {
    reader_.error(mark, address_path +
                            ": a server address needs a host and a port from 1 to "
                            "65535, got " +
                            Reader::quote(address->text));
    return std::nullopt;
  }
  if (!address->host_is_ip && !options_.features.dns) {
    reader_.error(mark,
                  "DNS server address " + Reader::quote(address->text) + " is not supported yet");
    return std::nullopt;
  }
  server.address = *address;
  return server;
}

std::optional<HealthCheck> SchemaLoader::read_health_check(const Section& upstream) {
  const YAML::Node* v = upstream.get("health_check");
  Section s = reader_.section(
      v ? *v : YAML::Node(), upstream.key_mark("health_check"), upstream.child("health_check"),
      {"path", "interval", "timeout", "healthy_threshold", "unhealthy_threshold", "expect_status"});
  HealthCheck hc;
  if (reader_.read(s, "path", hc.path)) {
    // It goes on the request line as it is: no byte that would end or split it.
    bool printable = std::all_of(hc.path.begin(), hc.path.end(), [](char c) {
      return static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f;
    });
    if (hc.path.empty() || hc.path.front() != '/') {
      reader_.error(s.value_mark("path"),
                    s.child("path") + ": must start with '/', got " + Reader::quote(hc.path));
    } else if (!printable) {
      reader_.error(s.value_mark("path"), s.child("path") +
                                              ": spaces and control bytes must be %-encoded, got " +
                                              Reader::quote(hc.path));
    }
  }
  reader_.read_duration(s, "interval", hc.interval, 1ms);
  reader_.read_duration(s, "timeout", hc.timeout, 1ms);
  reader_.read(s, "healthy_threshold", hc.healthy_threshold, 1, 1000);
  reader_.read(s, "unhealthy_threshold", hc.unhealthy_threshold, 1, 1000);
  if (const YAML::Node* status = s.get("expect_status")) {
    std::string text = status->IsScalar() ? status->Scalar() : "";
    std::string_view low = text;
    std::string_view high = text;
    if (size_t dash = text.find('-'); dash != std::string::npos) {
      low = std::string_view(text).substr(0, dash);
      high = std::string_view(text).substr(dash + 1);
    }
    auto parse_status = [](std::string_view t) -> std::optional<int> {
      auto n = t.size() == 3 ? parse_size(t) : std::nullopt;
      return n && *n >= 100 && *n <= 599 ? std::optional(static_cast<int>(*n)) : std::nullopt;
    };
    auto min = parse_status(low);
    auto max = parse_status(high);
    if (!min || !max || *min > *max) {
      reader_.error(s.value_mark("expect_status"),
                    s.child("expect_status") +
                        ": expected a status such as 200 or a range such as 200-399, got " +
                        Reader::describe(*status));
    } else {
      hc.expect_status_min = *min;
      hc.expect_status_max = *max;
    }
  }
  return hc;
}

std::optional<Passive> SchemaLoader::read_passive(const Section& upstream) {
  const YAML::Node* v = upstream.get("passive");
  Section s = reader_.section(v ? *v : YAML::Node(), upstream.key_mark("passive"),
                              upstream.child("passive"), {"consecutive_failures", "ejection_time"});
  Passive p;
  reader_.read(s, "consecutive_failures", p.consecutive_failures, 1, 1'000'000);
  reader_.read_duration(s, "ejection_time", p.ejection_time, 1ms);
  return p;
}

void SchemaLoader::check_routes_upstreams() {
  if (!upstreams_read_) {
    return;  // already reported; every route would repeat it
  }
  std::vector<std::string> names;
  for (const auto& u : config_.upstreams) {
    names.push_back(u.name);
  }
  for (const auto& [name, mark] : route_upstream_refs_) {
    if (config_.find_upstream(name) != nullptr) {
      continue;
    }
    std::string message = "upstream " + Reader::quote(name) + " is not defined in upstreams";
    if (auto suggestion = closest_match(name, names)) {
      message += " (did you mean " + Reader::quote(*suggestion) + "?)";
    }
    reader_.error(mark, message);
  }
}

}  // namespace

std::string ConfigError::to_string() const {
  if (line == 0) {
    return file + ": " + message;
  }
  return file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + message;
}

EnvLookup process_env() {
  return [](std::string_view name) -> std::optional<std::string> {
    // getenv needs a terminated string; names are short.
    const char* value = std::getenv(std::string(name).c_str());
    if (value == nullptr) {
      return std::nullopt;
    }
    return std::string(value);
  };
}

LoadResult load_string(std::string_view yaml, const std::string& file_name,
                       const LoadOptions& options) {
  try {
    SchemaLoader loader(file_name, options);
    return loader.run(yaml);
  } catch (const std::exception& e) {
    // Nothing above should throw; if it does, a config error beats a crash
    // of the process that is only trying to reload.
    LoadResult result;
    result.errors.push_back({file_name, 0, 0, std::string("internal error: ") + e.what()});
    return result;
  } catch (...) {
    LoadResult result;
    result.errors.push_back({file_name, 0, 0, "internal error"});
    return result;
  }
}

LoadResult load_file(const std::string& path, const LoadOptions& options) {
  auto fail = [&](std::string reason) {
    LoadResult result;
    result.errors.push_back({path, 0, 0, "cannot read: " + reason});
    return result;
  };
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return fail(std::strerror(errno));
  }
  std::string text;
  char buffer[64 * 1024];
  while (true) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return fail(std::strerror(err));
    }
    if (n == 0) {
      break;
    }
    text.append(buffer, static_cast<size_t>(n));
    if (text.size() > kMaxFileSize) {
      ::close(fd);
      return fail("larger than " + std::to_string(kMaxFileSize / kMiB) + " MiB");
    }
  }
  ::close(fd);
  return load_string(text, path, options);
}

}  // namespace ward::config
