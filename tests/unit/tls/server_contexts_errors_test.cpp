// Every error and warning ServerContexts::build reports, with the config
// position it carries (what `ward check` prints).

#include <gtest/gtest.h>

#include "proxy/tls/server_contexts.h"
#include "tests/unit/tls/tls_test_support.h"

namespace ward::tls {
namespace {

using namespace testing;

class BuildErrorsTest : public ::testing::Test {
 protected:
  BuildErrorsTest() : ring_(std::make_shared<TicketKeyRing>(TicketKeyRing::Clock::time_point{})) {}

  // A listener whose certificates are these (cert, key) file pairs.
  config::Listener with_files(const std::vector<std::pair<std::string, std::string>>& files,
                              const std::string& extra = "") {
    std::string y = "      certificates:\n";
    for (const auto& [cert, key] : files) {
      y += "        - cert: " + cert + "\n          key: " + key + "\n";
    }
    auto cfg = load_config(config_yaml(y + extra));
    return cfg ? cfg->listeners.at(0) : config::Listener{};
  }

  ServerContexts::BuildResult build(
      const config::Listener& l,
      std::chrono::system_clock::time_point now = std::chrono::system_clock::now()) {
    return ServerContexts::build(l, ring_, now);
  }

  // The only error's text, "file:line:col: message".
  std::string only_error(const ServerContexts::BuildResult& r) {
    EXPECT_EQ(r.errors.size(), 1u) << join_errors(r.errors);
    EXPECT_EQ(r.contexts, nullptr);
    return r.errors.empty() ? "" : r.errors[0].to_string();
  }

  std::string only_warning(const ServerContexts::BuildResult& r) {
    EXPECT_TRUE(r.ok()) << join_errors(r.errors);
    EXPECT_NE(r.contexts, nullptr);
    EXPECT_EQ(r.warnings.size(), 1u) << join_errors(r.warnings);
    return r.warnings.empty() ? "" : r.warnings[0].to_string();
  }

  static std::string q(const std::string& s) { return "\"" + s + "\""; }

