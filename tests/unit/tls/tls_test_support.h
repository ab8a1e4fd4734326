#pragma once

// Test support for proxy/tls: an in-memory PKI made with the OpenSSL API
// (CA, intermediate, RSA and ECDSA leaves with SANs, expired and future
// certificates, client certificates, broken files) written to a temporary
// directory, configs loaded from inline YAML, and a handshake driver that
// runs both ends in memory over a BIO pair (no sockets, no sleeps).

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "proxy/config/loader.h"
#include "proxy/tls/connection_info.h"
#include "proxy/tls/openssl_ptr.h"
#include "proxy/tls/server_contexts.h"

namespace ward::tls::testing {

inline EvpPkeyPtr make_ec_key() {
  return EvpPkeyPtr(EVP_EC_gen("P-256"));
}
inline EvpPkeyPtr make_rsa_key(unsigned bits) {
  return EvpPkeyPtr(EVP_RSA_gen(bits));
}
inline EvpPkeyPtr make_ed25519_key() {
  return EvpPkeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
}

// What a test certificate says. Built fluently (GCC 12 warns on partial
// designated initializers): CertSpec("cn").dns({"a.example.com"}).client().
struct CertSpec {
  explicit CertSpec(std::string common_name) : cn(std::move(common_name)) {}
  CertSpec& with_dns(std::vector<std::string> names) {
    dns = std::move(names);
    return *this;
  }
  CertSpec& with_ips(std::vector<std::string> addresses) {
    ips = std::move(addresses);
    return *this;
  }
  CertSpec& as_ca() {
    ca = true;
    return *this;
  }
  CertSpec& as_client() {
    client = true;
    return *this;
  }
  CertSpec& valid(long from, long to) {
    not_before = from;
    not_after = to;
    return *this;
  }

