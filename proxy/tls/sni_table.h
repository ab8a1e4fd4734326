#pragma once

// Which certificate of a listener answers a TLS server name (SNI, RFC 6066 3).
//
// Names come from each certificate's subjectAltName DNS entries (the CN is
// not used: RFC 6125 6.4.4, and browsers ignore it). A server name matches
// exactly first, in any certificate; then a wildcard `*.example.com`, which
// covers exactly one more label (`a.example.com`, not `example.com` nor
// `a.b.example.com`), as X509_check_host verifies on the client. Ties go to
// the certificate listed first. Comparison is case-insensitive and ignores a
// trailing dot. No match, or no server name at all: the first certificate
// (the default), so old clients and IP-literal requests still get an answer.

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ward::tls {

class SniTable {
 public:
  // Registers the SAN DNS names of certificate `index` (call in config
  // order). Names that can never match a server name (a partial wildcard
  // "f*.example.com", a wildcard over a single label "*.com", empty) are
  // ignored; returns how many names were usable.
  size_t add(size_t index, const std::vector<std::string>& dns_names);

  // The certificate for `server_name`; 0 (the default) when none matches.
  size_t select(std::string_view server_name) const;

  // "Example.COM." -> "example.com"; "" for something that is not a DNS name
  // of at most 253 characters.
  static std::string normalize(std::string_view name);

 private:
  std::unordered_map<std::string, size_t> exact_;
  std::unordered_map<std::string, size_t> wildcard_;  // "example.com" for "*.example.com"
};

}  // namespace ward::tls
