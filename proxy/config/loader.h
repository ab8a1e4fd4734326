#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/config/config.h"

namespace ward::config {

class Reader;

struct ConfigError {
  std::string file;
  int line = 0;    // 1-based; 0 when the problem has no position (unreadable file)
  int column = 0;  // 1-based
  std::string message;

  // "file:line:column: message" (or "file: message" without a position).
  std::string to_string() const;
};

struct LoadResult {
  std::shared_ptr<const Config> config;  // null when errors is not empty
  std::vector<ConfigError> errors;       // every problem found, in file order

  bool ok() const { return errors.empty(); }
};

// Looks up an environment variable; injectable for tests.
using EnvLookup = std::function<std::optional<std::string>(std::string_view name)>;
EnvLookup process_env();

// Which optional features the binary has built. A key whose feature is off is
// rejected with "<key> is not supported yet" instead of being ignored.
struct Features {
  bool tls = false;                  // listeners[].tls
  bool upstream_tls = false;         // upstreams.*.tls
  bool proxy_protocol = false;       // listeners[].proxy_protocol: true
  bool health_checks = false;        // upstreams.*.health_check
  bool passive = false;              // upstreams.*.passive
  bool dns = false;                  // upstream server addresses that are DNS names
  std::vector<std::string> filters;  // filter names the registry knows
  // Checks one filter's options, reporting every problem to the Reader at
  // its YAML position, so `ward check` lists option errors with the rest.
  // The filter registry supplies it (config/ knows no filter); optional.
  std::function<void(const FilterSpec&, Reader&)> check_filter;
};

// The filter names of CONFIG.md's table: a name outside it is unknown, a
// name in it but not in Features::filters is "not supported yet".
const std::vector<std::string>& catalogue_filters();

struct LoadOptions {
  EnvLookup env = process_env();
  Features features;
  uint32_t cpu_count = 0;  // for `workers: auto`; 0 = std::thread::hardware_concurrency()
};

LoadResult load_file(const std::string& path, const LoadOptions& options);
LoadResult load_string(std::string_view yaml, const std::string& file_name,
                       const LoadOptions& options);

}  // namespace ward::config
