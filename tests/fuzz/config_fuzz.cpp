// Feeds arbitrary bytes to the config loader. The loader reads operator
// input that may be broken in any way (a half-written file picked up by a
// SIGHUP reload): it must report errors, never crash, hang or throw.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "proxy/config/config_json.h"
#include "proxy/config/loader.h"

namespace {

ward::config::LoadOptions make_options() {
  ward::config::LoadOptions options;
  options.features.tls = true;
  options.features.proxy_protocol = true;
  options.features.health_checks = true;
  options.features.passive = true;
  options.features.dns = true;
  options.features.filters = {"rate_limit", "security_headers", "cors",     "ip_access",
                              "api_key",    "request_id",       "compress", "headers"};
  options.cpu_count = 2;
  // Deterministic: a few variables set, the rest unset.
  options.env = [](std::string_view name) -> std::optional<std::string> {
    if (name == "API_KEY") {
      return "fuzz-key";
    }
    if (name == "PORT") {
      return "8080";
    }
    return std::nullopt;
  };
  return options;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const ward::config::LoadOptions options = make_options();
  std::string_view yaml(reinterpret_cast<const char*>(data), size);
  auto result = ward::config::load_string(yaml, "fuzz.yaml", options);
  // The contract: a config xor errors, each error with text.
  if (result.ok() == (result.config == nullptr)) {
    std::abort();
  }
  for (const auto& e : result.errors) {
    if (e.message.empty() || e.line < 0 || e.column < 0) {
      std::abort();
    }
    (void)e.to_string();
  }
  if (result.config) {
    // /config renders whatever loaded, filter options included.
    (void)ward::config::to_json(*result.config, 1);
  }
  return 0;
}
