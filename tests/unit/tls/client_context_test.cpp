// Upstream TLS: the client context verifies the server (tls_ca or system
// CAs) for tls_server_name or the server's host, and sends SNI.

#include "proxy/tls/client_context.h"

#include <gtest/gtest.h>

#include "tests/unit/tls/tls_test_support.h"

namespace ward::tls {
namespace {

using namespace testing;

class ClientContextTest : public ::testing::Test {
 protected:
  ClientContextTest()
      : servers_(build_ok(listener({"upstream", "api"}),
                          std::make_shared<TicketKeyRing>(TicketKeyRing::Clock::time_point{}))) {}

  config::Upstream upstream(const std::string& keys) {
    auto cfg = load_config(config_yaml(certs_yaml({"default"}), "    tls: true\n" + keys));
    return cfg ? cfg->upstreams.at(0) : config::Upstream{};
  }

  std::shared_ptr<const ClientContext> context(const std::string& keys) {
    auto r = ClientContext::build(upstream(keys));
    EXPECT_TRUE(r.ok()) << join_errors(r.errors);
    return r.context;
  }

  Connection connect(const ClientContext& ctx, const std::string& host) {
    SslPtr ssl = ctx.new_ssl(host);
    EXPECT_NE(ssl, nullptr);
    return handshake(servers_->new_ssl(), std::move(ssl));
  }

  std::string ca_keys() { return "    tls_ca: " + Pki::get().crt("ca") + "\n"; }

  std::shared_ptr<const ServerContexts> servers_;
};

TEST_F(ClientContextTest, VerifiesTheServerForItsHostAgainstTlsCa) {
  auto ctx = context(ca_keys());
  Connection c = connect(*ctx, "api.example.com");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c.client_verify(), X509_V_OK);
  EXPECT_EQ(server_name(c.server.get()), "api.example.com");  // SNI sent
  EXPECT_EQ(c.served_cn(), "api.example.com");
  EXPECT_EQ(negotiated_protocol(c.client.get()), AppProtocol::http1);
}

TEST_F(ClientContextTest, TlsServerNameOverridesTheHostForSniAndVerification) {
  auto ctx = context(ca_keys() + "    tls_server_name: www.api.example.com\n");
  EXPECT_EQ(ctx->verified_name("10.0.0.5"), "www.api.example.com");
  Connection c = connect(*ctx, "10.0.0.5");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(server_name(c.server.get()), "www.api.example.com");
  EXPECT_EQ(c.served_cn(), "api.example.com");
}

TEST_F(ClientContextTest, NameTheCertificateDoesNotCarryFails) {
  auto ctx = context(ca_keys() + "    tls_server_name: other.example.com\n");
  Connection c = connect(*ctx, "127.0.0.1");
  EXPECT_FALSE(c.client_ok);
  EXPECT_EQ(c.client_verify(), X509_V_ERR_HOSTNAME_MISMATCH);
}

TEST_F(ClientContextTest, IpLiteralIsVerifiedAgainstIpSansWithoutSni) {
  auto ctx = context(ca_keys());
  Connection c = connect(*ctx, "127.0.0.1");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(server_name(c.server.get()), "");  // RFC 6066: no IP literals in SNI
  EXPECT_EQ(c.served_cn(), "upstream");
  Connection wrong = connect(*ctx, "127.0.0.2");
  EXPECT_FALSE(wrong.client_ok);
  EXPECT_EQ(wrong.client_verify(), X509_V_ERR_IP_ADDRESS_MISMATCH);
}

TEST_F(ClientContextTest, SystemCasDoNotTrustAPrivateCa) {
  auto ctx = context("");
  Connection c = connect(*ctx, "api.example.com");
  EXPECT_FALSE(c.client_ok);
  EXPECT_EQ(c.client_verify(), X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
}

TEST_F(ClientContextTest, CaOtherThanTheIssuerFails) {
  auto ctx = context("    tls_ca: " + Pki::get().crt("other_ca") + "\n");
  Connection c = connect(*ctx, "api.example.com");
  EXPECT_FALSE(c.client_ok);
  EXPECT_NE(c.client_verify(), X509_V_OK);
}

TEST_F(ClientContextTest, UnparsableTlsCaIsAConfigErrorAtTheUpstream) {
  std::string path = Pki::get().path("garbage.pem");
  auto r = ClientContext::build(upstream("    tls_ca: " + path + "\n"));
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.context, nullptr);
  // The upstream's name `app:` is at line 12, column 3 of config_yaml's layout.
  EXPECT_EQ(r.errors[0].to_string(),
            "test.yaml:12:3: tls_ca \"" + path + "\": no PEM CA certificate in the file");
}

TEST_F(ClientContextTest, EmptyHostWithoutServerNameGivesNoSsl) {
  auto ctx = context(ca_keys());
  EXPECT_EQ(ctx->new_ssl(""), nullptr);
}

}  // namespace
}  // namespace ward::tls