  std::string cn;
  std::vector<std::string> dns;
  std::vector<std::string> ips;
  bool ca = false;
  bool client = false;          // extendedKeyUsage clientAuth instead of serverAuth
  long not_before = -3600;      // seconds from now
  long not_after = 30 * 86400;  // seconds from now
};

inline void add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  ASSERT_NE(ext, nullptr) << value;
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// A certificate for `key`, signed by `issuer_key` (self-signed when `issuer`
// is null).
inline X509Ptr make_cert(const CertSpec& spec, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key) {
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), spec.not_before);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), spec.not_after);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("ward tests"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(spec.cn.c_str()), -1, -1, 0);
  X509* signer = issuer != nullptr ? issuer : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(signer));
  if (spec.ca) {
    add_ext(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_ext(cert.get(), signer, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(cert.get(), signer, NID_ext_key_usage, spec.client ? "clientAuth" : "serverAuth");
  }
  add_ext(cert.get(), signer, NID_subject_key_identifier, "hash");
  if (issuer != nullptr) {
    add_ext(cert.get(), signer, NID_authority_key_identifier, "keyid:always");
  }
  std::string san;
  for (const auto& d : spec.dns) {
    san += (san.empty() ? "DNS:" : ",DNS:") + d;
  }
  for (const auto& ip : spec.ips) {
    san += (san.empty() ? "IP:" : ",IP:") + ip;
  }
  if (!san.empty()) {
    add_ext(cert.get(), signer, NID_subject_alt_name, san);
  }
  EVP_PKEY* sign_key = issuer_key != nullptr ? issuer_key : key;
  bool eddsa = EVP_PKEY_get_base_id(sign_key) == EVP_PKEY_ED25519;
  EXPECT_GT(X509_sign(cert.get(), sign_key, eddsa ? nullptr : EVP_sha256()), 0);
  return cert;
}

inline std::string pem_of(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

inline std::string pem_of(EVP_PKEY* key, const char* password = nullptr) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (password != nullptr) {
    PEM_write_bio_PKCS8PrivateKey(bio.get(), key, EVP_aes_128_cbc(), password,
                                  static_cast<int>(strlen(password)), nullptr, nullptr);
  } else {
    PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

inline void write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

// Every file a test needs, made once per test process in a fresh temporary
// directory (removed at exit). Names: <dir>/<name>.crt and <dir>/<name>.key.
class Pki {
 public:
  static Pki& get() {
    static Pki pki;
    return pki;
  }

  std::string path(const std::string& file) const { return dir_ + "/" + file; }
  std::string crt(const std::string& name) const { return path(name + ".crt"); }
  std::string key(const std::string& name) const { return path(name + ".key"); }
  X509* cert(const std::string& name) const { return certs_.at(name).get(); }
  EVP_PKEY* pkey(const std::string& name) const { return keys_.at(name).get(); }

  // Writes a new leaf `name` (signed by the root CA) over its files.
  void issue(const std::string& name, const CertSpec& spec, EvpPkeyPtr key = make_ec_key()) {
    X509Ptr leaf = make_cert(spec, key.get(), cert("ca"), pkey("ca"));
    save(name, std::move(leaf), std::move(key));
  }

  ~Pki() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

 private:
  Pki() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "ward-tls-test-XXXXXX").string();
    dir_ = mkdtemp(tmpl.data());

    // Root CA -> intermediate -> "default" leaf, so the chain file matters.
    add_self_signed("ca", CertSpec("ward test root CA").as_ca());
    add_self_signed("other_ca", CertSpec("someone else's CA").as_ca());
    add("intermediate", CertSpec("ward test intermediate").as_ca(), make_ec_key(), "ca");
    add("default", CertSpec("default.example.com").with_dns({"default.example.com"}), make_ec_key(),
        "intermediate");
    write_file(path("default_chain.crt"), pem_of(cert("default")) + pem_of(cert("intermediate")));
    add("api", CertSpec("api.example.com").with_dns({"api.example.com", "www.api.example.com"}),
        make_rsa_key(2048), "ca");
    add("wild", CertSpec("*.apps.example.com").with_dns({"*.apps.example.com"}), make_ec_key(),
        "ca");
    add("special", CertSpec("special").with_dns({"special.apps.example.com"}), make_ec_key(), "ca");
    add("upstream", CertSpec("upstream").with_dns({"upstream.internal"}).with_ips({"127.0.0.1"}),
        make_ec_key(), "ca");
    add("nosan", CertSpec("no-san.example.com"), make_ec_key(), "ca");
    add("expired", CertSpec("expired").with_dns({"expired.example.com"}).valid(-2 * 86400, -86400),
        make_ec_key(), "ca");
    add("future", CertSpec("future").with_dns({"future.example.com"}).valid(86400, 2 * 86400),
        make_ec_key(), "ca");
    add("weak", CertSpec("weak").with_dns({"weak.example.com"}), make_rsa_key(1024), "ca");
    add("ed25519", CertSpec("ed").with_dns({"ed.example.com"}), make_ed25519_key(), "ca");
    add("client", CertSpec("client-1").as_client(), make_ec_key(), "ca");
    add("rogue_client", CertSpec("rogue").as_client(), make_ec_key(), "other_ca");
    add("expired_client", CertSpec("late").as_client().valid(-2 * 86400, -86400), make_ec_key(),
        "ca");

    write_file(path("garbage.pem"), "this is not PEM\n");
    write_file(path("empty.pem"), "");
    write_file(path("encrypted.key"), pem_of(pkey("default"), "secret"));
  }

  void add_self_signed(const std::string& name, const CertSpec& spec) {
    EvpPkeyPtr key = make_ec_key();
    X509Ptr root = make_cert(spec, key.get(), nullptr, nullptr);
    save(name, std::move(root), std::move(key));
  }

  void add(const std::string& name, const CertSpec& spec, EvpPkeyPtr key,
           const std::string& issuer) {
    X509Ptr leaf = make_cert(spec, key.get(), cert(issuer), pkey(issuer));
    save(name, std::move(leaf), std::move(key));
  }

  void save(const std::string& name, X509Ptr cert, EvpPkeyPtr key) {
    write_file(crt(name), pem_of(cert.get()));
    write_file(this->key(name), pem_of(key.get()));
    certs_[name] = std::move(cert);
    keys_[name] = std::move(key);
  }

  std::string dir_;
  std::map<std::string, X509Ptr> certs_;
  std::map<std::string, EvpPkeyPtr> keys_;
};

// A config file around a listener's tls block (`tls_yaml` is indented to sit
// under `tls:`) and an upstream's extra keys. Line 5 is the first line of
// `tls_yaml`.
inline std::string config_yaml(const std::string& tls_yaml, const std::string& upstream_yaml = "",
                               const std::string& listener_name = "websecure") {
  return "listeners:\n"
         "  - name: " +
         listener_name +
         "\n"
         "    address: 127.0.0.1:8443\n"
         "    tls:\n" +
         tls_yaml +
         "routes:\n"
         "  - match: { path_prefix: / }\n"
         "    upstream: app\n"
         "upstreams:\n"
         "  app:\n"
         "    servers: [127.0.0.1:9000]\n" +
         upstream_yaml;
}

inline std::shared_ptr<const config::Config> load_config(const std::string& yaml) {
  config::LoadOptions options;
  options.features.tls = true;
  options.features.upstream_tls = true;
  options.cpu_count = 1;
  config::LoadResult r = config::load_string(yaml, "test.yaml", options);
  for (const auto& e : r.errors) {
    ADD_FAILURE() << e.to_string();
  }
  return r.config;
}

// "cert: <path>\n key: <path>" items for `certificates:`.
inline std::string certs_yaml(const std::vector<std::string>& names,
                              const std::string& extra = "") {
  const Pki& pki = Pki::get();
  std::string y = "      certificates:\n";
  for (const auto& n : names) {
    std::string crt = n == "default" ? pki.path("default_chain.crt") : pki.crt(n);
    y += "        - cert: " + crt + "\n          key: " + pki.key(n) + "\n";
  }
  return y + extra;
}

inline config::Listener listener(const std::vector<std::string>& names,
                                 const std::string& extra = "",
                                 const std::string& name = "websecure") {
  auto cfg = load_config(config_yaml(certs_yaml(names, extra), "", name));
  if (!cfg) {
    return config::Listener{};
  }
  return cfg->listeners.at(0);
}

inline std::string join_errors(const std::vector<config::ConfigError>& errors) {
  std::string out;
  for (const auto& e : errors) {
    out += e.to_string() + "\n";
  }
  return out;
}

inline std::shared_ptr<const ServerContexts> build_ok(const config::Listener& l,
                                                      std::shared_ptr<TicketKeyRing> ring) {
  auto r = ServerContexts::build(l, std::move(ring), std::chrono::system_clock::now());
  EXPECT_TRUE(r.ok()) << join_errors(r.errors);
  return r.contexts;
}

// ---------------------------------------------------------------------------
// Clients

struct ClientOptions {
  std::string sni;                // "" = send no SNI
  std::vector<std::string> alpn;  // empty = no ALPN extension
  int min_version = TLS1_2_VERSION;
  int max_version = TLS1_3_VERSION;
  std::string ciphers;             // TLS <= 1.2 list; "" = OpenSSL default
  std::string trust = "ca";        // Pki name of the trusted root; "" = verify nothing
  std::string verify_host;         // "" = sni
  std::string cert;                // Pki name of a client certificate
  SSL_SESSION* session = nullptr;  // resume this
  bool legacy = false;             // security level 0, to offer TLS 1.0/1.1 and old suites
};

inline SslPtr make_client(const ClientOptions& o) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  SSL_CTX* c = ctx.get();
  if (o.legacy) {
    SSL_CTX_set_security_level(c, 0);
  }
  SSL_CTX_set_min_proto_version(c, o.min_version);
  SSL_CTX_set_max_proto_version(c, o.max_version);
  if (!o.ciphers.empty()) {
    EXPECT_EQ(SSL_CTX_set_cipher_list(c, o.ciphers.c_str()), 1) << o.ciphers;
  } else if (o.legacy) {
    SSL_CTX_set_cipher_list(c, "DEFAULT:@SECLEVEL=0");
  }
  const Pki& pki = Pki::get();
  if (!o.trust.empty()) {
    EXPECT_EQ(SSL_CTX_load_verify_locations(c, pki.crt(o.trust).c_str(), nullptr), 1);
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
  }
  if (!o.cert.empty()) {
    EXPECT_EQ(SSL_CTX_use_certificate(c, pki.cert(o.cert)), 1);
    EXPECT_EQ(SSL_CTX_use_PrivateKey(c, pki.pkey(o.cert)), 1);
  }
  if (!o.alpn.empty()) {
    std::string wire;
    for (const auto& p : o.alpn) {
      wire += static_cast<char>(p.size());
      wire += p;
    }
    SSL_CTX_set_alpn_protos(c, reinterpret_cast<const unsigned char*>(wire.data()),
                            static_cast<unsigned>(wire.size()));
  }
  SslPtr ssl(SSL_new(c));  // holds its own reference to ctx
  if (!o.sni.empty()) {
    SSL_set_tlsext_host_name(ssl.get(), o.sni.c_str());
  }
  std::string host = o.verify_host.empty() ? o.sni : o.verify_host;
  if (!o.trust.empty() && !host.empty()) {
    SSL_set1_host(ssl.get(), host.c_str());
  }
  if (o.session != nullptr) {
    SSL_set_session(ssl.get(), o.session);
  }
  SSL_set_connect_state(ssl.get());
  ERR_clear_error();
  return ssl;
}

