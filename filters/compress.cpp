#include "filters/compress.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "filters/body_encoders.h"

namespace ward::filters {

namespace {

using http::HeaderList;
using http::iequals;
using http::trim_ows;

enum class Coding : uint8_t { br, gzip };
constexpr size_t kCodings = 2;

constexpr std::string_view name_of(Coding c) {
  return c == Coding::br ? "br" : "gzip";
}
constexpr size_t index_of(Coding c) {
  return static_cast<size_t>(c);
}

struct CompressOptions {
  // Lower case. A `type/*` entry is kept as its prefix "type/".
  std::vector<std::string> exact_types;
  std::vector<std::string> type_prefixes;
  uint64_t min_size = 1024;                                  // bytes
  std::vector<Coding> algorithms{Coding::br, Coding::gzip};  // server preference
  int gzip_level = GzipEncoder::kDefaultLevel;
  int br_quality = BrotliEncoder::kDefaultQuality;
};

struct CompressMetrics {
  observe::CounterFamily* responses;
  observe::CounterFamily* input_bytes;
  observe::CounterFamily* output_bytes;
};

// Calls fn(element) for each non-empty element of a comma-separated list
// (RFC 9110 5.6.1), trimmed of OWS; stops early when fn returns true.
// Returns whether it stopped early.
template <typename Fn>
bool any_element(std::string_view list, Fn&& fn) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view element = trim_ows(list.substr(0, comma));
    list.remove_prefix(comma == std::string_view::npos ? list.size() : comma + 1);
    if (!element.empty() && fn(element)) {
      return true;
    }
  }
  return false;
}

// Whether any field named `name` satisfies pred(value).
template <typename Pred>
bool any_field(const HeaderList& headers, std::string_view name, Pred&& pred) {
  bool found = false;
  headers.for_each([&](const HeaderList::Field& f) {
    if (!found && iequals(f.name, name) && pred(f.value)) {
      found = true;
    }
  });
  return found;
}

// --- Accept-Encoding (RFC 9110 12.5.3) ---

// Weights in thousandths: qvalue has at most three decimals (RFC 9110 12.4.2).
constexpr int kQOne = 1000;
constexpr int kUnset = -1;

// qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
std::optional<int> parse_qvalue(std::string_view s) {
  if (s.empty() || (s[0] != '0' && s[0] != '1')) {
    return std::nullopt;
  }
  const int whole = s[0] - '0';
  s.remove_prefix(1);
  if (s.empty()) {
    return whole * kQOne;
  }
  if (s[0] != '.' || s.size() > 4) {
    return std::nullopt;
  }
  int fraction = 0;
  int scale = 100;
  for (char c : s.substr(1)) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    fraction += (c - '0') * scale;
    scale /= 10;
  }
  if (whole == 1 && fraction != 0) {
    return std::nullopt;
  }
  return whole * kQOne + fraction;
}

// The weight in an element's parameters ("q=0.5"; the name is
// case-insensitive). Other parameters are ignored; a malformed weight counts
// as 0: the client meant to limit this coding, and not using it is the
// choice that is safe whatever it meant.
int weight_of(std::string_view params) {
  while (!params.empty()) {
    size_t semi = params.find(';');
    std::string_view p = trim_ows(params.substr(0, semi));
    params.remove_prefix(semi == std::string_view::npos ? params.size() : semi + 1);
    if (p.size() >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
      return parse_qvalue(p.substr(2)).value_or(0);
    }
  }
  return kQOne;
}

// What the client said about each coding ward can send; kUnset: not named.
struct AcceptWeights {
  std::array<int, kCodings> coding{kUnset, kUnset};
  int star = kUnset;
  int identity = kUnset;
};

// A coding named twice keeps its lowest weight: an exclusion is never lost.
void note(int& slot, int q) {
  slot = slot == kUnset ? q : std::min(slot, q);
}

void parse_accept_encoding(std::string_view value, AcceptWeights& w) {
  any_element(value, [&](std::string_view element) {
    size_t semi = element.find(';');
    std::string_view coding = trim_ows(element.substr(0, semi));
    int q = semi == std::string_view::npos ? kQOne : weight_of(element.substr(semi + 1));
    if (iequals(coding, "br")) {
      note(w.coding[index_of(Coding::br)], q);
    } else if (iequals(coding, "gzip") || iequals(coding, "x-gzip")) {
      // RFC 9110 8.4.1.3: x-gzip is gzip's old name.
      note(w.coding[index_of(Coding::gzip)], q);
    } else if (coding == "*") {
      note(w.star, q);
    } else if (iequals(coding, "identity")) {
      note(w.identity, q);
    }
    return false;  // unknown codings and garbage are ignored
  });
}

