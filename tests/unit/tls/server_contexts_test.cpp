#include "proxy/tls/server_contexts.h"

#include <gtest/gtest.h>

#include "tests/unit/tls/tls_test_support.h"

namespace ward::tls {
namespace {

using namespace std::chrono_literals;
using namespace testing;

class ServerContextsTest : public ::testing::Test {
 protected:
  ServerContextsTest()
      : ring_(std::make_shared<TicketKeyRing>(TicketKeyRing::Clock::time_point{})) {}

  ServerContexts::BuildResult build(
      const config::Listener& l,
      std::chrono::system_clock::time_point now = std::chrono::system_clock::now()) {
    return ServerContexts::build(l, ring_, now);
  }

  Connection connect(const ServerContexts& set, const ClientOptions& o) {
    return handshake(set.new_ssl(), make_client(o));
  }

  ClientOptions sni(const std::string& name) {
    ClientOptions o;
    o.sni = name;
    return o;
  }

  std::shared_ptr<TicketKeyRing> ring_;
};

// ---------------------------------------------------------------------------
// Certificates and SNI

TEST_F(ServerContextsTest, ServesTheFullChainFromTheChainFile) {
  // The client trusts only the root: verification needs the intermediate.
  auto set = build_ok(listener({"default"}), ring_);
  Connection c = connect(*set, sni("default.example.com"));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c.client_verify(), X509_V_OK);
  EXPECT_EQ(c.served_cn(), "default.example.com");
  EXPECT_EQ(sk_X509_num(SSL_get_peer_cert_chain(c.client.get())), 2);
}

class SniHandshakeTest : public ServerContextsTest {
 protected:
  void SetUp() override { set_ = build_ok(listener({"default", "api", "wild"}), ring_); }

  // The certificate the client was served for `name` (verified for it when
  // `verify` is true).
  std::string served(const std::string& name, bool verify = true) {
    ClientOptions o = sni(name);
    if (!verify) {
      o.trust = "";
    }
    Connection c = connect(*set_, o);
    EXPECT_TRUE(c.ok()) << name;
    EXPECT_EQ(set_->selected_certificate(c.server.get()), set_->select(name.empty() ? "" : name));
    return c.served_cn();
  }

  std::shared_ptr<const ServerContexts> set_;
};

TEST_F(SniHandshakeTest, ExactNamePicksTheRsaCertificate) {
  EXPECT_EQ(served("api.example.com"), "api.example.com");
  EXPECT_EQ(served("www.api.example.com"), "api.example.com");
}

TEST_F(SniHandshakeTest, WildcardNamePicksTheWildcardCertificate) {
  EXPECT_EQ(served("shop.apps.example.com"), "*.apps.example.com");
}

TEST_F(SniHandshakeTest, TwoLabelsUnderTheWildcardGetTheDefault) {
  EXPECT_EQ(served("a.b.apps.example.com", false), "default.example.com");
}

TEST_F(SniHandshakeTest, UnknownNameGetsTheDefault) {
  EXPECT_EQ(served("unknown.example.org", false), "default.example.com");
}

TEST_F(SniHandshakeTest, MissingSniGetsTheDefault) {
  ClientOptions o;
  o.verify_host = "default.example.com";
  Connection c = connect(*set_, o);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c.served_cn(), "default.example.com");
  EXPECT_EQ(server_name(c.server.get()), "");
  EXPECT_EQ(set_->selected_certificate(c.server.get()), 0u);
}

TEST_F(SniHandshakeTest, ServerNameIsReportedForLogs) {
  Connection c = connect(*set_, sni("API.example.com"));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(server_name(c.server.get()), "API.example.com");
  EXPECT_EQ(c.served_cn(), "api.example.com");
}

TEST_F(SniHandshakeTest, SelectedCertificateIsUnknownForAForeignSsl) {
  auto other = build_ok(listener({"default"}), ring_);
  SslPtr ssl = other->new_ssl();
  EXPECT_EQ(set_->selected_certificate(ssl.get()), std::nullopt);
}

// ---------------------------------------------------------------------------
// ALPN

class AlpnTest : public ServerContextsTest {
 protected:
  AppProtocol negotiate(const std::string& listener_alpn, std::vector<std::string> offer) {
    auto set = build_ok(listener({"default"}, listener_alpn), ring_);
    ClientOptions o = sni("default.example.com");
    o.alpn = std::move(offer);
    Connection c = connect(*set, o);
    EXPECT_TRUE(c.ok());
    return negotiated_protocol(c.server.get());
  }
};

