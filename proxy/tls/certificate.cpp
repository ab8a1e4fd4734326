#include "proxy/tls/certificate.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>

namespace ward::tls {

namespace {

// Certificate, key and CA files are a few KiB (a full system CA bundle is
// ~200 KiB). The bound keeps a mistyped path such as /dev/zero from eating
// memory at load.
constexpr size_t kMaxPemFileSize = 4 * 1024 * 1024;

// Refuses to prompt: PEM routines would otherwise ask on the terminal.
int no_passphrase(char*, int, int, void*) {
  return -1;
}

std::string key_type_of(EVP_PKEY* key) {
  if (key == nullptr) {
    return "unknown";
  }
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA:
    case EVP_PKEY_RSA_PSS:
      return "RSA " + std::to_string(EVP_PKEY_get_bits(key));
    case EVP_PKEY_EC: {
      char group[64] = {};
      size_t len = 0;
      if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                         &len) == 1) {
        const char* nist = EC_curve_nid2nist(OBJ_txt2nid(group));
        return std::string("EC ") + (nist != nullptr ? nist : group);
      }
      return "EC";
    }
    default:
      return OBJ_nid2sn(EVP_PKEY_get_base_id(key));
  }
}

BioPtr memory_bio(const std::string& data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

// Why `data` gave no `what`: no PEM block at all gets its own wording (the
// usual mistake: a DER file, or the wrong file); otherwise OpenSSL's reasons.
std::string pem_failure(const std::string& data, const char* what) {
  unsigned long e = ERR_peek_error();
  std::string detail = take_openssl_errors();
  if (e == 0 || ERR_GET_REASON(e) == PEM_R_NO_START_LINE ||
      data.find("-----BEGIN ") == std::string::npos) {
    return std::string("no PEM ") + what + " in the file";
  }
  return std::string("cannot parse the PEM ") + what + " (" + detail + ")";
}

}  // namespace

std::string take_openssl_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    const char* reason = ERR_reason_error_string(e);
    if (!out.empty()) {
      out += "; ";
    }
    out += reason != nullptr ? reason : "error " + std::to_string(ERR_GET_REASON(e));
  }
  return out;
}

std::vector<std::string> san_dns_names(X509* cert) {
  std::vector<std::string> names;
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans == nullptr) {
    return names;
  }
  for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, i);
    if (gn->type != GEN_DNS) {
      continue;
    }
    const ASN1_STRING* s = gn->d.dNSName;
    std::string name(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
    // An embedded NUL is the classic name-confusion attack (CVE-2009-2408).
    if (name.find('\0') == std::string::npos) {
      names.push_back(std::move(name));
    }
  }
  GENERAL_NAMES_free(sans);
  return names;
}

std::optional<int64_t> asn1_time_to_unix(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
    return std::nullopt;
  }
  return static_cast<int64_t>(timegm(&tm));
}

std::string format_utc(int64_t unix_seconds) {
  auto t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string name_to_string(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || name == nullptr ||
      X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0) {
    return {};
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return len > 0 ? std::string(data, static_cast<size_t>(len)) : std::string();
}

CertificateInfo inspect_certificate(X509* cert) {
  CertificateInfo info;
  info.subject = name_to_string(X509_get_subject_name(cert));
  info.dns_names = san_dns_names(cert);
  info.key_type = key_type_of(X509_get0_pubkey(cert));
  info.not_before = asn1_time_to_unix(X509_get0_notBefore(cert)).value_or(0);
  info.not_after = asn1_time_to_unix(X509_get0_notAfter(cert)).value_or(0);
  return info;
}

std::optional<std::string> unreadable_reason(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return "is a directory";
  }
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return std::strerror(errno);
  }
  std::fclose(f);
  return std::nullopt;
}

std::optional<std::string> read_whole_file(const std::string& path, std::string& error) {
  if (auto reason = unreadable_reason(path)) {
    error = "cannot read: " + *reason;
    return std::nullopt;
  }
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    error = std::string("cannot read: ") + std::strerror(errno);
    return std::nullopt;
  }
  std::string data;
  char buf[16384];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
    if (data.size() + n > kMaxPemFileSize) {
      std::fclose(f);
      OPENSSL_cleanse(data.data(), data.size());
      error = "larger than 4 MiB: not a PEM file";
      return std::nullopt;
    }
    data.append(buf, n);
  }
  bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) {
    OPENSSL_cleanse(data.data(), data.size());
    error = "cannot read: read error";
    return std::nullopt;
  }
  return data;
}

X509Ptr load_leaf_certificate(const std::string& path, std::string& error) {
  auto data = read_whole_file(path, error);
  if (!data) {
    return nullptr;
  }
  ERR_clear_error();
  BioPtr bio = memory_bio(*data);
  // _AUX: also reads "TRUSTED CERTIFICATE" blocks, as
  // SSL_CTX_use_certificate_chain_file does for the leaf.
  X509Ptr cert(bio ? PEM_read_bio_X509_AUX(bio.get(), nullptr, no_passphrase, nullptr) : nullptr);
  if (!cert) {
    error = pem_failure(*data, "certificate");
  }
  return cert;
}

EvpPkeyPtr load_private_key(const std::string& path, std::string& error) {
  auto data = read_whole_file(path, error);
  if (!data) {
    return nullptr;
  }
  EvpPkeyPtr key;
  // Both PKCS#8 ("BEGIN ENCRYPTED PRIVATE KEY") and legacy
  // ("Proc-Type: 4,ENCRYPTED") encrypted keys say so in clear.
  if (data->find("ENCRYPTED") != std::string::npos) {
    error =
        "the key is encrypted and ward cannot ask for a passphrase (store it unencrypted, "
        "readable only by ward)";
  } else {
    ERR_clear_error();
    BioPtr bio = memory_bio(*data);
    key.reset(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr) : nullptr);
    if (!key) {
      error = pem_failure(*data, "private key");
    }
  }
  OPENSSL_cleanse(data->data(), data->size());
  return key;
}

std::vector<X509Ptr> load_ca_bundle(const std::string& path, std::string& error, std::string* pem) {
  std::vector<X509Ptr> certs;
  auto data = read_whole_file(path, error);
  if (!data) {
    return certs;
  }
  ERR_clear_error();
  BioPtr bio = memory_bio(*data);
  while (bio) {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr));
    if (!cert) {
      break;
    }
    certs.push_back(std::move(cert));
  }
  // The loop always ends on an error: "no start line" is the normal end of
  // the file; anything else is a damaged block.
  unsigned long e = ERR_peek_last_error();
  if (certs.empty() || (e != 0 && ERR_GET_REASON(e) != PEM_R_NO_START_LINE)) {
    error = pem_failure(*data, "CA certificate");
    certs.clear();
  }
  ERR_clear_error();
  if (pem != nullptr) {
    *pem = std::move(*data);
  }
  return certs;
}

}  // namespace ward::tls