// Both ends of one in-memory connection.
struct Connection {
  SslPtr client;
  SslPtr server;
  BIO* client_bio = nullptr;  // owned by `client`
  bool client_ok = false;
  bool server_ok = false;
  std::optional<HandshakeError> server_error;  // when the server's handshake failed

  bool ok() const { return client_ok && server_ok; }
  bool resumed() const { return SSL_session_reused(client.get()) == 1; }
  long client_verify() const { return SSL_get_verify_result(client.get()); }
  std::string served_cn() const {
    X509* peer = SSL_get0_peer_certificate(client.get());
    if (peer == nullptr) {
      return "";
    }
    char cn[256] = {};
    X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn);
    return cn;
  }
};

// Runs one handshake step on `ssl`; true when it needs another.
inline bool step(SSL* ssl, bool& done, bool& failed, std::optional<HandshakeError>* reason) {
  if (done || failed) {
    return false;
  }
  int r = SSL_do_handshake(ssl);
  if (r == 1) {
    done = true;
    return false;
  }
  int e = SSL_get_error(ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    return true;
  }
  failed = true;
  if (reason != nullptr) {
    *reason = classify_handshake_error(ssl, r);
  } else {
    ERR_clear_error();
  }
  return false;
}

// Connects `client` to `server` over a BIO pair and runs both handshakes to
// the end (or until both are stuck).
inline Connection handshake(SslPtr server, SslPtr client) {
  Connection c;
  c.client = std::move(client);
  c.server = std::move(server);
  BIO* server_bio = nullptr;
  BIO_new_bio_pair(&server_bio, 0, &c.client_bio, 0);
  SSL_set_bio(c.server.get(), server_bio, server_bio);
  SSL_set_bio(c.client.get(), c.client_bio, c.client_bio);
  bool client_failed = false;
  bool server_failed = false;
  for (int round = 0; round < 32; ++round) {
    bool more = step(c.client.get(), c.client_ok, client_failed, nullptr);
    more = step(c.server.get(), c.server_ok, server_failed, &c.server_error) || more;
    if (!more && (c.client_ok || client_failed) && (c.server_ok || server_failed)) {
      break;
    }
    if (client_failed && !c.server_ok && !server_failed && BIO_ctrl_pending(server_bio) == 0) {
      // The client gave up without a word: the server sees the close.
      BIO_shutdown_wr(c.client_bio);
    }
  }
  return c;
}

