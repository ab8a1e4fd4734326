#include "proxy/tls/server_contexts.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstring>
#include <new>

namespace ward::tls {

namespace {

// RFC 9325 4.2 (and Mozilla's "intermediate" profile): forward secrecy
// (ECDHE) and AEAD only. No CBC (Lucky13, padding oracles), no static RSA key
// exchange (no forward secrecy, ROBOT). Order: server preference.
constexpr const char* kDefaultTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
constexpr const char* kGroups = "X25519:P-256:P-384";
// RSA >= 2048 bits, ECC >= 224 bits, no SHA-1 signatures in chains.
constexpr int kSecurityLevel = 2;
// OpenSSL's default size; a TLS 1.2 session is ~1-2 KiB, so at most ~40 MiB
// per listener, and far less in practice (tickets carry most resumptions).
constexpr long kSessionCacheSize = 20480;
// A client chain longer than this is not a real deployment; the bound caps
// the verification work a client can ask for.
constexpr int kMaxClientChainDepth = 8;

// The index of the per-SSL reference to its ServerContexts. An ex_data index
// is allocated once per process and never changes: a constant, not state.
void free_contexts_ref(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<std::shared_ptr<const ServerContexts>*>(ptr);
}

int contexts_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, free_contexts_ref);
  return index;
}

config::ConfigError error_at(const config::Mark& mark, std::string message) {
  return config::ConfigError{mark.file, mark.line, mark.column, std::move(message)};
}

std::string quote(const std::string& s) {
  return "\"" + s + "\"";
}

// The session id context binds a session (and so a ticket) to the listener
// and to the client CA that verified its client certificate (RFC 5077 does
// not; OpenSSL refuses to resume across different contexts). A ticket from
// another listener, or one whose client certificate was verified against a
// client_ca that a reload has since replaced, gets a full handshake.
std::vector<unsigned char> session_id_context(const std::string& listener,
                                              const std::string& client_ca_pem) {
  std::string input = "ward-listener:" + listener + '\0' + client_ca_pem;
  std::vector<unsigned char> md(EVP_MAX_MD_SIZE);
  unsigned int len = 0;
  if (EVP_Digest(input.data(), input.size(), md.data(), &len, EVP_sha256(), nullptr) != 1) {
    len = 0;
  }
  md.resize(std::min<size_t>(len, SSL_MAX_SID_CTX_LENGTH));
  return md;
}

bool is_rsa_or_ec(EVP_PKEY* key) {
  int id = key != nullptr ? EVP_PKEY_get_base_id(key) : 0;
  return id == EVP_PKEY_RSA || id == EVP_PKEY_EC;
}

}  // namespace

// The OpenSSL callbacks; a friend of ServerContexts. Each finds the contexts
// through the SSL (new_ssl attached them), never through a raw pointer kept
// in an SSL_CTX that could outlive them.
struct ServerCallbacks {
  static const ServerContexts* of(const SSL* ssl) {
    auto* ref =
        static_cast<std::shared_ptr<const ServerContexts>*>(SSL_get_ex_data(ssl, contexts_index()));
    return ref != nullptr ? ref->get() : nullptr;
  }

