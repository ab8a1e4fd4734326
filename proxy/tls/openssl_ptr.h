#pragma once

// Owning handles for OpenSSL objects, so every early return frees what it
// made, and the reason text of OpenSSL's per-thread error queue for messages.

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <memory>
#include <string>

namespace ward::tls {

template <auto Free>
struct OpensslDeleter {
  template <typename T>
  void operator()(T* p) const {
    Free(p);
  }
};

using SslPtr = std::unique_ptr<SSL, OpensslDeleter<SSL_free>>;
using SslCtxPtr = std::unique_ptr<SSL_CTX, OpensslDeleter<SSL_CTX_free>>;
using X509Ptr = std::unique_ptr<X509, OpensslDeleter<X509_free>>;
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, OpensslDeleter<EVP_PKEY_free>>;
using BioPtr = std::unique_ptr<BIO, OpensslDeleter<BIO_free_all>>;
using X509StorePtr = std::unique_ptr<X509_STORE, OpensslDeleter<X509_STORE_free>>;
using SslSessionPtr = std::unique_ptr<SSL_SESSION, OpensslDeleter<SSL_SESSION_free>>;

// The reason strings of every error queued on this thread ("ee key too
// small; ..."), oldest first, and clears the queue. "" when it is empty.
std::string take_openssl_errors();

}  // namespace ward::tls
