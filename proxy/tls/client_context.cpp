#include "proxy/tls/client_context.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "proxy/tls/certificate.h"
#include "proxy/util/cidr.h"

namespace ward::tls {

namespace {

constexpr unsigned char kAlpnHttp1[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
constexpr int kSecurityLevel = 2;

config::ConfigError error_at(const config::Mark& mark, std::string message) {
  return config::ConfigError{mark.file, mark.line, mark.column, std::move(message)};
}

}  // namespace

ClientContext::BuildResult ClientContext::build(const config::Upstream& upstream) {
  BuildResult result;
  auto fail = [&](std::string message) {
    result.errors.push_back(error_at(upstream.mark, std::move(message)));
    return result;
  };
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) {
    return fail("tls: cannot create an OpenSSL context: " + take_openssl_errors());
  }
  SSL_CTX* c = ctx.get();
  SSL_CTX_set_security_level(c, kSecurityLevel);
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
  // SSL_CTX_set_alpn_protos returns 0 on success (unlike most of OpenSSL).
  if (SSL_CTX_set_alpn_protos(c, kAlpnHttp1, sizeof kAlpnHttp1) != 0) {
    return fail("tls: cannot set ALPN: " + take_openssl_errors());
  }
  if (!upstream.tls_ca.empty()) {
    std::string why;
    auto cas = load_ca_bundle(upstream.tls_ca, why);
    if (cas.empty()) {
      return fail("tls_ca \"" + upstream.tls_ca + "\": " + why);
    }
    X509_STORE* store = SSL_CTX_get_cert_store(c);
    for (const X509Ptr& ca : cas) {
      X509_STORE_add_cert(store, ca.get());
    }
  } else if (SSL_CTX_set_default_verify_paths(c) != 1) {
    return fail("tls: cannot load the system CA certificates: " + take_openssl_errors());
  }
  ERR_clear_error();
  auto context = std::make_shared<ClientContext>(Private{});
  context->ctx_ = std::move(ctx);
  context->server_name_ = upstream.tls_server_name;
  result.context = std::move(context);
  return result;
}

std::string ClientContext::verified_name(std::string_view server_host) const {
  return server_name_.empty() ? std::string(server_host) : server_name_;
}

SslPtr ClientContext::new_ssl(std::string_view server_host) const {
  std::string name = verified_name(server_host);
  if (name.empty()) {
    return nullptr;
  }
  SslPtr ssl(SSL_new(ctx_.get()));
  if (!ssl) {
    ERR_clear_error();
    return nullptr;
  }
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl.get());
  bool ok;
  if (util::IpAddress::parse(name) && name.front() != '[') {
    ok = X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str()) == 1;
  } else {
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    ok = X509_VERIFY_PARAM_set1_host(param, name.c_str(), name.size()) == 1 &&
         SSL_set_tlsext_host_name(ssl.get(), name.c_str()) == 1;
  }
  if (!ok) {
    ERR_clear_error();
    return nullptr;
  }
  SSL_set_connect_state(ssl.get());
  return ssl;
}

}  // namespace ward::tls
