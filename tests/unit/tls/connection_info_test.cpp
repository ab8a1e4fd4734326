// Handshake failure reasons (the labels of ward_tls_handshake_errors_total)
// for the cases the other suites do not already drive.

#include "proxy/tls/connection_info.h"

#include <gtest/gtest.h>

#include <set>

#include "tests/unit/tls/tls_test_support.h"

namespace ward::tls {
namespace {

using namespace testing;

class HandshakeErrorTest : public ::testing::Test {
 protected:
  HandshakeErrorTest()
      : set_(build_ok(listener({"default"}),
                      std::make_shared<TicketKeyRing>(TicketKeyRing::Clock::time_point{}))) {}

  // Feeds raw bytes (then EOF) to a server SSL; the reason it fails with.
  std::optional<HandshakeError> feed(const std::string& bytes) {
    SslPtr server = set_->new_ssl();
    BIO* server_bio = nullptr;
    BIO* peer = nullptr;
    BIO_new_bio_pair(&server_bio, 0, &peer, 0);
    SSL_set_bio(server.get(), server_bio, server_bio);
    if (!bytes.empty()) {
      BIO_write(peer, bytes.data(), static_cast<int>(bytes.size()));
    }
    BIO_shutdown_wr(peer);
    std::optional<HandshakeError> reason;
    int r = SSL_do_handshake(server.get());
    if (r != 1) {
      reason = classify_handshake_error(server.get(), r);
    }
    BIO_free(peer);
    return reason;
  }

  std::shared_ptr<const ServerContexts> set_;
};

TEST_F(HandshakeErrorTest, PlainHttpOnTheTlsPortIsNotTls) {
  EXPECT_EQ(feed("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"), HandshakeError::not_tls);
  EXPECT_EQ(feed("CONNECT example.com:443 HTTP/1.1\r\n\r\n"), HandshakeError::not_tls);
}

TEST_F(HandshakeErrorTest, GarbageRecordIsNotTls) {
  EXPECT_EQ(feed(std::string("\x16\x09\x09\x00\x05hello", 10)), HandshakeError::not_tls);
}

TEST_F(HandshakeErrorTest, PeerClosingBeforeAnyByteIsClosed) {
  EXPECT_EQ(feed(""), HandshakeError::closed);
}

TEST_F(HandshakeErrorTest, PeerClosingMidHandshakeIsClosed) {
  EXPECT_EQ(feed(std::string("\x16\x03\x01\x00\x40\x01\x00", 7)), HandshakeError::closed);
}

TEST_F(HandshakeErrorTest, ClientRejectingOurCertificateIsCertificateRejected) {
  ClientOptions o;
  o.sni = "default.example.com";
  o.trust = "other_ca";  // does not trust our chain: sends an unknown_ca alert
  Connection c = handshake(set_->new_ssl(), make_client(o));
  EXPECT_FALSE(c.client_ok);
  EXPECT_FALSE(c.server_ok);
  EXPECT_EQ(c.server_error, HandshakeError::certificate_rejected);
}

TEST_F(HandshakeErrorTest, ClassifyingEmptiesTheErrorQueue) {
  feed("GET / HTTP/1.1\r\n\r\n");
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST_F(HandshakeErrorTest, PackedErrorCodeAsAsioReportsItIsClassifiedTheSame) {
  // What asio's engine does: SSL_get_error, then the first ERR_get_error().
  SslPtr server = set_->new_ssl();
  BIO* server_bio = nullptr;
  BIO* peer = nullptr;
  BIO_new_bio_pair(&server_bio, 0, &peer, 0);
  SSL_set_bio(server.get(), server_bio, server_bio);
  std::string http = "GET / HTTP/1.1\r\n\r\n";
  BIO_write(peer, http.data(), static_cast<int>(http.size()));
  ERR_clear_error();
  int r = SSL_do_handshake(server.get());
  ASSERT_EQ(SSL_get_error(server.get(), r), SSL_ERROR_SSL);
  auto code = static_cast<unsigned long>(static_cast<int>(ERR_get_error()));
  ERR_clear_error();
  EXPECT_EQ(classify_handshake_error_code(server.get(), code), HandshakeError::not_tls);
  EXPECT_EQ(classify_handshake_error_code(server.get(), 0), HandshakeError::closed);
  EXPECT_EQ(classify_handshake_error_code(server.get(), ERR_PACK(ERR_LIB_X509, 0, 1)),
            HandshakeError::other);
  EXPECT_EQ(classify_handshake_error_code(
                server.get(), ERR_PACK(ERR_LIB_SSL, 0, SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)),
            HandshakeError::no_client_certificate);
  BIO_free(peer);
}

TEST(HandshakeErrorLabelTest, EveryReasonHasADistinctSnakeCaseLabel) {
  std::set<std::string_view> labels;
  for (HandshakeError e : kHandshakeErrors) {
    std::string_view label = to_string(e);
    EXPECT_TRUE(labels.insert(label).second) << label;
    for (char c : label) {
      EXPECT_TRUE((c >= 'a' && c <= 'z') || c == '_') << label;
    }
  }
  EXPECT_EQ(to_string(HandshakeError::other), "other");
  EXPECT_EQ(to_string(HandshakeError::no_shared_cipher), "no_shared_cipher");
}

TEST(AppProtocolTest, NamesMatchTheAlpnIds) {
  EXPECT_EQ(to_string(AppProtocol::h2), "h2");
  EXPECT_EQ(to_string(AppProtocol::http1), "http/1.1");
}

}  // namespace
}  // namespace ward::tls
