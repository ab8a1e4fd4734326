#pragma once

// Reading certificates, keys and CA bundles from PEM files, with messages an
// operator can act on. Control plane only (start, reload, `ward check`).

#include <openssl/x509.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "proxy/tls/openssl_ptr.h"

namespace ward::tls {

// What the proxy reports about one configured certificate.
struct CertificateInfo {
  std::string cert_path;               // as configured: the `cert` label of the expiry gauge
  std::string key_path;                // as configured
  std::string subject;                 // RFC 2253 ("CN=example.com,O=...")
  std::vector<std::string> dns_names;  // subjectAltName DNS entries, as written
  std::string key_type;                // "RSA 2048", "EC P-256"
  int64_t not_before = 0;              // Unix seconds
  int64_t not_after = 0;               // Unix seconds: ward_tls_certificate_expiry_seconds
};

// Facts about a certificate (no validation).
CertificateInfo inspect_certificate(X509* cert);

// subjectAltName DNS entries, in certificate order.
std::vector<std::string> san_dns_names(X509* cert);

// ASN.1 time as Unix seconds; nullopt when it is malformed.
std::optional<int64_t> asn1_time_to_unix(const ASN1_TIME* t);

// Unix seconds as "2024-01-31T23:59:59Z".
std::string format_utc(int64_t unix_seconds);

// The RFC 2253 form of a name ("CN=client,O=Example").
std::string name_to_string(const X509_NAME* name);

// Why `path` cannot be read ("No such file or directory", "is a directory"),
// or nullopt when it can. The `error`s below describe the problem without
// naming the file: the caller names it once ("certificate \"x.crt\": ...").
std::optional<std::string> unreadable_reason(const std::string& path);

// The whole file, or nullopt with `error` set to why not.
std::optional<std::string> read_whole_file(const std::string& path, std::string& error);

// The first certificate of a PEM file (the leaf of a chain file); null with
// `error` set when the file holds no readable certificate.
X509Ptr load_leaf_certificate(const std::string& path, std::string& error);

// An unencrypted PEM private key; null with `error` set otherwise. Never
// prompts for a passphrase (a proxy starting under systemd has no terminal).
EvpPkeyPtr load_private_key(const std::string& path, std::string& error);

// Every certificate of a PEM CA bundle; empty with `error` set when the file
// cannot be read or holds none. `pem`, when given, receives the bytes read.
std::vector<X509Ptr> load_ca_bundle(const std::string& path, std::string& error,
                                    std::string* pem = nullptr);

}  // namespace ward::tls