  const Pki& pki_ = Pki::get();
  std::shared_ptr<TicketKeyRing> ring_;
};

// The first certificate item starts at line 6, column 11 of config_yaml's
// layout; the listener at line 2, column 5.
constexpr const char* kFirstCert = "test.yaml:6:11: ";
constexpr const char* kSecondCert = "test.yaml:8:11: ";
constexpr const char* kListener = "test.yaml:2:5: ";

TEST_F(BuildErrorsTest, CertificateMarkIsSetByTheLoader) {
  config::Listener l = listener({"default", "api"});
  ASSERT_EQ(l.tls->certificates.size(), 2u);
  EXPECT_EQ(l.tls->certificates[0].mark.file, "test.yaml");
  EXPECT_EQ(l.tls->certificates[0].mark.line, 6);
  EXPECT_EQ(l.tls->certificates[0].mark.column, 11);
  EXPECT_EQ(l.tls->certificates[1].mark.line, 8);
}

TEST_F(BuildErrorsTest, UnreadableCertificate) {
  std::string path = pki_.path("vanishing.crt");
  write_file(path, pem_of(pki_.cert("api")));
  config::Listener l = with_files({{path, pki_.key("api")}});
  std::filesystem::remove(path);  // gone between `ward check` and start
  EXPECT_EQ(only_error(build(l)), std::string(kFirstCert) + "certificate " + q(path) +
                                      ": cannot read: No such file or directory");
}

TEST_F(BuildErrorsTest, CertificateFileThatIsADirectory) {
  config::Listener l = with_files({{pki_.crt("api"), pki_.key("api")}});
  l.tls->certificates[0].cert = pki_.path("");
  EXPECT_EQ(only_error(build(l)), std::string(kFirstCert) + "certificate " + q(pki_.path("")) +
                                      ": cannot read: is a directory");
}

TEST_F(BuildErrorsTest, CertificateFileWithoutPem) {
  for (const char* file : {"garbage.pem", "empty.pem"}) {
    std::string path = pki_.path(file);
    EXPECT_EQ(
        only_error(build(with_files({{path, pki_.key("api")}}))),
        std::string(kFirstCert) + "certificate " + q(path) + ": no PEM certificate in the file");
  }
}

TEST_F(BuildErrorsTest, DamagedPemCertificateGivesOpenSslsReason) {
  std::string path = pki_.path("damaged.crt");
  write_file(path, "-----BEGIN CERTIFICATE-----\n!!!!not base64!!!!\n-----END CERTIFICATE-----\n");
  std::string e = only_error(build(with_files({{path, pki_.key("api")}})));
  EXPECT_EQ(e.rfind(std::string(kFirstCert) + "certificate " + q(path) +
                        ": cannot parse the PEM certificate (",
                    0),
            0u)
      << e;
}

TEST_F(BuildErrorsTest, KeyFileWithoutPem) {
  std::string path = pki_.path("garbage.pem");
  EXPECT_EQ(
      only_error(build(with_files({{pki_.crt("api"), path}}))),
      std::string(kFirstCert) + "private key " + q(path) + ": no PEM private key in the file");
}

TEST_F(BuildErrorsTest, EncryptedKey) {
  std::string path = pki_.path("encrypted.key");
  EXPECT_EQ(only_error(build(with_files({{pki_.path("default_chain.crt"), path}}))),
            std::string(kFirstCert) + "private key " + q(path) +
                ": the key is encrypted and ward cannot ask for a passphrase (store it "
                "unencrypted, readable only by ward)");
}

TEST_F(BuildErrorsTest, KeyThatDoesNotMatchTheCertificate) {
  // Same type (EC) and different types (RSA certificate, EC key).
  for (const char* cert : {"wild", "api"}) {
    EXPECT_EQ(only_error(build(with_files({{pki_.crt(cert), pki_.key("default")}}))),
              std::string(kFirstCert) + "private key " + q(pki_.key("default")) +
                  " does not match certificate " + q(pki_.crt(cert)));
  }
}

TEST_F(BuildErrorsTest, RsaKeyBelowSecurityLevelIsRefused) {
  EXPECT_EQ(only_error(build(with_files({{pki_.crt("weak"), pki_.key("weak")}}))),
            std::string(kFirstCert) + "certificate " + q(pki_.crt("weak")) +
                ": OpenSSL refuses it: ee key too small");
}

TEST_F(BuildErrorsTest, KeyTypeOtherThanRsaOrEcdsa) {
  EXPECT_EQ(only_error(build(with_files({{pki_.crt("ed25519"), pki_.key("ed25519")}}))),
            std::string(kFirstCert) + "certificate " + q(pki_.crt("ed25519")) +
                ": its key is ED25519; ward serves RSA and ECDSA certificates");
}

TEST_F(BuildErrorsTest, EveryBadCertificateIsReported) {
  auto r = build(with_files(
      {{pki_.crt("api"), pki_.key("default")}, {pki_.path("garbage.pem"), pki_.key("wild")}}));
  ASSERT_EQ(r.errors.size(), 2u) << join_errors(r.errors);
  EXPECT_EQ(r.errors[0].to_string().rfind(kFirstCert, 0), 0u) << r.errors[0].to_string();
  EXPECT_EQ(r.errors[1].to_string().rfind(kSecondCert, 0), 0u) << r.errors[1].to_string();
}

TEST_F(BuildErrorsTest, UnparsableClientCa) {
  std::string path = pki_.path("garbage.pem");
  EXPECT_EQ(
      only_error(build(listener({"default"}, "      client_ca: " + path + "\n"))),
      std::string(kListener) + "client_ca " + q(path) + ": no PEM CA certificate in the file");
}

TEST_F(BuildErrorsTest, UnknownCipherList) {
  EXPECT_EQ(only_error(build(listener({"default"}, "      ciphers: NOPE-NOT-A-CIPHER\n"))),
            std::string(kListener) +
                "ciphers: OpenSSL knows none of the TLS 1.2 ciphers in \"NOPE-NOT-A-CIPHER\" "
                "(write \"default\", or an OpenSSL cipher list)");
}

TEST_F(BuildErrorsTest, TicketsWithoutARing) {
  auto r = ServerContexts::build(listener({"default"}), nullptr, std::chrono::system_clock::now());
  EXPECT_EQ(only_error(r), std::string(kListener) + "tls: session_tickets needs a key ring");
}

TEST_F(BuildErrorsTest, ListenerWithoutTls) {
  config::Listener l = listener({"default"});
  l.tls.reset();
  EXPECT_EQ(only_error(build(l)), std::string(kListener) + "tls: the listener has no tls section");
}

// ---------------------------------------------------------------------------
// Warnings: the listener still serves.

TEST_F(BuildErrorsTest, ExpiredCertificateIsAWarning) {
  int64_t not_after = *asn1_time_to_unix(X509_get0_notAfter(pki_.cert("expired")));
  auto r = build(listener({"expired"}));
  EXPECT_EQ(only_warning(r), std::string(kFirstCert) + "certificate " + q(pki_.crt("expired")) +
                                 " expired on " + format_utc(not_after) +
                                 "; clients will refuse it");
  ClientOptions o;
  o.trust = "";
  EXPECT_TRUE(handshake(r.contexts->new_ssl(), make_client(o)).ok());
}

TEST_F(BuildErrorsTest, NotYetValidCertificateIsAWarning) {
  int64_t not_before = *asn1_time_to_unix(X509_get0_notBefore(pki_.cert("future")));
  EXPECT_EQ(only_warning(build(listener({"future"}))),
            std::string(kFirstCert) + "certificate " + q(pki_.crt("future")) +
                " is not valid until " + format_utc(not_before) +
                "; clients will refuse it until then");
}

TEST_F(BuildErrorsTest, ValidityIsJudgedAtTheInjectedTime) {
  config::Listener l = listener({"api"});
  int64_t not_after = *asn1_time_to_unix(X509_get0_notAfter(pki_.cert("api")));
  auto at = [](int64_t unix) {
    return std::chrono::system_clock::time_point(std::chrono::seconds(unix));
  };
  EXPECT_TRUE(build(l, at(not_after - 1)).warnings.empty());
  EXPECT_NE(only_warning(build(l, at(not_after))).find("expired on"), std::string::npos);
}

TEST_F(BuildErrorsTest, CertificateSniCanNeverSelectIsAWarning) {
  EXPECT_EQ(only_warning(build(listener({"default", "nosan"}))),
            std::string(kSecondCert) + "certificate " + q(pki_.crt("nosan")) +
                " has no usable DNS name in its subjectAltName: SNI never selects it (only the "
                "first certificate is served without a match)");
  // As the default it is served to everyone: nothing to say.
  EXPECT_TRUE(build(listener({"nosan"})).warnings.empty());
}

}  // namespace
}  // namespace ward::tls