TEST_F(AlpnTest, ServerPreferenceGivesH2EvenWhenTheClientListsItLast) {
  EXPECT_EQ(negotiate("", {"http/1.1", "h2"}), AppProtocol::h2);
}

TEST_F(AlpnTest, ListenerOrderDecides) {
  EXPECT_EQ(negotiate("      alpn: [http/1.1, h2]\n", {"h2", "http/1.1"}), AppProtocol::http1);
}

TEST_F(AlpnTest, Http1OnlyClientGetsHttp1) {
  EXPECT_EQ(negotiate("", {"http/1.1"}), AppProtocol::http1);
}

TEST_F(AlpnTest, ClientWithoutAlpnGetsNone) {
  EXPECT_EQ(negotiate("", {}), AppProtocol::none);
  EXPECT_EQ(to_string(AppProtocol::none), "none");
}

TEST_F(AlpnTest, H2ClientOnAnHttp1OnlyListenerGetsHttp1WhenItAlsoOffersIt) {
  EXPECT_EQ(negotiate("      alpn: [http/1.1]\n", {"h2", "http/1.1"}), AppProtocol::http1);
}

TEST_F(AlpnTest, NoCommonProtocolFailsTheHandshake) {
  auto set = build_ok(listener({"default"}, "      alpn: [h2]\n"), ring_);
  ClientOptions o = sni("default.example.com");
  o.alpn = {"spdy/3.1", "http/1.1"};
  Connection c = connect(*set, o);
  EXPECT_FALSE(c.server_ok);
  EXPECT_EQ(c.server_error, HandshakeError::no_application_protocol);
}

// ---------------------------------------------------------------------------
// Protocol versions and ciphers

class VersionTest : public ServerContextsTest {
 protected:
  Connection with_versions(const std::string& extra, int min, int max) {
    auto set = build_ok(listener({"default"}, extra), ring_);
    ClientOptions o = sni("default.example.com");
    o.min_version = min;
    o.max_version = max;
    o.legacy = true;  // let the client offer what the server must refuse
    return connect(*set, o);
  }
};

TEST_F(VersionTest, Tls13IsNegotiatedByDefault) {
  Connection c = with_versions("", TLS1_2_VERSION, TLS1_3_VERSION);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(protocol_version(c.server.get()), "TLSv1.3");
}

TEST_F(VersionTest, Tls12ClientIsServed) {
  Connection c = with_versions("", TLS1_2_VERSION, TLS1_2_VERSION);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(protocol_version(c.server.get()), "TLSv1.2");
}

TEST_F(VersionTest, Tls10And11AreRefused) {
  for (int v : {TLS1_VERSION, TLS1_1_VERSION}) {
    Connection c = with_versions("", v, v);
    EXPECT_FALSE(c.server_ok) << v;
    EXPECT_EQ(c.server_error, HandshakeError::unsupported_protocol) << v;
  }
}

TEST_F(VersionTest, MinVersion13RefusesTls12) {
  Connection c = with_versions("      min_version: \"1.3\"\n", TLS1_2_VERSION, TLS1_2_VERSION);
  EXPECT_FALSE(c.server_ok);
  EXPECT_EQ(c.server_error, HandshakeError::unsupported_protocol);
  Connection ok = with_versions("      min_version: \"1.3\"\n", TLS1_2_VERSION, TLS1_3_VERSION);
  EXPECT_TRUE(ok.ok());
}

TEST_F(ServerContextsTest, DefaultTls12CiphersAreEcdheWithAeadOnly) {
  auto set = build_ok(listener({"default"}), ring_);
  SslPtr ssl = set->new_ssl();
  STACK_OF(SSL_CIPHER)* ciphers = SSL_get_ciphers(ssl.get());
  int tls12 = 0;
  for (int i = 0; i < sk_SSL_CIPHER_num(ciphers); ++i) {
    const SSL_CIPHER* c = sk_SSL_CIPHER_value(ciphers, i);
    if (std::string_view(SSL_CIPHER_get_version(c)) == "TLSv1.3") {
      continue;
    }
    ++tls12;
    EXPECT_EQ(SSL_CIPHER_get_kx_nid(c), NID_kx_ecdhe) << SSL_CIPHER_get_name(c);
    EXPECT_EQ(SSL_CIPHER_is_aead(c), 1) << SSL_CIPHER_get_name(c);
  }
  EXPECT_EQ(tls12, 6);
}

