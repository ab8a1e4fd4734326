#pragma once

// The units of CONFIG.md. Each parser returns nullopt on anything it does not
// accept exactly; the loader turns that into a file:line:col error.

#include <cstdint>
#include <optional>
#include <string_view>

#include "proxy/config/config.h"

namespace ward::config {

// "250ms", "10s", "5m", "1h". A bare number is an error.
std::optional<Duration> parse_duration(std::string_view text);

// "512", "16KiB", "10MiB", "1GiB" (bare number = bytes).
std::optional<uint64_t> parse_size(std::string_view text);

// "30/minute", "100/second", "5000/hour" (also /min, /s, /h): events per second.
struct Rate {
  double per_second = 0;
  uint64_t count = 0;  // as written: 30 in "30/minute"
  Duration period{0};  // as written: 1 minute in "30/minute"
};
std::optional<Rate> parse_rate(std::string_view text);

// "127.0.0.1:8080", "[::1]:8080", "0.0.0.0:443", ":8080", "app:8000".
std::optional<Address> parse_address(std::string_view text);

}  // namespace ward::config
