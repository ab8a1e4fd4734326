#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ward::util {

// An IPv4 or IPv6 address in network byte order. IPv4 is stored as an
// IPv4-mapped IPv6 address (::ffff:a.b.c.d) so that one comparison path serves
// both families and a v4 client seen on a dual-stack socket matches a v4 CIDR.
struct IpAddress {
  std::array<uint8_t, 16> bytes{};

  static std::optional<IpAddress> parse(std::string_view text);
  bool is_v4() const;
  std::string to_string() const;
  bool operator==(const IpAddress&) const = default;
};

// "10.0.0.0/8", "::1/128", or a bare address (a host route).
class Cidr {
 public:
  static std::optional<Cidr> parse(std::string_view text);
  bool contains(const IpAddress& ip) const;
  std::string to_string() const;

 private:
  IpAddress network_;
  int prefix_ = 128;  // in the mapped-v6 space: a v4 /8 is stored as /104
};

class CidrSet {
 public:
  void add(const Cidr& c) { cidrs_.push_back(c); }
  bool contains(const IpAddress& ip) const;
  bool empty() const { return cidrs_.empty(); }
  const std::vector<Cidr>& cidrs() const { return cidrs_; }

 private:
  std::vector<Cidr> cidrs_;
};

}  // namespace ward::util
