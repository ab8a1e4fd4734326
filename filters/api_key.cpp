#include "filters/api_key.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "filters/headers.h"

namespace ward::filters {

namespace {

using Digest = std::array<unsigned char, 32>;  // SHA-256

// A keys file is a list of secrets, not a data set: anything larger is the
// wrong file, and every key costs a comparison on every request.
constexpr off_t kMaxKeysFileBytes = 1 << 20;

// SHA-256 with one reused EVP_MD_CTX and a pre-fetched EVP_MD per thread:
// no lock, and no implicit algorithm fetch per call. (OpenSSL 3.0 still
// re-creates its small provider context on each init; nothing in the EVP
// API avoids that.) Per thread rather than per filter because a filter is
// shared by every worker; it outlives reloads, which is harmless.
class ThreadSha256 {
 public:
  ThreadSha256() : md_(EVP_MD_fetch(nullptr, "SHA256", nullptr)), ctx_(EVP_MD_CTX_new()) {}
  ~ThreadSha256() {
    EVP_MD_CTX_free(ctx_);
    EVP_MD_free(md_);
  }
  ThreadSha256(const ThreadSha256&) = delete;
  ThreadSha256& operator=(const ThreadSha256&) = delete;

  bool digest(std::string_view data, Digest& out) {
    unsigned int size = 0;
    return md_ != nullptr && ctx_ != nullptr && EVP_DigestInit_ex2(ctx_, md_, nullptr) == 1 &&
           EVP_DigestUpdate(ctx_, data.data(), data.size()) == 1 &&
           EVP_DigestFinal_ex(ctx_, out.data(), &size) == 1 && size == out.size();
  }

 private:
  EVP_MD* md_;
  EVP_MD_CTX* ctx_;
};

bool sha256(std::string_view data, Digest& out) {
  thread_local ThreadSha256 hasher;
  return hasher.digest(data, out);
}

struct Options {
  std::string header = "X-API-Key";
  std::vector<Digest> keys;  // only digests: the secrets are not kept
  bool forward = false;
};

// Checks one key and adds its digest. `where` prefixes messages, which never
// quote the key itself: error output ends up in logs and CI.
bool add_key(config::Reader& reader, std::string_view key, const YAML::Mark& mark,
             const std::string& where, Options& options) {
  if (key.empty()) {
    reader.error(mark, where + ": a key must not be empty (an unset or empty ${VARIABLE}?)");
    return false;
  }
  if (auto problem = header_value_problem(key)) {
    // A key that cannot be sent in a header could never match.
    reader.error(mark, where + ": the key " + *problem);
    return false;
  }
  Digest digest{};
  if (!sha256(key, digest)) {
    reader.error(mark, where + ": SHA-256 is not available from OpenSSL");
    return false;
  }
  options.keys.push_back(digest);
  return true;
}

bool read_keys(config::Reader& reader, const config::Section& s, Options& options) {
  const std::string path = s.child("keys");
  auto items = reader.list_of(*s.get("keys"), s.value_mark("keys"), path);
  if (!items) {
    return false;
  }
  if (items->empty()) {
    reader.error(s.value_mark("keys"), path + ": needs at least one key");
    return false;
  }
  bool ok = true;
  for (size_t i = 0; i < items->size(); ++i) {
    const YAML::Node& item = (*items)[i];
    const std::string item_path = path + "[" + std::to_string(i) + "]";
    // string_of would quote a non-string value; a key is never shown.
    if (!item.IsScalar()) {
      reader.error(item.Mark(), item_path + ": expected a string, got " +
                                    (item.IsNull() ? "nothing" : config::Reader::describe(item)));
      ok = false;
      continue;
    }
    ok = add_key(reader, item.Scalar(), item.Mark(), item_path, options) && ok;
  }
  return ok;
}

// The whole file, or the reason it cannot be read (strerror, or too large).
bool slurp(const std::string& file, std::string& out, std::string& reason) {
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    reason = std::strerror(errno);
    return false;
  }
  struct stat st {};
  bool ok = false;
  if (::fstat(fd, &st) != 0) {
    reason = std::strerror(errno);
  } else if (S_ISDIR(st.st_mode)) {
    reason = std::strerror(EISDIR);
  } else if (st.st_size > kMaxKeysFileBytes) {
    reason = "larger than 1MiB";
  } else {
    out.resize(static_cast<size_t>(st.st_size));
    size_t got = 0;
    while (got < out.size()) {
      ssize_t n = ::read(fd, out.data() + got, out.size() - got);
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n < 0) {
        reason = std::strerror(errno);
        break;
      }
      if (n == 0) {
        break;  // the file shrank meanwhile
      }
      got += static_cast<size_t>(n);
    }
    out.resize(got);
    ok = reason.empty();
  }
  ::close(fd);
  return ok;
}

