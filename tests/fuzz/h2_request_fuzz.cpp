// fuzz_h2_request: hostile HTTP/2 header lists through H2RequestBuilder.
// Input: fields as [1-byte name length][1-byte value length][name][value]...,
// the first byte's low bit says whether the HEADERS ended the stream. Checks
// the invariants the upstream exchange relies on: an accepted head has a
// token method, an origin-form target and a Host, and no field of it can
// break an HTTP/1.1 head (CR, LF or NUL).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "proxy/http/h2_request.h"

namespace {

bool breaks_head(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) {
    return 0;
  }
  bool end_stream = (data[0] & 1) != 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  ward::http::RequestHead head;
  ward::http::H2RequestBuilder builder(head, 4096, 512);
  while (in.size() >= 2) {
    size_t nlen = static_cast<unsigned char>(in[0]);
    size_t vlen = static_cast<unsigned char>(in[1]);
    in.remove_prefix(2);
    if (in.size() < nlen + vlen) {
      break;
    }
    builder.add(in.substr(0, nlen), in.substr(nlen, vlen));
    in.remove_prefix(nlen + vlen);
  }
  int status = builder.finish(end_stream);
  if (status != 0) {
    return 0;
  }
  if (head.method_text.empty() || breaks_head(head.method_text) || head.target.empty() ||
      (head.target.front() != '/' && head.target != "*") ||
      head.target.find(' ') != std::string::npos || !head.headers.get("host")) {
    std::abort();
  }
  head.headers.for_each([](const ward::http::HeaderList::Field& f) {
    if (f.name.empty() || breaks_head(f.name) || breaks_head(f.value)) {
      std::abort();
    }
  });
  if (!end_stream && head.body == ward::http::BodyKind::none) {
    std::abort();
  }
  return 0;
}
