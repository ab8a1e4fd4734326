#include "proxy/config/reload.h"

namespace ward::config {

namespace {

std::string text(bool b) {
  return b ? "true" : "false";
}
std::string text(const std::string& s) {
  return s.empty() ? "\"\"" : s;
}
std::string text(uint64_t n) {
  return std::to_string(n);
}
std::string text(AccessLogFormat f) {
  return f == AccessLogFormat::json ? "json" : "combined";
}
std::string text(const std::optional<uint16_t>& port) {
  return port ? std::to_string(*port) : "none";
}

class Diff {
 public:
  template <typename T>
  void field(const std::string& key, const T& was, const T& now) {
    if (!(was == now)) {
      lines_.push_back(key + ": " + text(was) + " -> " + text(now));
    }
  }
  std::vector<std::string> take() { return std::move(lines_); }

 private:
  std::vector<std::string> lines_;
};

}  // namespace

std::vector<std::string> restart_changes(const Config& running, const Config& next) {
  Diff d;
  d.field("workers", uint64_t{running.workers}, uint64_t{next.workers});
  d.field("admin.address", running.admin.address.text, next.admin.address.text);
  d.field("logging.error_log", running.logging.error_log, next.logging.error_log);
  const auto& a = running.logging.access_log;
  const auto& b = next.logging.access_log;
  d.field("logging.access_log.path", a.path, b.path);
  d.field("logging.access_log.format", a.format, b.format);
  d.field("logging.access_log.max_size", a.max_size, b.max_size);
  d.field("logging.access_log.max_files", uint64_t{a.max_files}, uint64_t{b.max_files});
  d.field("listeners (count)", uint64_t{running.listeners.size()}, uint64_t{next.listeners.size()});
  for (size_t i = 0; i < running.listeners.size() && i < next.listeners.size(); ++i) {
    const auto& x = running.listeners[i];
    const auto& y = next.listeners[i];
    std::string key = "listeners[" + std::to_string(i) + "].";
    d.field(key + "name", x.name, y.name);
    d.field(key + "address", x.address.text, y.address.text);
    d.field(key + "redirect_https", x.redirect_https, y.redirect_https);
    d.field(key + "proxy_protocol", x.proxy_protocol, y.proxy_protocol);
    d.field(key + "tls (present)", x.tls.has_value(), y.tls.has_value());
  }
  return d.take();
}

}  // namespace ward::config