// One key per line; blank lines and lines starting with '#' are skipped,
// whitespace around a key is dropped (CRLF files work). A '#' later in a line
// is part of the key.
bool read_keys_file(config::Reader& reader, const config::Section& s, Options& options) {
  const std::string path = s.child("keys_file");
  const YAML::Mark mark = s.value_mark("keys_file");
  auto file = reader.string_of(*s.get("keys_file"), mark, path);
  if (!file) {
    return false;
  }
  if (file->empty()) {
    reader.error(mark, path + ": must not be empty");
    return false;
  }
  std::string text;
  std::string reason;
  if (!slurp(*file, text, reason)) {
    reader.error(mark, path + ": cannot read " + config::Reader::quote(*file) + ": " + reason);
    return false;
  }
  bool ok = true;
  size_t line_number = 0;
  std::string_view rest = text;
  while (!rest.empty()) {
    ++line_number;
    const size_t end = rest.find('\n');
    std::string_view line = rest.substr(0, end);
    rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
    while (!line.empty() && (http::is_ows(line.front()) || line.front() == '\r')) {
      line.remove_prefix(1);
    }
    while (!line.empty() && (http::is_ows(line.back()) || line.back() == '\r')) {
      line.remove_suffix(1);
    }
    if (line.empty() || line.front() == '#') {
      continue;
    }
    const std::string where =
        path + ": " + config::Reader::quote(*file) + " line " + std::to_string(line_number);
    ok = add_key(reader, line, mark, where, options) && ok;
  }
  OPENSSL_cleanse(text.data(), text.size());  // do not leave keys in freed memory
  if (ok && options.keys.empty()) {
    reader.error(mark, path + ": " + config::Reader::quote(*file) + " has no keys");
    return false;
  }
  return ok;
}

std::optional<Options> read_options(BuildContext& ctx) {
  bool ok = true;
  config::Section s = checked_options(ctx, {"header", "keys", "keys_file", "forward"}, ok);
  config::Reader& reader = ctx.reader;
  Options options;
  if (const YAML::Node* node = s.get("header")) {
    auto name = read_header_name(reader, *node, s.value_mark("header"), s.child("header"));
    ok = name.has_value() && ok;
    if (name) {
      options.header = std::move(*name);
    }
  }
  ok = reader.read(s, "forward", options.forward) && ok;
  const bool has_keys = s.get("keys") != nullptr;
  const bool has_file = s.get("keys_file") != nullptr;
  if (has_keys && has_file) {
    reader.error(s.key_mark("keys_file"), "api_key: give keys or keys_file, not both");
    ok = false;
  } else if (!has_keys && !has_file) {
    reader.error(options_mark(ctx), "api_key: needs keys (a list) or keys_file (a file)");
    ok = false;
  } else if (has_keys) {
    ok = read_keys(reader, s, options) && ok;
  } else {
    ok = read_keys_file(reader, s, options) && ok;
  }
  if (!ok) {
    return std::nullopt;
  }
  return options;
}

class ApiKeyFilter : public Filter {
 public:
  ApiKeyFilter(Options options, observe::CounterFamily& requests, std::string label)
      : options_(std::move(options)),
        challenge_("ApiKey header=\"" + options_.header + "\""),
        requests_(requests),
        label_(std::move(label)) {}

  FilterStatus on_request(RequestContext& ctx) override {
    http::HeaderList& fields = *ctx.request_headers;
    // Two key fields: the upstream might read the other one.
    const bool allowed = fields.count(options_.header) == 1 && known(*fields.get(options_.header));
    if (!allowed) {
      requests_.inc(ctx.worker, {label_, "denied"});
      ctx.state->a = 1;
      ctx.reply(401, "unauthorized");
      return FilterStatus::stop;
    }
    requests_.inc(ctx.worker, {label_, "allowed"});
    if (!options_.forward) {
      fields.remove(options_.header);  // the upstream has no use for the secret
    }
    return FilterStatus::next;
  }

  // RFC 9110 15.5.2: a 401 carries a challenge. "ApiKey" is no registered
  // scheme, which is the point: browsers show no login dialog for it.
  void on_response(RequestContext& ctx) override {
    if (ctx.state->a == 1) {
      ctx.response_headers->set("WWW-Authenticate", challenge_);
    }
  }

 private:
  // Constant time with respect to the secrets: both sides are hashed to a
  // fixed length, and every configured digest is compared in full, without
  // an early exit, so the time depends only on the presented key's length
  // and the number of keys, never on how much of a key matched or which.
  bool known(std::string_view presented) const {
    Digest digest{};
    if (!sha256(presented, digest)) {
      return false;  // fail closed
    }
    int found = 0;
    for (const Digest& key : options_.keys) {
      found |= static_cast<int>(CRYPTO_memcmp(digest.data(), key.data(), digest.size()) == 0);
    }
    return found != 0;
  }

  const Options options_;
  const std::string challenge_;
  observe::CounterFamily& requests_;
  const std::string label_;
};

}  // namespace

std::unique_ptr<Filter> make_api_key_filter(BuildContext& ctx) {
  auto options = read_options(ctx);
  if (!options) {
    return nullptr;
  }
  auto& requests = ctx.metrics.counter("ward_api_key_requests_total",
                                       "Requests checked by an api_key filter, by result.",
                                       {"filter", "result"});
  return std::make_unique<ApiKeyFilter>(std::move(*options), requests, ctx.label);
}

}  // namespace ward::filters