TEST_F(ServerContextsTest, ClientOfferingOnlyCbcOrRsaKeyExchangeIsRefused) {
  auto set = build_ok(listener({"default", "api"}), ring_);
  for (const char* offer : {"AES128-SHA", "ECDHE-RSA-AES128-SHA", "AES128-GCM-SHA256",
                            "ECDHE-ECDSA-AES128-SHA256", "DHE-RSA-AES128-GCM-SHA256"}) {
    ClientOptions o = sni("api.example.com");
    o.max_version = TLS1_2_VERSION;
    o.ciphers = offer;
    o.legacy = true;
    Connection c = connect(*set, o);
    EXPECT_FALSE(c.server_ok) << offer;
    EXPECT_EQ(c.server_error, HandshakeError::no_shared_cipher) << offer;
  }
}

TEST_F(ServerContextsTest, ServerCipherOrderWins) {
  auto set = build_ok(listener({"default"}), ring_);
  ClientOptions o = sni("default.example.com");
  o.max_version = TLS1_2_VERSION;
  o.ciphers = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256";
  Connection c = connect(*set, o);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(cipher_name(c.server.get()), "ECDHE-ECDSA-AES128-GCM-SHA256");
}

TEST_F(ServerContextsTest, CustomCipherListIsUsed) {
  auto set =
      build_ok(listener({"default"}, "      ciphers: ECDHE-ECDSA-AES256-GCM-SHA384\n"), ring_);
  ClientOptions o = sni("default.example.com");
  o.max_version = TLS1_2_VERSION;
  Connection c = connect(*set, o);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(cipher_name(c.server.get()), "ECDHE-ECDSA-AES256-GCM-SHA384");
}

TEST_F(ServerContextsTest, RenegotiationAndCompressionAreOff) {
  auto set = build_ok(listener({"default"}), ring_);
  SslPtr ssl = set->new_ssl();
  uint64_t options = SSL_get_options(ssl.get());
  EXPECT_NE(options & SSL_OP_NO_RENEGOTIATION, 0u);
  EXPECT_NE(options & SSL_OP_NO_COMPRESSION, 0u);
  EXPECT_NE(options & SSL_OP_CIPHER_SERVER_PREFERENCE, 0u);
  EXPECT_EQ(SSL_get_max_early_data(ssl.get()), 0u);
}

// ---------------------------------------------------------------------------
// Client certificates (mTLS)

class MutualTlsTest : public ServerContextsTest {
 protected:
  void SetUp() override {
    set_ =
        build_ok(listener({"default"}, "      client_ca: " + Pki::get().crt("ca") + "\n"), ring_);
  }

  Connection with_client_cert(const std::string& cert, int version = TLS1_3_VERSION) {
    ClientOptions o = sni("default.example.com");
    o.cert = cert;
    o.max_version = version;
    return connect(*set_, o);
  }

  std::shared_ptr<const ServerContexts> set_;
};

TEST_F(MutualTlsTest, CaSignedClientCertificateIsAcceptedAndNamed) {
  for (int v : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    Connection c = with_client_cert("client", v);
    ASSERT_TRUE(c.ok()) << v;
    EXPECT_EQ(peer_subject(c.server.get()), "CN=client-1,O=ward tests") << v;
  }
  EXPECT_TRUE(set_->client_certificates_required());
}

TEST_F(MutualTlsTest, ClientWithoutCertificateIsRejected) {
  Connection c = with_client_cert("");
  EXPECT_FALSE(c.server_ok);
  EXPECT_EQ(c.server_error, HandshakeError::no_client_certificate);
}

TEST_F(MutualTlsTest, CertificateFromAnotherCaIsRejected) {
  Connection c = with_client_cert("rogue_client");
  EXPECT_FALSE(c.server_ok);
  EXPECT_EQ(c.server_error, HandshakeError::unknown_ca);
}

TEST_F(MutualTlsTest, ExpiredClientCertificateIsRejected) {
  Connection c = with_client_cert("expired_client");
  EXPECT_FALSE(c.server_ok);
  EXPECT_EQ(c.server_error, HandshakeError::bad_certificate);
}

TEST_F(MutualTlsTest, ResumedSessionKeepsTheVerifiedSubject) {
  Connection first = with_client_cert("client");
  ASSERT_TRUE(first.ok());
  SessionPtr session(take_session(first));
  ClientOptions o = sni("default.example.com");
  o.cert = "client";
  o.session = session.get();
  Connection again = connect(*set_, o);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again.resumed());
  EXPECT_EQ(peer_subject(again.server.get()), "CN=client-1,O=ward tests");
}

