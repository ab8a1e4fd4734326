#pragma once

// Session ticket keys shared by every worker of the process (RFC 5077 tickets
// for TLS 1.2, and the stateless PSK tickets of TLS 1.3 (RFC 8446 4.6.1)).
//
// Why one ring per process: a client's next connection lands on any worker
// (SO_REUSEPORT spreads them) and, after a reload, on a new context set. Each
// SSL_CTX would otherwise make up its own random keys and a ticket issued by
// one worker could not be read by another. All ServerContexts of the process
// point at the same ring, across listeners and reloads (a ticket also binds
// its listener: the session id context differs, see server_contexts.cpp).
//
// Rotation: the newest key encrypts new tickets for `rotation_period`
// (default 1 hour), then retires; a retired key still decrypts (and the
// ticket is then renewed under the current key) until `ticket_lifetime`
// (default 2 hours, also the lifetime OpenSSL writes into the ticket) after
// its retirement, when no ticket it issued can be valid any more, and is then
// dropped. So a key lives rotation_period + ticket_lifetime (3 hours) and the
// ring holds about 1 + ticket_lifetime / rotation_period keys (3).
// Keys are random, never written anywhere, and lost on restart (resumption
// then falls back to a full handshake, which is always correct).
//
// Time is injected: the main thread calls rotate(now) from a timer (at
// next_rotation(), or simply every minute); tests pass any time points.

#include <openssl/evp.h>
#include <openssl/ssl.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <vector>

namespace ward::tls {

struct TicketKey {
  std::array<uint8_t, 16> name{};      // sent in clear in the ticket: which key to use
  std::array<uint8_t, 32> aes_key{};   // AES-256-CBC encryption of the session state
  std::array<uint8_t, 32> hmac_key{};  // HMAC-SHA256 over the encrypted ticket
};

class TicketKeyRing {
 public:
  using Clock = std::chrono::steady_clock;

  struct Timing {
    std::chrono::seconds rotation_period{3600};
    std::chrono::seconds ticket_lifetime{7200};
  };

  // Makes the first key. Throws std::runtime_error when the system cannot
  // produce random bytes (control plane, at start).
  explicit TicketKeyRing(Clock::time_point now) : TicketKeyRing(now, Timing{}) {}
  TicketKeyRing(Clock::time_point now, Timing timing);
  ~TicketKeyRing();
  TicketKeyRing(const TicketKeyRing&) = delete;
  TicketKeyRing& operator=(const TicketKeyRing&) = delete;

  // Main thread: starts a new key when the current one is rotation_period
  // old, and drops keys retired ticket_lifetime ago or longer. Returns true
  // when the ring changed. If no random bytes can be had, keeps using the
  // current key (and returns false) rather than stopping tickets.
  bool rotate(Clock::time_point now);
  // When rotate() next has something to do.
  Clock::time_point next_rotation() const;

  const Timing& timing() const { return timing_; }
  size_t size() const;

  // The two halves of OpenSSL's ticket key callback
  // (SSL_CTX_set_tlsext_ticket_key_evp_cb), called on any worker thread.
  // encrypt: fills the name and a random IV, keys `cipher` and `mac` with the
  // current key; 1, or -1 on failure (no ticket is sent).
  // decrypt: keys them with the key of that name: 1 when it is the current
  // key, 2 when it is a retired one (OpenSSL then issues a fresh ticket), 0
  // when the key is unknown or dropped (full handshake), -1 on failure.
  int encrypt_ticket(unsigned char key_name[16], unsigned char* iv, EVP_CIPHER_CTX* cipher,
                     EVP_MAC_CTX* mac) const;
  int decrypt_ticket(const unsigned char key_name[16], const unsigned char* iv,
                     EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac) const;

 private:
  struct Entry {
    TicketKey key;
    Clock::time_point created;
    std::optional<Clock::time_point> retired;  // unset for the current key
  };

  static bool make_key(TicketKey& key);

  Timing timing_;
  // Guards keys_: rotate() on the main thread against the ticket callback on
  // the workers. Held only to copy one key out (no OpenSSL call under it).
  mutable std::mutex mu_;
  std::vector<Entry> keys_;  // newest (the current key) first
};

}  // namespace ward::tls