  // RFC 6066 3: switch to the certificate for the requested name.
  static int server_name(SSL* ssl, int* alert, void*) {
    const ServerContexts* set = of(ssl);
    if (set == nullptr) {
      *alert = SSL_AD_INTERNAL_ERROR;
      return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (name == nullptr) {
      return SSL_TLSEXT_ERR_NOACK;  // no SNI: the default certificate is already set
    }
    size_t i = set->sni_.select(name);
    if (i != 0 && SSL_set_SSL_CTX(ssl, set->contexts_[i].get()) == nullptr) {
      *alert = SSL_AD_INTERNAL_ERROR;
      return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return SSL_TLSEXT_ERR_OK;
  }

  // RFC 7301 3.2: the first of the listener's protocols that the client
  // also offers. `in` is the client's list, already length-checked by
  // OpenSSL; checked again here since the cost is nil.
  static int alpn(SSL* ssl, const unsigned char** out, unsigned char* outlen,
                  const unsigned char* in, unsigned int inlen, void*) {
    const ServerContexts* set = of(ssl);
    if (set == nullptr) {
      return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    for (const std::string& want : set->alpn_) {
      for (unsigned int i = 0; i < inlen;) {
        unsigned int len = in[i];
        if (len == 0 || i + 1 + len > inlen) {
          return SSL_TLSEXT_ERR_ALERT_FATAL;  // malformed list
        }
        if (len == want.size() && std::memcmp(in + i + 1, want.data(), len) == 0) {
          *out = in + i + 1;
          *outlen = static_cast<unsigned char>(len);
          return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + len;
      }
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL;  // OpenSSL sends no_application_protocol
  }

  static int ticket_key(SSL* ssl, unsigned char key_name[16], unsigned char* iv,
                        EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int encrypt) {
    const ServerContexts* set = of(ssl);
    if (set == nullptr || set->ring_ == nullptr) {
      return encrypt ? -1 : 0;
    }
    return encrypt ? set->ring_->encrypt_ticket(key_name, iv, cipher, mac)
                   : set->ring_->decrypt_ticket(key_name, iv, cipher, mac);
  }
};

namespace {

struct Builder {
  Builder(const config::Listener& l, std::shared_ptr<TicketKeyRing> r, int64_t unix_now,
          ServerContexts::BuildResult& out)
      : listener(l), tls(*l.tls), ring(std::move(r)), now(unix_now), result(out) {}

  const config::Listener& listener;
  const config::ListenerTls& tls;
  std::shared_ptr<TicketKeyRing> ring;
  int64_t now = 0;  // Unix seconds
  ServerContexts::BuildResult& result;

  std::vector<X509Ptr> client_cas;
  std::string client_ca_pem;

  void error(const config::Mark& mark, std::string message) {
    result.errors.push_back(error_at(mark, std::move(message)));
  }
  void warning(const config::Mark& mark, std::string message) {
    result.warnings.push_back(error_at(mark, std::move(message)));
  }

  // client_ca is read once and shared by every certificate's context.
  void load_client_ca() {
    if (tls.client_ca.empty()) {
      return;
    }
    std::string why;
    client_cas = load_ca_bundle(tls.client_ca, why, &client_ca_pem);
    if (client_cas.empty()) {
      error(listener.mark, "client_ca " + quote(tls.client_ca) + ": " + why);
    }
  }

  // Everything but the certificate: identical on every context, so that
  // switching contexts on SNI changes nothing else.
  SslCtxPtr make_context(const std::vector<unsigned char>& sid_ctx) {
    SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
    if (!ctx) {
      error(listener.mark, "tls: cannot create an OpenSSL context: " + take_openssl_errors());
      return nullptr;
    }
    SSL_CTX* c = ctx.get();
    SSL_CTX_set_security_level(c, kSecurityLevel);
    SSL_CTX_set_min_proto_version(c, tls.min_version == "1.3" ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION);
    uint64_t options = SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                       SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_PRIORITIZE_CHACHA;
    if (!ring) {
      // No stateless tickets: TLS 1.2 resumes by session id and TLS 1.3 by
      // stateful tickets, both from this listener's session cache only.
      options |= SSL_OP_NO_TICKET;
    }
    SSL_CTX_set_options(c, options);
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);  // idle keep-alive connections hold no buffers
    const char* ciphers = tls.ciphers == "default" ? kDefaultTls12Ciphers : tls.ciphers.c_str();
    if (SSL_CTX_set_cipher_list(c, ciphers) != 1) {
      take_openssl_errors();
      return nullptr;  // reported once by check_ciphers
    }
    if (SSL_CTX_set1_groups_list(c, kGroups) != 1) {
      error(listener.mark, "tls: cannot set the key exchange groups: " + take_openssl_errors());
      return nullptr;
    }
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(c, kSessionCacheSize);
    auto lifetime = ring ? ring->timing().ticket_lifetime : TicketKeyRing::Timing{}.ticket_lifetime;
    SSL_CTX_set_timeout(c, static_cast<long>(lifetime.count()));
    SSL_CTX_set_session_id_context(c, sid_ctx.data(), static_cast<unsigned int>(sid_ctx.size()));
    if (ring) {
      SSL_CTX_set_tlsext_ticket_key_evp_cb(c, &ServerCallbacks::ticket_key);
    }
    SSL_CTX_set_tlsext_servername_callback(c, &ServerCallbacks::server_name);
    SSL_CTX_set_alpn_select_cb(c, &ServerCallbacks::alpn, nullptr);
    if (!client_cas.empty()) {
      X509_STORE* store = SSL_CTX_get_cert_store(c);
      for (const X509Ptr& ca : client_cas) {
        // Trust anchors for the client chain, and the names sent in
        // CertificateRequest so a client with several certs picks the right one.
        X509_STORE_add_cert(store, ca.get());
        SSL_CTX_add_client_CA(c, ca.get());
      }
      SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
      SSL_CTX_set_verify_depth(c, kMaxClientChainDepth);
    }
    ERR_clear_error();
    return ctx;
  }

  bool check_ciphers() {
    SslCtxPtr probe(SSL_CTX_new(TLS_server_method()));
    const char* ciphers = tls.ciphers == "default" ? kDefaultTls12Ciphers : tls.ciphers.c_str();
    if (probe && SSL_CTX_set_cipher_list(probe.get(), ciphers) == 1) {
      return true;
    }
    take_openssl_errors();
    error(listener.mark, "ciphers: OpenSSL knows none of the TLS 1.2 ciphers in " +
                             quote(tls.ciphers) +
                             " (write \"default\", or an OpenSSL cipher list)");
    return false;
  }

  // Installs one certificate and its key on `ctx`; false after reporting.
  bool add_certificate(SSL_CTX* ctx, const config::TlsCertificate& tc, CertificateInfo& info) {
    std::string why;
    X509Ptr leaf = load_leaf_certificate(tc.cert, why);
    if (!leaf) {
      error(tc.mark, "certificate " + quote(tc.cert) + ": " + why);
      return false;
    }
    info = inspect_certificate(leaf.get());
    info.cert_path = tc.cert;
    info.key_path = tc.key;
    if (!is_rsa_or_ec(X509_get0_pubkey(leaf.get()))) {
      error(tc.mark, "certificate " + quote(tc.cert) + ": its key is " + info.key_type +
                         "; ward serves RSA and ECDSA certificates");
      return false;
    }
    EvpPkeyPtr key = load_private_key(tc.key, why);
    if (!key) {
      error(tc.mark, "private key " + quote(tc.key) + ": " + why);
      return false;
    }
    if (X509_check_private_key(leaf.get(), key.get()) != 1) {
      take_openssl_errors();
      error(tc.mark,
            "private key " + quote(tc.key) + " does not match certificate " + quote(tc.cert));
      return false;
    }
    // The chain file loader also enforces the security level on every
    // certificate ("ee key too small", "ca md too weak").
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(ctx, tc.cert.c_str()) != 1) {
      error(tc.mark,
            "certificate " + quote(tc.cert) + ": OpenSSL refuses it: " + take_openssl_errors());
      return false;
    }
    // The file was read twice; if it was replaced in between (a renewal
    // racing a reload), this check catches a key that no longer matches.
    if (SSL_CTX_use_PrivateKey(ctx, key.get()) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
      error(tc.mark,
            "private key " + quote(tc.key) + ": OpenSSL refuses it: " + take_openssl_errors());
      return false;
    }
    // Report what is served, from the second read.
    info = inspect_certificate(SSL_CTX_get0_certificate(ctx));
    info.cert_path = tc.cert;
    info.key_path = tc.key;
    check_validity(tc, info);
    return true;
  }

  void check_validity(const config::TlsCertificate& tc, const CertificateInfo& info) {
    if (info.not_after <= now) {
      warning(tc.mark, "certificate " + quote(tc.cert) + " expired on " +
                           format_utc(info.not_after) + "; clients will refuse it");
    } else if (info.not_before > now) {
      warning(tc.mark, "certificate " + quote(tc.cert) + " is not valid until " +
                           format_utc(info.not_before) + "; clients will refuse it until then");
    }
  }
};

}  // namespace

ServerContexts::BuildResult ServerContexts::build(const config::Listener& listener,
                                                  std::shared_ptr<TicketKeyRing> ring,
                                                  std::chrono::system_clock::time_point now) {
  BuildResult result;
  if (!listener.tls) {
    result.errors.push_back(error_at(listener.mark, "tls: the listener has no tls section"));
    return result;
  }
  const config::ListenerTls& tls = *listener.tls;
  if (!tls.session_tickets) {
    ring = nullptr;
  } else if (!ring) {
    result.errors.push_back(error_at(listener.mark, "tls: session_tickets needs a key ring"));
    return result;
  }
  Builder b(listener, ring,
            std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count(),
            result);
  if (tls.certificates.empty()) {
    b.error(listener.mark, "tls.certificates: at least one certificate is required");
  }
  b.load_client_ca();
  bool ciphers_ok = b.check_ciphers();

  auto set = std::make_shared<ServerContexts>(Private{});
  set->listener_name_ = listener.name;
  set->ring_ = ring;
  set->alpn_ = tls.alpn;
  set->client_ca_required_ = !tls.client_ca.empty();
  std::vector<unsigned char> sid_ctx = session_id_context(listener.name, b.client_ca_pem);
  for (const config::TlsCertificate& tc : tls.certificates) {
    // Keep going after a bad certificate: `ward check` lists every problem.
    SslCtxPtr ctx = ciphers_ok ? b.make_context(sid_ctx) : nullptr;
    CertificateInfo info;
    if (ctx && b.add_certificate(ctx.get(), tc, info)) {
      set->contexts_.push_back(std::move(ctx));
      set->certificates_.push_back(std::move(info));
    }
  }
  if (!result.ok()) {
    return result;
  }
  for (size_t i = 0; i < set->certificates_.size(); ++i) {
    size_t usable = set->sni_.add(i, set->certificates_[i].dns_names);
    if (usable == 0 && i > 0) {
      b.warning(tls.certificates[i].mark,
                "certificate " + quote(tls.certificates[i].cert) +
                    " has no usable DNS name in its subjectAltName: SNI never selects it "
                    "(only the first certificate is served without a match)");
    }
  }
  result.contexts = std::move(set);
  return result;
}

SslPtr ServerContexts::new_ssl() const {
  SslPtr ssl(SSL_new(contexts_.front().get()));
  if (!ssl) {
    ERR_clear_error();
    return nullptr;
  }
  auto* ref = new (std::nothrow) std::shared_ptr<const ServerContexts>(shared_from_this());
  if (ref == nullptr || SSL_set_ex_data(ssl.get(), contexts_index(), ref) != 1) {
    delete ref;
    ERR_clear_error();
    return nullptr;
  }
  SSL_set_accept_state(ssl.get());
  return ssl;
}

std::optional<size_t> ServerContexts::selected_certificate(const SSL* ssl) const {
  if (ServerCallbacks::of(ssl) != this) {
    return std::nullopt;
  }
  SSL_CTX* ctx = SSL_get_SSL_CTX(ssl);
  for (size_t i = 0; i < contexts_.size(); ++i) {
    if (contexts_[i].get() == ctx) {
      return i;
    }
  }
  return std::nullopt;
}

ServerContexts::BuildResult ServerContextsSlot::reload(const config::Listener& listener,
                                                       std::chrono::system_clock::time_point now) {
  ServerContexts::BuildResult result = ServerContexts::build(listener, ring_, now);
  if (result.ok()) {
    publish(result.contexts);
  }
  return result;
}

}  // namespace ward::tls
