#include "proxy/http/h2_request.h"

#include <charconv>
#include <initializer_list>

namespace ward::http {

namespace {

// RFC 9110 5.6.2 tchar, and the subset nghttp2 lets through in a field
// name (no upper case): table lookups, as every field of every stream is
// checked.
struct CharClasses {
  bool tchar[256] = {};
  bool lower_tchar[256] = {};
  bool value_char[256] = {};  // all but CR, LF, NUL
  constexpr CharClasses() {
    for (int c = 0; c < 256; ++c) {
      bool t = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
      for (char p : std::string_view("!#$%&'*+-.^_`|~")) {
        t = t || c == static_cast<unsigned char>(p);
      }
      tchar[c] = t;
      lower_tchar[c] = t && !(c >= 'A' && c <= 'Z');
      value_char[c] = c != '\r' && c != '\n' && c != '\0';
    }
  }
};
constexpr CharClasses kClasses;

bool is_token(std::string_view s) {
  if (s.empty()) {
    return false;
  }
  for (char c : s) {
    if (!kClasses.tchar[static_cast<unsigned char>(c)]) {
      return false;
    }
  }
  return true;
}

// A field name nghttp2 would pass: a lower-case token, or a pseudo-header.
bool valid_name(std::string_view name) {
  std::string_view token = name.substr(!name.empty() && name.front() == ':' ? 1 : 0);
  if (token.empty()) {
    return false;
  }
  for (char c : token) {
    if (!kClasses.lower_tchar[static_cast<unsigned char>(c)]) {
      return false;
    }
  }
  return true;
}

// An origin-form target (or "*"): it becomes the upstream request-line, so
// no whitespace or control byte.
bool valid_target(std::string_view target) {
  if (target != "*" && (target.empty() || target.front() != '/')) {
    return false;
  }
  for (char c : target) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) {
      return false;
    }
  }
  return true;
}

// No CR, LF or NUL: the value is copied into an HTTP/1.1 head.
bool valid_value(std::string_view value) {
  for (char c : value) {
    if (!kClasses.value_char[static_cast<unsigned char>(c)]) {
      return false;
    }
  }
  return true;
}

}  // namespace

void H2RequestBuilder::add(std::string_view name, std::string_view value) {
  header_bytes_ += name.size() + value.size() + 32;  // RFC 9113 6.5.2's accounting
  if (header_bytes_ > max_header_bytes_) {
    refuse_ = 431;
  }
  if (refuse_ != 0) {
    return;  // the request is refused anyway: keep nothing more
  }
  if (!valid_name(name) || !valid_value(value)) {
    refuse_ = 400;
    return;
  }
  if (!name.empty() && name.front() == ':') {
    if (name == ":method") {
      if (!is_token(value)) {
        refuse_ = 400;
        return;
      }
      out_.method_text.assign(value);
      out_.method = method_from(value);
      have_method_ = !value.empty();
    } else if (name == ":path") {
      if (value.size() > max_uri_size_) {
        refuse_ = 414;
        return;
      }
      if (!valid_target(value)) {
        refuse_ = 400;
        return;
      }
      out_.target.assign(value);
      have_path_ = !value.empty();
    } else if (name == ":authority") {
      authority_.assign(value);
    } else if (name == ":protocol") {
      refuse_ = 501;  // extended CONNECT (RFC 8441) is not served
    }
    return;  // :scheme: the listener says whether the client used TLS
  }
  if (name == "cookie") {
    if (!cookies_.empty()) {
      cookies_ += "; ";
    }
    cookies_ += value;
    return;
  }
  if (name == "host") {
    if (host_field_.empty()) {
      host_field_.assign(value);
    }
    return;
  }
  if (name == "expect") {
    // Only 100-continue is defined (RFC 9110 10.1.1); ward answers it and
    // the upstream never sees it. Other expectations go through as they are.
    if (iequals(trim_ows(value), "100-continue")) {
      expect_continue_ = true;
      return;
    }
  }
  out_.headers.add(name, value);
}

void H2RequestBuilder::reset(size_t keep_bytes) {
  header_bytes_ = 0;
  for (std::string* s : {&authority_, &host_field_, &cookies_}) {
    s->clear();
    if (s->capacity() > keep_bytes) {
      s->shrink_to_fit();
    }
  }
  refuse_ = 0;
  have_method_ = false;
  have_path_ = false;
  expect_continue_ = false;
}

int H2RequestBuilder::finish(bool end_stream) {
  out_.version_minor = 1;
  out_.keep_alive = true;
  out_.expect_continue = expect_continue_;
  if (refuse_ != 0) {
    return refuse_;
  }
  if (out_.method == Method::connect) {
    return 501;  // CONNECT tunnels are not served
  }
  if (!have_method_ || !have_path_) {
    return 400;
  }
  // :authority wins over Host (RFC 9113 8.3.1); one of them is needed to route.
  std::string_view host = authority_.empty() ? std::string_view(host_field_) : authority_;
  if (host.empty()) {
    return 400;
  }
  out_.headers.add("Host", host);
  if (!cookies_.empty()) {
    out_.headers.add("Cookie", cookies_);
  }
  if (end_stream) {
    out_.body = BodyKind::none;
    return 0;
  }
  if (out_.headers.count("content-length") > 1) {
    return 400;
  }
  if (auto cl = out_.headers.get("content-length")) {
    uint64_t n = 0;
    auto [p, ec] = std::from_chars(cl->data(), cl->data() + cl->size(), n);
    if (cl->empty() || ec != std::errc() || p != cl->data() + cl->size()) {
      return 400;
    }
    out_.body = BodyKind::content_length;
    out_.content_length = n;
  } else {
    out_.body = BodyKind::chunked;
  }
  return 0;
}

}  // namespace ward::http
