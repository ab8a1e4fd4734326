#include "proxy/config/units.h"

#include <charconv>
#include <limits>

#include "proxy/util/cidr.h"

namespace ward::config {

namespace {

// The longest duration accepted, in milliseconds: 100 years. Timers add a
// duration to a nanosecond clock reading, so anything much larger would
// overflow int64 nanoseconds (about 292 years) once converted.
constexpr int64_t kMaxDurationMs = int64_t{100} * 365 * 24 * 3600 * 1000;

// Parses a run of decimal digits that makes up the whole of `digits`. No sign,
// no spaces, no hex: "+5", " 5" and "0x5" are not numbers in this file format.
std::optional<uint64_t> parse_digits(std::string_view digits) {
  if (digits.empty()) {
    return std::nullopt;
  }
  for (char c : digits) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
  }
  uint64_t value = 0;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec != std::errc() || ptr != digits.data() + digits.size()) {
    return std::nullopt;  // overflow
  }
  return value;
}

// Splits "250ms" into "250" and "ms" at the first non-digit.
std::pair<std::string_view, std::string_view> split_number(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    ++i;
  }
  return {text.substr(0, i), text.substr(i)};
}

std::optional<uint64_t> checked_multiply(uint64_t a, uint64_t b) {
  if (b != 0 && a > std::numeric_limits<uint64_t>::max() / b) {
    return std::nullopt;
  }
  return a * b;
}

std::optional<uint16_t> parse_port(std::string_view text) {
  // At most 5 digits so "000000080" is not silently port 80.
  if (text.size() > 5) {
    return std::nullopt;
  }
  auto n = parse_digits(text);
  if (!n || *n > 65535) {
    return std::nullopt;
  }
  return static_cast<uint16_t>(*n);
}

bool is_dns_label_char(char c) {
  // '_' is not valid in a hostname (RFC 952) but Docker Compose service names
  // may contain it and resolve fine through Docker's DNS.
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

// RFC 1123 host name: dot-separated labels of 1-63 characters, 253 in all,
// no label starting or ending with '-'. A trailing dot (a rooted name) is
// allowed.
bool is_dns_name(std::string_view host) {
  if (host.empty() || host.size() > 253) {
    return false;
  }
  if (host.back() == '.') {
    host.remove_suffix(1);
  }
  size_t start = 0;
  while (start <= host.size()) {
    size_t dot = host.find('.', start);
    if (dot == std::string_view::npos) {
      dot = host.size();
    }
    std::string_view label = host.substr(start, dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      if (!is_dns_label_char(c)) {
        return false;
      }
    }
    start = dot + 1;
  }
  return true;
}

// "1.2.3" or "999.1.1.1" are meant as IPv4 addresses, not host names; they
// must not slip through as names to resolve.
bool looks_like_ipv4(std::string_view host) {
  for (char c : host) {
    if (c != '.' && (c < '0' || c > '9')) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::optional<Duration> parse_duration(std::string_view text) {
  auto [digits, unit] = split_number(text);
  auto count = parse_digits(digits);
  if (!count) {
    return std::nullopt;
  }
  uint64_t unit_ms = 0;
  if (unit == "ms") {
    unit_ms = 1;
  } else if (unit == "s") {
    unit_ms = 1000;
  } else if (unit == "m") {
    unit_ms = 60 * 1000;
  } else if (unit == "h") {
    unit_ms = 3600 * 1000;
  } else {
    return std::nullopt;  // includes a bare number: the unit is never implied
  }
  auto ms = checked_multiply(*count, unit_ms);
  if (!ms || *ms > static_cast<uint64_t>(kMaxDurationMs)) {
    return std::nullopt;
  }
  return Duration{static_cast<int64_t>(*ms)};
}

std::optional<uint64_t> parse_size(std::string_view text) {
  auto [digits, unit] = split_number(text);
  auto count = parse_digits(digits);
  if (!count) {
    return std::nullopt;
  }
  uint64_t multiplier = 0;
  if (unit.empty()) {
    multiplier = 1;
  } else if (unit == "KiB") {
    multiplier = kKiB;
  } else if (unit == "MiB") {
    multiplier = kMiB;
  } else if (unit == "GiB") {
    multiplier = kGiB;
  } else {
    // KB/MB/k/M are deliberately refused: 1000 or 1024 would be a guess.
    return std::nullopt;
  }
  return checked_multiply(*count, multiplier);
}

std::optional<Rate> parse_rate(std::string_view text) {
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) {
    return std::nullopt;
  }
  auto count = parse_digits(text.substr(0, slash));
  // A zero rate would be a bucket that never refills: a deny-all in disguise.
  // A cap keeps per_second and token arithmetic far from overflow.
  constexpr uint64_t kMaxCount = 1'000'000'000;
  if (!count || *count == 0 || *count > kMaxCount) {
    return std::nullopt;
  }
  std::string_view unit = text.substr(slash + 1);
  Duration period{0};
  if (unit == "second" || unit == "s") {
    period = 1s;
  } else if (unit == "minute" || unit == "min") {
    period = 60s;
  } else if (unit == "hour" || unit == "h") {
    period = 3600s;
  } else {
    return std::nullopt;
  }
  Rate rate;
  rate.count = *count;
  rate.period = period;
  rate.per_second = static_cast<double>(*count) / std::chrono::duration<double>(period).count();
  return rate;
}

std::optional<Address> parse_address(std::string_view text) {
  Address address;
  address.text = std::string(text);
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return std::nullopt;
    }
    std::string_view host = text.substr(1, close - 1);
    auto ip = util::IpAddress::parse(host);
    // Brackets are for IPv6 only; "[1.2.3.4]:80" is a typo, not an address.
    if (!ip || host.find(':') == std::string_view::npos) {
      return std::nullopt;
    }
    address.host = std::string(host);
    address.host_is_ip = true;
    port_text = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return std::nullopt;  // the port is always required
    }
    std::string_view host = text.substr(0, colon);
    // An unbracketed IPv6 address is ambiguous ("::1:8080"): refuse it.
    if (host.find(':') != std::string_view::npos) {
      return std::nullopt;
    }
    if (host.empty()) {
      // ":8080" = all interfaces. Nothing to resolve, so it counts as an IP.
      address.host_is_ip = true;
    } else if (util::IpAddress::parse(host)) {
      address.host_is_ip = true;
    } else if (looks_like_ipv4(host) || !is_dns_name(host)) {
      return std::nullopt;
    }
    address.host = std::string(host);
    port_text = text.substr(colon + 1);
  }
  auto port = parse_port(port_text);
  if (!port) {
    return std::nullopt;
  }
  address.port = *port;
  return address;
}

}  // namespace ward::config
