#include "proxy/tls/ticket_key_ring.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace ward::tls {

namespace {

// Wipes a key copy when it leaves scope: key material should not linger on
// worker stacks after the callback returns.
struct ScopedKey {
  TicketKey key;
  ~ScopedKey() { OPENSSL_cleanse(&key, sizeof key); }
};

// AES-256-CBC, fetched from the default provider once. EVP_aes_256_cbc() is a
// legacy handle that every EVP_EncryptInit_ex resolves again (a locked lookup
// in the provider's store), and two tickets per TLS 1.3 handshake pay it.
const EVP_CIPHER* ticket_cipher() {
  static EVP_CIPHER* const fetched = EVP_CIPHER_fetch(nullptr, "AES-256-CBC", nullptr);
  return fetched != nullptr ? fetched : EVP_aes_256_cbc();
}

// Keys `cipher` with AES-256-CBC and `mac` with HMAC-SHA256, the pair RFC
// 5077 4 recommends (and OpenSSL's own default ticket keys use).
bool init_crypto(const TicketKey& key, const unsigned char* iv, EVP_CIPHER_CTX* cipher,
                 EVP_MAC_CTX* mac, bool encrypt) {
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(
          OSSL_MAC_PARAM_KEY, const_cast<uint8_t*>(key.hmac_key.data()), key.hmac_key.size()),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>("SHA256"), 0),
      OSSL_PARAM_construct_end(),
  };
  if (EVP_MAC_CTX_set_params(mac, params) != 1) {
    return false;
  }
  return encrypt
             ? EVP_EncryptInit_ex(cipher, ticket_cipher(), nullptr, key.aes_key.data(), iv) == 1
             : EVP_DecryptInit_ex(cipher, ticket_cipher(), nullptr, key.aes_key.data(), iv) == 1;
}

}  // namespace

TicketKeyRing::TicketKeyRing(Clock::time_point now, Timing timing) : timing_(timing) {
  Entry first;
  if (!make_key(first.key)) {
    throw std::runtime_error("cannot make a session ticket key: no random bytes");
  }
  first.created = now;
  keys_.push_back(first);
  OPENSSL_cleanse(&first.key, sizeof first.key);
}

TicketKeyRing::~TicketKeyRing() {
  for (Entry& e : keys_) {
    OPENSSL_cleanse(&e.key, sizeof e.key);
  }
}

bool TicketKeyRing::make_key(TicketKey& key) {
  return RAND_bytes(key.name.data(), static_cast<int>(key.name.size())) == 1 &&
         RAND_priv_bytes(key.aes_key.data(), static_cast<int>(key.aes_key.size())) == 1 &&
         RAND_priv_bytes(key.hmac_key.data(), static_cast<int>(key.hmac_key.size())) == 1;
}

bool TicketKeyRing::rotate(Clock::time_point now) {
  // Random bytes are drawn outside the lock: handshakes never wait on them.
  bool due;
  {
    std::lock_guard lock(mu_);  // guards keys_
    due = now - keys_.front().created >= timing_.rotation_period;
  }
  Entry fresh;
  bool made = due && make_key(fresh.key);
  fresh.created = now;

  std::lock_guard lock(mu_);  // guards keys_
  bool changed = false;
  if (made) {
    keys_.front().retired = now;
    keys_.insert(keys_.begin(), fresh);
    changed = true;
  }
  OPENSSL_cleanse(&fresh.key, sizeof fresh.key);
  // A key retired at R issued its last ticket just before R; that ticket is
  // valid until R + ticket_lifetime. After that the key can only be
  // replayed, never legitimately used.
  auto expired = [&](Entry& e) {
    bool gone = e.retired && now - *e.retired >= timing_.ticket_lifetime;
    if (gone) {
      OPENSSL_cleanse(&e.key, sizeof e.key);
    }
    return gone;
  };
  auto old_size = keys_.size();
  keys_.erase(std::remove_if(keys_.begin() + 1, keys_.end(), expired), keys_.end());
  return changed || keys_.size() != old_size;
}

TicketKeyRing::Clock::time_point TicketKeyRing::next_rotation() const {
  std::lock_guard lock(mu_);  // guards keys_
  Clock::time_point next = keys_.front().created + timing_.rotation_period;
  for (const Entry& e : keys_) {
    if (e.retired) {
      next = std::min(next, *e.retired + timing_.ticket_lifetime);
    }
  }
  return next;
}

size_t TicketKeyRing::size() const {
  std::lock_guard lock(mu_);  // guards keys_
  return keys_.size();
}

int TicketKeyRing::encrypt_ticket(unsigned char key_name[16], unsigned char* iv,
                                  EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac) const {
  ScopedKey k;
  {
    std::lock_guard lock(mu_);  // guards keys_
    k.key = keys_.front().key;
  }
  // The IV must never repeat under one key (CBC); 16 random bytes per ticket.
  if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(ticket_cipher())) != 1) {
    return -1;
  }
  std::memcpy(key_name, k.key.name.data(), k.key.name.size());
  return init_crypto(k.key, iv, cipher, mac, true) ? 1 : -1;
}

int TicketKeyRing::decrypt_ticket(const unsigned char key_name[16], const unsigned char* iv,
                                  EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac) const {
  ScopedKey k;
  bool current = false;
  bool found = false;
  {
    std::lock_guard lock(mu_);  // guards keys_
    for (size_t i = 0; i < keys_.size(); ++i) {
      // Key names are public (they travel in clear): a plain compare is fine.
      if (std::memcmp(keys_[i].key.name.data(), key_name, keys_[i].key.name.size()) == 0) {
        k.key = keys_[i].key;
        current = i == 0;
        found = true;
        break;
      }
    }
  }
  if (!found) {
    return 0;
  }
  if (!init_crypto(k.key, iv, cipher, mac, false)) {
    return -1;
  }
  // 2: valid, but renew it under the current key (RFC 5077 3.3) so the client
  // moves off a key that will be dropped.
  return current ? 1 : 2;
}

}  // namespace ward::tls