// 1 + the index in `algorithms` of the coding to send; 0: send as is.
int choose(const AcceptWeights& w, const std::vector<Coding>& algorithms) {
  int best = 0;
  int best_q = 0;  // q=0 is "not acceptable" (RFC 9110 12.4.2)
  for (size_t i = 0; i < algorithms.size(); ++i) {
    int q = w.coding[index_of(algorithms[i])];
    if (q == kUnset) {
      q = w.star == kUnset ? 0 : w.star;  // "*": any coding not named
    }
    if (q > best_q) {  // strictly: on a tie the earlier algorithm stays
      best = static_cast<int>(i) + 1;
      best_q = q;
    }
  }
  // A client that ranks identity above every coding we could send gets
  // identity. Unnamed, identity is acceptable but never preferred.
  int identity = w.identity != kUnset ? w.identity : w.star;
  if (best != 0 && identity != kUnset && identity > best_q) {
    return 0;
  }
  return best;
}

// --- The response head ---

// RFC 9110 8.4: a coding other than identity is already applied.
bool already_encoded(const HeaderList& h) {
  return any_field(h, "Content-Encoding", [](std::string_view v) {
    return any_element(v, [](std::string_view c) { return !iequals(c, "identity"); });
  });
}

// RFC 9110 7.7 / RFC 9111 5.2.2.6: an intermediary must not change the content.
bool no_transform(const HeaderList& h) {
  return any_field(h, "Cache-Control",
                   [](std::string_view v) { return http::has_token(v, "no-transform"); });
}

std::optional<uint64_t> content_length(const HeaderList& h) {
  auto v = h.get("Content-Length");
  if (!v) {
    return std::nullopt;
  }
  std::string_view s = trim_ows(*v);
  if (s.empty()) {
    return std::nullopt;
  }
  uint64_t n = 0;
  for (char c : s) {
    if (c < '0' || c > '9' || n > (UINT64_MAX - 9) / 10) {
      return std::nullopt;  // the codec has already refused such a response
    }
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  return n;
}

// RFC 9110 12.5.5: caches must key the response on Accept-Encoding. "Vary: *"
// already covers it.
void add_vary(HeaderList& h) {
  bool present = any_field(h, "Vary", [](std::string_view v) {
    return http::has_token(v, "accept-encoding") || http::has_token(v, "*");
  });
  if (!present) {
    h.append_to_list("Vary", "Accept-Encoding");
  }
}

// RFC 9110 8.8.3: the coded bytes differ from the upstream's, so a strong
// validator would be a lie (If-Range and If-Match would treat different
// bytes as the same). "W/" is case-sensitive. A value that is not an
// entity-tag at all is dropped for the same reason (nginx does the same).
void weaken_etag(HeaderList& h) {
  auto etag = h.get("ETag");
  if (!etag) {
    return;
  }
  std::string_view v = trim_ows(*etag);
  if (v.size() >= 2 && v[0] == 'W' && v[1] == '/') {
    return;
  }
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') {
    std::string weak = "W/";
    weak += v;
    h.set("ETag", weak);
    return;
  }
  h.remove("ETag");
}

// --- The filter ---

// Counts a compressed body's bytes in and out, reported once when the stream
// finishes, fails or is abandoned.
class CountingEncoder final : public BodyEncoder {
 public:
  CountingEncoder(std::unique_ptr<BodyEncoder> inner, const CompressMetrics& metrics, size_t shard,
                  std::string label, Coding coding)
      : inner_(std::move(inner)),
        metrics_(metrics),
        shard_(shard),
        label_(std::move(label)),
        coding_(coding) {}
  ~CountingEncoder() override { report(); }

  bool encode(std::string_view in, Mode mode, std::string& out) override {
    const size_t before = out.size();
    const bool ok = inner_->encode(in, mode, out);
    in_ += in.size();
    out_ += out.size() > before ? out.size() - before : 0;
    if (!ok || mode == Mode::finish) {
      report();
    }
    return ok;
  }

 private:
  void report() noexcept {
    if (reported_) {
      return;
    }
    reported_ = true;
    try {
      metrics_.input_bytes->inc(shard_, {label_, name_of(coding_)}, in_);
      metrics_.output_bytes->inc(shard_, {label_, name_of(coding_)}, out_);
    } catch (...) {
      // A new series failed to allocate: lose the sample, not the response.
    }
  }

  std::unique_ptr<BodyEncoder> inner_;
  CompressMetrics metrics_;
  size_t shard_;
  std::string label_;  // a copy: the encoder may outlive the snapshot's filter
  Coding coding_;
  uint64_t in_ = 0;
  uint64_t out_ = 0;
  bool reported_ = false;
};

class CompressFilter final : public Filter {
 public:
  CompressFilter(CompressOptions options, CompressMetrics metrics, std::string label)
      : options_(std::move(options)), metrics_(metrics), label_(std::move(label)) {}

