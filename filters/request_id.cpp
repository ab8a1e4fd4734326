#include "filters/request_id.h"

#include <sys/random.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <utility>

#include "filters/headers.h"

namespace ward::filters {

namespace {

constexpr size_t kMaxIdLength = 128;
constexpr size_t kUuidLength = 36;  // 32 hex digits and 4 dashes

// Makes random (version 4) UUIDs, RFC 9562 5.4. Not a secret: ids are
// logged and echoed, so a fast non-cryptographic engine is enough; what
// matters is that no two requests share one, which 122 random bits from a
// generator seeded with 256 bits from the OS give (a collision after ~2^61
// ids). One per thread, so workers never contend for it.
class UuidGenerator {
 public:
  UuidGenerator() {
    std::array<uint32_t, 8> seed{};
    fill_from_os(seed.data(), sizeof seed);
    std::seed_seq sequence(seed.begin(), seed.end());
    engine_.seed(sequence);
  }

  // Writes the 36-character text form into `out` (resized, so a reused
  // string keeps its capacity and nothing is allocated after its first use).
  void write(std::string& out) {
    std::array<uint8_t, 16> bytes{};
    const uint64_t hi = engine_();
    const uint64_t lo = engine_();
    std::memcpy(bytes.data(), &hi, 8);
    std::memcpy(bytes.data() + 8, &lo, 8);
    bytes[6] = static_cast<uint8_t>((bytes[6] & 0x0f) | 0x40);  // version 4
    bytes[8] = static_cast<uint8_t>((bytes[8] & 0x3f) | 0x80);  // variant 10xx
    static constexpr char kHex[] = "0123456789abcdef";
    out.resize(kUuidLength);
    size_t at = 0;
    for (size_t i = 0; i < bytes.size(); ++i) {
      if (i == 4 || i == 6 || i == 8 || i == 10) {
        out[at++] = '-';
      }
      out[at++] = kHex[bytes[i] >> 4];
      out[at++] = kHex[bytes[i] & 0x0f];
    }
  }

 private:
  static void fill_from_os(void* buffer, size_t size) {
    auto* p = static_cast<uint8_t*>(buffer);
    while (size > 0) {
      ssize_t n = ::getrandom(p, size, 0);
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        break;  // no getrandom(2): fall back below
      }
      p += n;
      size -= static_cast<size_t>(n);
    }
    if (size > 0) {
      std::random_device device;
      for (; size > 0; --size) {
        *p++ = static_cast<uint8_t>(device());
      }
    }
  }

  std::mt19937_64 engine_;
};

// Per-thread: seeded on a thread's first request, no lock, and it outlives
// config reloads (a new filter does not reseed).
UuidGenerator& thread_generator() {
  thread_local UuidGenerator generator;
  return generator;
}

class RequestIdFilter : public Filter {
 public:
  explicit RequestIdFilter(std::string header) : header_(std::move(header)) {}

  FilterStatus on_request(RequestContext& ctx) override {
    http::HeaderList& fields = *ctx.request_headers;
    if (!ctx.request_id.empty()) {
      // An earlier request_id filter (another header name) already chose:
      // one request, one id, whatever the headers are called.
      fields.set(header_, ctx.request_id);
      return FilterStatus::next;
    }
    auto incoming = fields.get(header_);
    // Two ids would leave the upstream and the log to disagree on which.
    if (incoming && is_valid_request_id(*incoming) && fields.count(header_) == 1) {
      ctx.request_id.assign(*incoming);
      return FilterStatus::next;
    }
    thread_generator().write(ctx.request_id);
    fields.set(header_, ctx.request_id);
    return FilterStatus::next;
  }

  // Upstream answers and local replies alike, replacing any id the upstream
  // sent: the client must see the id the access log has.
  void on_response(RequestContext& ctx) override {
    if (!ctx.request_id.empty()) {
      ctx.response_headers->set(header_, ctx.request_id);
    }
  }

 private:
  const std::string header_;
};

}  // namespace

bool is_valid_request_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxIdLength) {
    return false;
  }
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok) {
      return false;
    }
  }
  return true;
}

std::unique_ptr<Filter> make_request_id_filter(BuildContext& ctx) {
  bool ok = true;
  config::Section s = checked_options(ctx, {"header"}, ok);
  std::string header = "X-Request-ID";
  if (const YAML::Node* node = s.get("header")) {
    auto name = read_header_name(ctx.reader, *node, s.value_mark("header"), s.child("header"));
    if (name) {
      header = std::move(*name);
    }
    ok = ok && name.has_value();
  }
  if (!ok) {
    return nullptr;
  }
  return std::make_unique<RequestIdFilter>(std::move(header));
}

}  // namespace ward::filters