// Moves application data both ways; also makes the client read TLS 1.3
// NewSessionTicket messages, which arrive after the handshake.
inline bool echo(Connection& c, const std::string& message) {
  if (SSL_write(c.client.get(), message.data(), static_cast<int>(message.size())) <= 0) {
    return false;
  }
  char buf[256] = {};
  int n = SSL_read(c.server.get(), buf, sizeof buf);
  if (n <= 0 || std::string(buf, static_cast<size_t>(n)) != message) {
    return false;
  }
  if (SSL_write(c.server.get(), buf, n) <= 0) {
    return false;
  }
  n = SSL_read(c.client.get(), buf, sizeof buf);
  return n > 0 && std::string(buf, static_cast<size_t>(n)) == message;
}

// The session to resume, after the client has read its tickets and closed
// with close_notify as a browser would. (A client SSL freed without it marks
// its session not resumable: OpenSSL's ssl_clear_bad_session.)
inline SSL_SESSION* take_session(Connection& c) {
  EXPECT_TRUE(echo(c, "ticket please"));
  SSL_shutdown(c.client.get());
  SSL_SESSION* s = SSL_get1_session(c.client.get());
  EXPECT_NE(s, nullptr);
  EXPECT_EQ(SSL_SESSION_is_resumable(s), 1);
  return s;
}

using SessionPtr = std::unique_ptr<SSL_SESSION, OpensslDeleter<SSL_SESSION_free>>;

}  // namespace ward::tls::testing