TEST_F(MutualTlsTest, SessionFromAListenerWithoutClientCaDoesNotResumeHere) {
  // Same listener name, same ring: only client_ca differs (a reload that
  // turned mTLS on). The old session must not skip the certificate check.
  auto plain = build_ok(listener({"default"}), ring_);
  Connection first = connect(*plain, sni("default.example.com"));
  ASSERT_TRUE(first.ok());
  SessionPtr session(take_session(first));
  ClientOptions o = sni("default.example.com");
  o.session = session.get();
  Connection again = connect(*set_, o);
  EXPECT_FALSE(again.resumed());
  EXPECT_FALSE(again.server_ok);
  EXPECT_EQ(again.server_error, HandshakeError::no_client_certificate);
}

TEST_F(ServerContextsTest, WithoutClientCaNoCertificateIsAskedFor) {
  auto set = build_ok(listener({"default"}), ring_);
  ClientOptions o = sni("default.example.com");
  o.cert = "client";
  Connection c = connect(*set, o);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(peer_subject(c.server.get()), std::nullopt);
  EXPECT_FALSE(set->client_certificates_required());
}

// ---------------------------------------------------------------------------
// Reload

TEST_F(ServerContextsTest, ReloadSwapsCertificatesAndKeepsOpenConnections) {
  Pki& pki = Pki::get();
  pki.issue("reloaded", CertSpec("before").with_dns({"reload.example.com"}));
  config::Listener l = listener({"reloaded"});
  auto first = build_ok(l, ring_);
  ServerContextsSlot slot(first, ring_);

  Connection open = connect(*slot.current(), sni("reload.example.com"));
  ASSERT_TRUE(open.ok());
  EXPECT_EQ(open.served_cn(), "before");

  pki.issue("reloaded", CertSpec("after").with_dns({"reload.example.com"}));  // certbot renews
  auto result = slot.reload(l, std::chrono::system_clock::now());
  ASSERT_TRUE(result.ok()) << join_errors(result.errors);
  EXPECT_NE(slot.current(), first);

  Connection fresh = connect(*slot.current(), sni("reload.example.com"));
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(fresh.served_cn(), "after");
  // The connection made before the reload still works, on the old contexts,
  // even once nothing but the connection refers to them.
  first.reset();
  EXPECT_TRUE(echo(open, "still here"));
}

TEST_F(ServerContextsTest, FailedReloadKeepsServingTheOldCertificates) {
  Pki& pki = Pki::get();
  pki.issue("reload_bad", CertSpec("good").with_dns({"bad.example.com"}));
  config::Listener l = listener({"reload_bad"});
  auto first = build_ok(l, ring_);
  ServerContextsSlot slot(first, ring_);

  write_file(pki.key("reload_bad"), pem_of(pki.pkey("api")));  // a key for another cert
  auto result = slot.reload(l, std::chrono::system_clock::now());
  EXPECT_FALSE(result.ok());
  EXPECT_EQ(slot.current(), first);
  Connection c = connect(*slot.current(), sni("bad.example.com"));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c.served_cn(), "good");
}

// ---------------------------------------------------------------------------
// Metrics: certificate expiry

TEST_F(ServerContextsTest, ReportsEveryCertificateWithItsExpiry) {
  auto set = build_ok(listener({"default", "api"}), ring_);
  EXPECT_EQ(set->listener_name(), "websecure");
  ASSERT_EQ(set->certificates().size(), 2u);
  const CertificateInfo& def = set->certificates()[0];
  EXPECT_EQ(def.cert_path, Pki::get().path("default_chain.crt"));
  EXPECT_EQ(def.key_type, "EC P-256");
  EXPECT_EQ(def.dns_names, std::vector<std::string>{"default.example.com"});
  EXPECT_EQ(def.subject, "CN=default.example.com,O=ward tests");
  EXPECT_EQ(def.not_after, asn1_time_to_unix(X509_get0_notAfter(Pki::get().cert("default"))));
  EXPECT_EQ(def.not_before, asn1_time_to_unix(X509_get0_notBefore(Pki::get().cert("default"))));
  const CertificateInfo& api = set->certificates()[1];
  EXPECT_EQ(api.key_type, "RSA 2048");
  EXPECT_EQ(api.key_path, Pki::get().key("api"));
  int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  EXPECT_NEAR(static_cast<double>(api.not_after - now), 30 * 86400.0, 120.0);
}

}  // namespace
}  // namespace ward::tls
