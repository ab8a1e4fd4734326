#include "proxy/util/cidr.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace ward::util {

namespace {
constexpr std::array<uint8_t, 12> kV4MappedPrefix{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
}

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') {
    text = text.substr(1, text.size() - 2);
  }
  if (text.empty() || text.size() > INET6_ADDRSTRLEN) {
    return std::nullopt;
  }
  std::string s(text);
  IpAddress ip;
  in_addr v4{};
  if (inet_pton(AF_INET, s.c_str(), &v4) == 1) {
    std::copy(kV4MappedPrefix.begin(), kV4MappedPrefix.end(), ip.bytes.begin());
    std::memcpy(ip.bytes.data() + 12, &v4, 4);
    return ip;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, s.c_str(), &v6) == 1) {
    std::memcpy(ip.bytes.data(), &v6, 16);
    return ip;
  }
  return std::nullopt;
}

bool IpAddress::is_v4() const {
  return std::equal(kV4MappedPrefix.begin(), kV4MappedPrefix.end(), bytes.begin());
}

std::string IpAddress::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (is_v4()) {
    inet_ntop(AF_INET, bytes.data() + 12, buf, sizeof buf);
  } else {
    inet_ntop(AF_INET6, bytes.data(), buf, sizeof buf);
  }
  return buf;
}

std::optional<Cidr> Cidr::parse(std::string_view text) {
  auto slash = text.find('/');
  auto ip = IpAddress::parse(text.substr(0, slash));
  if (!ip) {
    return std::nullopt;
  }
  int max_bits = ip->is_v4() ? 32 : 128;
  int bits = max_bits;
  if (slash != std::string_view::npos) {
    auto digits = text.substr(slash + 1);
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), bits);
    if (digits.empty() || ec != std::errc() || ptr != digits.data() + digits.size() || bits < 0 ||
        bits > max_bits) {
      return std::nullopt;
    }
  }
  Cidr c;
  c.prefix_ = ip->is_v4() ? bits + 96 : bits;
  c.network_ = *ip;
  // Zero the host bits so contains() is a plain masked compare.
  for (int i = 0; i < 16; ++i) {
    int keep = std::clamp(c.prefix_ - i * 8, 0, 8);
    c.network_.bytes[i] &= static_cast<uint8_t>(keep == 0 ? 0 : (0xff << (8 - keep)) & 0xff);
  }
  return c;
}

bool Cidr::contains(const IpAddress& ip) const {
  for (int i = 0; i < 16; ++i) {
    int keep = std::clamp(prefix_ - i * 8, 0, 8);
    if (keep == 0) {
      return true;
    }
    auto mask = static_cast<uint8_t>((0xff << (8 - keep)) & 0xff);
    if ((ip.bytes[i] & mask) != network_.bytes[i]) {
      return false;
    }
  }
  return true;
}

std::string Cidr::to_string() const {
  bool v4 = network_.is_v4() && prefix_ >= 96;
  return network_.to_string() + "/" + std::to_string(v4 ? prefix_ - 96 : prefix_);
}

bool CidrSet::contains(const IpAddress& ip) const {
  for (const auto& c : cidrs_) {
    if (c.contains(ip)) {
      return true;
    }
  }
  return false;
}

}  // namespace ward::util