  // Decides the coding once, from every Accept-Encoding field (RFC 9110 5.3:
  // several fields are one list). No field means identity: RFC 9110 12.5.3
  // allows any coding then, but clients that send none (curl without
  // --compressed, scripts) usually cannot decode one.
  FilterStatus on_request(RequestContext& ctx) override {
    if (ctx.state == nullptr) {
      return FilterStatus::next;
    }
    AcceptWeights weights;
    bool any = false;
    if (ctx.request_headers != nullptr) {
      ctx.request_headers->for_each([&](const HeaderList::Field& f) {
        if (iequals(f.name, "Accept-Encoding")) {
          any = true;
          parse_accept_encoding(f.value, weights);
        }
      });
    }
    ctx.state->a = any ? choose(weights, options_.algorithms) : 0;
    return FilterStatus::next;
  }

  void on_response(RequestContext& ctx) override {
    if (ctx.response_headers == nullptr || ctx.state == nullptr || ctx.response_encoder) {
      return;  // no head, or another transform already owns the body
    }
    HeaderList& h = *ctx.response_headers;
    // No body: HEAD, 1xx, 204, 304 (RFC 9110 6.4.1). 206: the body is byte
    // ranges of the uncoded representation, which coding would break.
    if (!ctx.response_has_body || ctx.status < 200 || ctx.status == 204 || ctx.status == 206 ||
        ctx.status == 304) {
      return;
    }
    if (already_encoded(h) || no_transform(h) || !compressible_type(h)) {
      return;
    }
    // From here the response is compressible for some client, so its cache
    // key depends on Accept-Encoding whether or not this one gets it coded.
    add_vary(h);
    const std::optional<uint64_t> length = content_length(h);
    const int64_t choice = ctx.state->a;
    if ((length && (*length == 0 || *length < options_.min_size)) || choice <= 0 ||
        choice > static_cast<int64_t>(options_.algorithms.size())) {
      count(ctx, "identity");
      return;
    }
    const Coding coding = options_.algorithms[static_cast<size_t>(choice - 1)];
    const int64_t hint = length ? static_cast<int64_t>(std::min<uint64_t>(*length, INT64_MAX)) : -1;
    std::unique_ptr<BodyEncoder> encoder;
    if (coding == Coding::gzip) {
      encoder = GzipEncoder::create(options_.gzip_level, hint);
    } else {
      encoder = BrotliEncoder::create(options_.br_quality, hint);
    }
    std::unique_ptr<BodyEncoder> counted;
    if (encoder) {
      counted.reset(new (std::nothrow)
                        CountingEncoder(std::move(encoder), metrics_, ctx.worker, label_, coding));
    }
    if (!counted) {
      count(ctx, "identity");  // out of memory: the response still goes out, as is
      return;
    }
    h.set("Content-Encoding", name_of(coding));
    h.remove("Content-Length");  // the codec frames the coded body itself
    weaken_etag(h);
    // Ranges of this URL address the uncoded bytes (the upstream serves them
    // and a 206 is never coded): do not invite ranges over the coded ones.
    h.remove("Accept-Ranges");
    ctx.response_encoder = std::move(counted);
    count(ctx, name_of(coding));
  }

 private:
  // The media type of Content-Type, without parameters, against `types`.
  bool compressible_type(const HeaderList& h) const {
    auto content_type = h.get("Content-Type");
    if (!content_type) {
      return false;
    }
    std::string_view media = trim_ows(content_type->substr(0, content_type->find(';')));
    for (const auto& t : options_.exact_types) {
      if (iequals(media, t)) {
        return true;
      }
    }
    for (const auto& prefix : options_.type_prefixes) {
      if (media.size() > prefix.size() && iequals(media.substr(0, prefix.size()), prefix)) {
        return true;
      }
    }
    return false;
  }

  void count(const RequestContext& ctx, std::string_view encoding) const {
    metrics_.responses->inc(ctx.worker, {label_, encoding});
  }

  const CompressOptions options_;
  const CompressMetrics metrics_;
  const std::string label_;
};

// --- Options ---

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) {
    return static_cast<char>(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
  });
  return out;
}

// RFC 9110 5.6.2 tchar, without "*" (kept for the wildcard).
bool is_token(std::string_view s) {
  static constexpr std::string_view kSymbols = "!#$%&'+-.^_`|~";
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           kSymbols.find(c) != std::string_view::npos;
  });
}

