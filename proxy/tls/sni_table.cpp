#include "proxy/tls/sni_table.h"

namespace ward::tls {

namespace {

constexpr size_t kMaxNameLength = 253;  // RFC 1035 2.3.4, without the trailing dot

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
         c == '*';
}

}  // namespace

std::string SniTable::normalize(std::string_view name) {
  if (!name.empty() && name.back() == '.') {
    name.remove_suffix(1);
  }
  if (name.empty() || name.size() > kMaxNameLength) {
    return {};
  }
  std::string out(name);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
    if (!is_name_char(c)) {
      return {};
    }
  }
  // Empty labels ("a..b", ".a") are not names.
  if (out.front() == '.' || out.find("..") != std::string::npos) {
    return {};
  }
  return out;
}

size_t SniTable::add(size_t index, const std::vector<std::string>& dns_names) {
  size_t usable = 0;
  for (const std::string& raw : dns_names) {
    std::string name = normalize(raw);
    if (name.empty()) {
      continue;
    }
    auto star = name.find('*');
    if (star == std::string::npos) {
      exact_.emplace(name, index);  // emplace keeps the first certificate's claim
      ++usable;
      continue;
    }
    // Only a whole left-most label, over at least two more labels.
    std::string rest = name.substr(1);
    if (star != 0 || rest.size() < 2 || rest[0] != '.' || rest.find('*') != std::string::npos ||
        rest.find('.', 1) == std::string::npos) {
      continue;
    }
    wildcard_.emplace(rest.substr(1), index);
    ++usable;
  }
  return usable;
}

size_t SniTable::select(std::string_view server_name) const {
  std::string name = normalize(server_name);
  // A '*' in a client's server name is not a wildcard: it matches nothing.
  if (name.empty() || name.find('*') != std::string::npos) {
    return 0;
  }
  if (auto it = exact_.find(name); it != exact_.end()) {
    return it->second;
  }
  auto dot = name.find('.');
  if (dot == std::string::npos || dot == 0) {
    return 0;
  }
  if (auto it = wildcard_.find(name.substr(dot + 1)); it != wildcard_.end()) {
    return it->second;
  }
  return 0;
}

}  // namespace ward::tls