std::string index_path(const std::string& path, size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

bool read_types(config::Reader& r, const config::Section& s, CompressOptions& o) {
  const YAML::Node* v = s.get("types");
  if (v == nullptr) {
    o.type_prefixes = {"text/"};
    o.exact_types = {"application/json", "application/javascript", "image/svg+xml"};
    return true;
  }
  const std::string path = s.child("types");
  auto items = r.list_of(*v, s.value_mark("types"), path);
  if (!items) {
    return false;
  }
  if (items->empty()) {
    r.error(s.value_mark("types"), path + ": at least one media type is required");
    return false;
  }
  bool ok = true;
  for (size_t i = 0; i < items->size(); ++i) {
    const YAML::Node& item = (*items)[i];
    auto text = r.string_of(item, item.Mark(), index_path(path, i));
    if (!text) {
      ok = false;
      continue;
    }
    std::string type = lower(*text);
    size_t slash = type.find('/');
    std::string_view major = std::string_view(type).substr(0, slash);
    std::string_view minor =
        slash == std::string::npos ? std::string_view() : std::string_view(type).substr(slash + 1);
    if (!is_token(major) || (minor != "*" && !is_token(minor))) {
      r.error(item.Mark(), index_path(path, i) +
                               ": expected a media type such as text/html or text/*, got " +
                               config::Reader::quote(*text));
      ok = false;
      continue;
    }
    if (minor == "*") {
      o.type_prefixes.push_back(type.substr(0, slash + 1));
    } else {
      o.exact_types.push_back(std::move(type));
    }
  }
  return ok;
}

bool read_algorithms(config::Reader& r, const config::Section& s, CompressOptions& o) {
  const YAML::Node* v = s.get("algorithms");
  if (v == nullptr) {
    return true;
  }
  const std::string path = s.child("algorithms");
  auto items = r.list_of(*v, s.value_mark("algorithms"), path);
  if (!items) {
    return false;
  }
  if (items->empty()) {
    r.error(s.value_mark("algorithms"), path + ": at least one algorithm is required");
    return false;
  }
  o.algorithms.clear();
  bool ok = true;
  for (size_t i = 0; i < items->size(); ++i) {
    const YAML::Node& item = (*items)[i];
    auto name = r.string_of(item, item.Mark(), index_path(path, i));
    if (!name) {
      ok = false;
      continue;
    }
    std::optional<Coding> coding;
    if (*name == "br") {
      coding = Coding::br;
    } else if (*name == "gzip") {
      coding = Coding::gzip;
    }
    if (!coding) {
      std::string message = index_path(path, i) + ": unknown algorithm " +
                            config::Reader::quote(*name) + " (expected br or gzip";
      if (auto suggestion = config::closest_match(*name, {"br", "gzip"})) {
        message += "; did you mean '" + *suggestion + "'?";
      }
      r.error(item.Mark(), message + ")");
      ok = false;
      continue;
    }
    if (std::find(o.algorithms.begin(), o.algorithms.end(), *coding) != o.algorithms.end()) {
      r.error(item.Mark(),
              index_path(path, i) + ": " + config::Reader::quote(*name) + " is listed twice");
      ok = false;
      continue;
    }
    o.algorithms.push_back(*coding);
  }
  return ok;
}

}  // namespace

std::unique_ptr<Filter> make_compress_filter(BuildContext& ctx) {
  config::Reader& r = ctx.reader;
  const bool had_errors = r.has_errors();
  config::Section s = ctx.options({"types", "min_size", "algorithms", "gzip_level", "br_quality"});
  CompressOptions o;
  bool ok = read_types(r, s, o);
  ok = r.read_size(s, "min_size", o.min_size, 0) && ok;
  ok = read_algorithms(r, s, o) && ok;
  auto level = static_cast<uint32_t>(o.gzip_level);
  ok = r.read(s, "gzip_level", level, 1, 9) && ok;
  auto quality = static_cast<uint32_t>(o.br_quality);
  ok = r.read(s, "br_quality", quality, 0, BrotliEncoder::kMaxQuality) && ok;
  // An unknown key was reported by ctx.options(); with earlier errors in the
  // file that cannot be told apart, but then the whole load fails anyway.
  if (!ok || (!had_errors && r.has_errors())) {
    return nullptr;
  }
  o.gzip_level = static_cast<int>(level);
  o.br_quality = static_cast<int>(quality);

  CompressMetrics metrics{
      &ctx.metrics.counter("ward_compress_responses_total",
                           "Responses of a compressible type, by the content coding sent "
                           "(identity: sent uncompressed).",
                           {"filter", "encoding"}),
      &ctx.metrics.counter("ward_compress_input_bytes_total",
                           "Response body bytes fed to the compressor.", {"filter", "encoding"}),
      &ctx.metrics.counter("ward_compress_output_bytes_total",
                           "Compressed response body bytes sent.", {"filter", "encoding"}),
  };
  return std::make_unique<CompressFilter>(std::move(o), metrics, ctx.label);
}

}  // namespace ward::filters
