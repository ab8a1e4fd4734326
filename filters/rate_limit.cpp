#include "filters/rate_limit.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <openssl/evp.h>

#include "filters/bucket_table.h"
#include "proxy/config/units.h"
#include "proxy/store/redis.h"

namespace ward::filters {

namespace {

constexpr int64_t kNsPerSecond = 1'000'000'000;
// The longest refill of a whole bucket (burst * T) accepted: 10 years, ns.
// Nothing sane comes near (burst 100000 at 1/hour would be 11 years: a
// typo), and it keeps now + burst * T + T far below int64's 292 years.
constexpr int64_t kMaxRefillNs = int64_t{10} * 366 * 24 * 3600 * kNsPerSecond;
constexpr uint32_t kMaxBurst = 1'000'000'000;  // tokens
// 100 million keys is 2.1 GB of slots per table at the cap: anything above
// is more likely a typo than a plan.
constexpr uint32_t kMaxMaxKeys = 100'000'000;
constexpr size_t kMaxShareName = 64;  // bytes; it is a metric label too

// Namespaces of the table's keys (BucketTable::key): a header's value, a
// cookie's value and a client IP never share a bucket even when their text
// is equal ("X-User: 10.0.0.1" is not the client 10.0.0.1). A request
// without its header or cookie counts under "ip", the same bucket a
// client_ip filter sharing the table uses.
constexpr std::string_view kIpNamespace = "ip";

enum class KeySource { client_ip, header, cookie };

// What FilterState holds between the phases: a = what was decided, b = whole
// tokens left, c = ns until the next token (0 when the bucket is full).
enum Decided : int64_t { kNothing = 0, kAllowed = 1, kLimited = 2 };

struct Options {
  KeySource source = KeySource::client_ip;
  std::string name;   // the header or cookie name
  std::string ns;     // the table namespace of keys read from that source
  int64_t burst = 0;  // tokens
  BucketTable::Policy policy;
  int status = 429;
  bool dry_run = false;
  std::string share;
  // store: redis://...; none = the process's own table.
  std::optional<store::RedisAddress> redis;
  int64_t store_timeout_ns = 50'000'000;
};

// The bucket on a Redis server: the same GCRA as BucketTable, run as one
// script so that concurrent ward instances update a key atomically, on the
// server's clock (TIME) so that their clocks need not agree. Times are in
// microseconds as Lua numbers (doubles: a quarter-microsecond resolution at
// today's epoch). ARGV: T and burst * T in microseconds. Returns {allowed,
// TAT - now in ns} after the decision, which is what remember() takes.
// A key expires a second after its bucket is full again. Redis 3.2 to 4
// refuse a write after TIME unless the script replicates its effects
// (the default from Redis 5 on, where the call is a no-op).
constexpr std::string_view kRedisScript =
    R"lua(if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local step = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local after = tat + step
if after - now <= window then
  redis.call('SET', KEYS[1], string.format('%.3f', after), 'PX', math.ceil((after - now) / 1000) + 1000)
  return {1, math.floor((after - now) * 1000)}
end
return {0, math.floor((tat - now) * 1000)}
)lua";

// Keys longer than this go to Redis as their SHA-256: a header value may be
// kilobytes, and nothing needs it readable.
constexpr size_t kMaxRedisKeyValue = 128;

std::string hex(const unsigned char* p, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    out += kDigits[p[i] >> 4];
    out += kDigits[p[i] & 15];
  }
  return out;
}

std::string digest_hex(const EVP_MD* md, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), out, &n, md, nullptr);
  return hex(out, n);
}

// Microseconds as Lua reads them: "12.5" for 12,500 ns.
std::string micros_text(int64_t ns) {
  std::string out = std::to_string(ns / 1000);
  int64_t frac = ns % 1000;
  if (frac != 0) {
    char buf[8];
    std::snprintf(buf, sizeof buf, ".%03lld", static_cast<long long>(frac));
    out += buf;
  }
  return out;
}

// Every metric of the filter, declared once. `filter` is the share name when
// set, else the instance's label: the table and its numbers go together.
struct RateLimitMetrics {
  observe::CounterFamily& requests;   // {filter, result=allowed|limited|dry_run|store_error}
  observe::GaugeFamily& keys;         // {filter}: keys in the table
  observe::CounterFamily& evictions;  // {filter}: live buckets dropped at max_keys

  explicit RateLimitMetrics(observe::Registry& r)
      : requests(r.counter("ward_ratelimit_requests_total",
                           "Requests judged by rate_limit filters, by result (dry_run: would "
                           "have been limited, passed; store_error: no answer from the Redis "
                           "store, passed)",
                           {"filter", "result"})),
        keys(r.gauge("ward_ratelimit_keys", "Keys tracked in a rate_limit bucket table",
                     {"filter"})),
        evictions(r.counter("ward_ratelimit_evictions_total",
                            "Live buckets dropped at max_keys (those clients start full again)",
                            {"filter"})) {}
};

// RFC 9110 5.6.2 tchar: header field names, and cookie names (RFC 6265 4.1.1
// cookie-name = token). Also keeps NUL out of a table namespace.
bool is_token(std::string_view s) {
  constexpr std::string_view kSpecials = "!#$%&'*+-.^_`|~";
  return !s.empty() && std::all_of(s.begin(), s.end(), [&](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           kSpecials.find(c) != std::string_view::npos;
  });
}

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

// Whole seconds, rounded up, of a non-negative duration in ns.
int64_t ceil_seconds(int64_t ns) {
  return (ns + kNsPerSecond - 1) / kNsPerSecond;
}

// Sets a field this filter owns: replaces what is there when `replace`,
// else appends (the response was found to carry none of them).
void put(http::HeaderList& headers, bool replace, std::string_view name, std::string_view value) {
  if (replace) {
    headers.set(name, value);
  } else {
    headers.add(name, value);
  }
}

void put_number(http::HeaderList& headers, bool replace, std::string_view name, int64_t value) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, value);
  put(headers, replace, name, std::string_view(buf, static_cast<size_t>(r.ptr - buf)));
}

// Whether the response already has a field of those this filter sets (an
// upstream's own RateLimit-* or Retry-After). Usually none: one pass over
// the fields then spares a removal pass for each of the four.
bool has_our_fields(const http::HeaderList& headers) {
  constexpr std::string_view kPrefix = "ratelimit-";
  bool found = false;
  headers.for_each([&](const http::HeaderList::Field& f) {
    found = found ||
            (f.name.size() > kPrefix.size() &&
             http::iequals(f.name.substr(0, kPrefix.size()), kPrefix)) ||
            http::iequals(f.name, "retry-after");
  });
  return found;
}

// The value of cookie `name` in a Cookie header ("a=1; b=2", RFC 6265 4.2.1).
std::optional<std::string_view> cookie_value(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    size_t semi = header.find(';');
    std::string_view pair = http::trim_ows(header.substr(0, semi));
    size_t eq = pair.find('=');
    if (eq != std::string_view::npos && http::trim_ows(pair.substr(0, eq)) == name) {
      return http::trim_ows(pair.substr(eq + 1));
    }
    if (semi == std::string_view::npos) {
      break;
    }
    header.remove_prefix(semi + 1);
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// Options

// The backing array of a namespace-scope initializer_list lives as long as the program.
const std::initializer_list<std::string_view> kOptionKeys = {
    "key", "rate", "burst", "status", "share", "dry_run", "store", "store_timeout", "max_keys"};

class OptionReader {
 public:
  explicit OptionReader(BuildContext& ctx) : ctx_(ctx), s_(ctx.options(kOptionKeys)) {}

  // Reads every option, reporting each problem; nullopt when there was any.
  std::optional<Options> read() {
    Options o;
    read_rate_and_burst(o);
    read_key(o);
    uint32_t status = 429;
    if (ctx_.reader.read(s_, "status", status, 400, 599)) {
      o.status = static_cast<int>(status);
    } else {
      fail();
    }
    if (!ctx_.reader.read(s_, "dry_run", o.dry_run)) {
      fail();
    }
    read_share(o);
    read_store(o);
    uint32_t max_keys = kDefaultRateLimitMaxKeys;
    if (ctx_.reader.read(s_, "max_keys", max_keys, BucketTable::kMinKeys, kMaxMaxKeys)) {
      o.policy.max_keys = max_keys;
    } else {
      fail();
    }
    if (error_count_ > 0 || has_unknown_key()) {
      return std::nullopt;
    }
    return o;
  }

 private:
  // options() reported them already; a misspelt option must not be ignored.
  bool has_unknown_key() const {
    for (const auto& kv : ctx_.spec.options) {
      if (!kv.first.IsScalar() || std::find(kOptionKeys.begin(), kOptionKeys.end(),
                                            kv.first.Scalar()) == kOptionKeys.end()) {
        return true;
      }
    }
    return false;
  }

  void fail() { ++error_count_; }
  void error(std::string_view key, const std::string& message) {
    ctx_.reader.error(s_.value_mark(key), s_.child(key) + ": " + message);
    fail();
  }

  void read_rate_and_burst(Options& o) {
    if (!ctx_.reader.require(s_, "rate")) {
      fail();
      return;
    }
    const YAML::Node& node = *s_.get("rate");
    std::optional<config::Rate> rate;
    if (node.IsScalar()) {
      rate = config::parse_rate(node.Scalar());
    }
    if (!rate) {
      error("rate", "expected a rate such as 30/minute, 100/second or 5000/hour, got " +
                        config::Reader::describe(node));
      return;
    }
    // count <= 10^9 and period <= 1h (parse_rate), so nothing overflows.
    int64_t period_ns = std::chrono::nanoseconds(rate->period).count();
    auto count = static_cast<int64_t>(rate->count);
    // T, ns per token, rounded up so the limit is never exceeded: exact when
    // the count divides the period (30/minute: 2 s); otherwise each token
    // comes under 1 ns late (7/second: 142857143 ns for 142857142.86, one
    // part in 10^9; only near the 10^9/second maximum does it show).
    o.policy.interval_ns = (period_ns + count - 1) / count;
    // Default burst: one second of rate, at least one token.
    o.burst = std::max<int64_t>(1, count * kNsPerSecond / period_ns);
    uint32_t burst = 0;
    if (!ctx_.reader.read(s_, "burst", burst, 1, kMaxBurst)) {
      fail();
      return;
    }
    if (burst != 0) {
      o.burst = burst;
    }
    if (o.burst > kMaxRefillNs / o.policy.interval_ns) {
      error(s_.get("burst") != nullptr ? "burst" : "rate",
            std::to_string(o.burst) + " tokens at " + node.Scalar() +
                " take more than 10 years to refill; lower burst or raise rate");
      return;
    }
    o.policy.burst_ns = o.burst * o.policy.interval_ns;
  }

  void read_key(Options& o) {
    std::string text = "client_ip";
    if (!ctx_.reader.read(s_, "key", text)) {
      fail();
      return;
    }
    auto source_name = [&](std::string_view prefix) -> std::optional<std::string_view> {
      if (!text.starts_with(prefix)) {
        return std::nullopt;
      }
      return std::string_view(text).substr(prefix.size());
    };
    if (text == "client_ip") {
      o.source = KeySource::client_ip;
      o.ns = kIpNamespace;
    } else if (auto header = source_name("header:")) {
      if (!is_token(*header)) {
        error("key", config::Reader::quote(*header) +
                         " is not a header name (letters, digits and !#$%&'*+-.^_`|~)");
        return;
      }
      o.source = KeySource::header;
      o.name = *header;
      // Header names are case-insensitive (RFC 9110 5.1): X-User and x-user
      // are the same header, so the same buckets.
      o.ns = "h:" + ascii_lower(*header);
    } else if (auto cookie = source_name("cookie:")) {
      if (!is_token(*cookie)) {
        error("key", config::Reader::quote(*cookie) +
                         " is not a cookie name (letters, digits and !#$%&'*+-.^_`|~)");
        return;
      }
      o.source = KeySource::cookie;
      o.name = *cookie;
      o.ns = "c:" + o.name;  // cookie names are case-sensitive (RFC 6265 5.4)
    } else {
      error("key",
            "expected client_ip, header:NAME or cookie:NAME, got " + config::Reader::quote(text));
    }
  }

  void read_share(Options& o) {
    if (!ctx_.reader.read(s_, "share", o.share)) {
      fail();
      return;
    }
    if (s_.get("share") == nullptr) {
      return;
    }
    // Letters, digits, '_' and '-' only: the name is a metric label, and
    // without a '.' it can never equal an unshared filter's label
    // ("api.rate_limit"), whose table it would otherwise silently join.
    bool valid = !o.share.empty() && o.share.size() <= kMaxShareName &&
                 std::all_of(o.share.begin(), o.share.end(), [](char c) {
                   return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                          (c >= '0' && c <= '9') || c == '_' || c == '-';
                 });
    if (!valid) {
      error("share", "expected a name of 1 to 64 letters, digits, '_' or '-', got " +
                         config::Reader::quote(o.share));
    }
  }

  void read_store(Options& o) {
    std::string store = "local";
    if (!ctx_.reader.read(s_, "store", store)) {
      fail();
      return;
    }
    config::Duration timeout = std::chrono::milliseconds(50);
    if (!ctx_.reader.read_duration(s_, "store_timeout", timeout, std::chrono::milliseconds(1))) {
      fail();
    }
    o.store_timeout_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count();
    if (store == "local") {
      return;
    }
    if (store.starts_with("redis://") || store.starts_with("rediss://")) {
      std::string why;
      o.redis = store::parse_redis_url(store, why);
      if (!o.redis) {
        error("store", why);
      }
      return;
    }
    error("store", "expected local or redis://host:port, got " + config::Reader::quote(store));
  }

  BuildContext& ctx_;
  config::Section s_;
  size_t error_count_ = 0;
};

// ---------------------------------------------------------------------------
// The filter

class RateLimitFilter final : public Filter {
 public:
  RateLimitFilter(Options options, std::shared_ptr<BucketTable> table, RateLimitMetrics metrics,
                  std::string label)
      : o_(std::move(options)),
        table_(std::move(table)),
        metrics_(metrics),
        label_(std::move(label)),
        limit_text_(std::to_string(o_.burst)),
        policy_text_(std::to_string(o_.burst) +
                     ";w=" + std::to_string(ceil_seconds(o_.policy.burst_ns))),
        redis_prefix_("ward:rl:" + label_ + ":"),
        script_sha_(digest_hex(EVP_sha1(), kRedisScript)),
        step_text_(micros_text(o_.policy.interval_ns)),
        window_text_(micros_text(o_.policy.burst_ns)) {}

  FilterStatus on_request(RequestContext& ctx) override {
    if (o_.redis) {
      ctx.store_call.address = &*o_.redis;
      ctx.store_call.timeout_ns = o_.store_timeout_ns;
      ctx.store_call.command = store::encode_command(
          {"EVALSHA", script_sha_, "1", redis_key(ctx), step_text_, window_text_});
      return FilterStatus::wait;
    }
    BucketTable::Verdict v = table_->admit(key_of(ctx), ctx.now_ns, o_.policy);
    count_table_changes(ctx.worker, v);
    return decide(ctx, v.allowed, v.tat_ns - ctx.now_ns);
  }

  // The script's answer. A server that has not seen the script yet says
  // NOSCRIPT (a restart, a failover, SCRIPT FLUSH): send it whole once.
  // No answer, or one that makes no sense, lets the request pass (fail
  // open, as Envoy's and nginx's global limiters do): a Redis outage must
  // not become an outage of every route behind it.
  FilterStatus on_store_reply(RequestContext& ctx, const StoreResult& r) override {
    FilterState& st = *ctx.state;
    if (r.ok && r.reply->is_error() && r.reply->str.starts_with("NOSCRIPT") && st.b == 0) {
      st.b = 1;  // sent whole: a second NOSCRIPT is an error
      ctx.store_call.address = &*o_.redis;
      ctx.store_call.timeout_ns = o_.store_timeout_ns;
      ctx.store_call.command = store::encode_command(
          {"EVAL", kRedisScript, "1", redis_key(ctx), step_text_, window_text_});
      return FilterStatus::wait;
    }
    const store::Reply* reply = r.ok ? r.reply : nullptr;
    if (reply == nullptr || reply->type != store::Reply::Type::array ||
        reply->elements.size() != 2 || reply->elements[0].type != store::Reply::Type::integer ||
        reply->elements[1].type != store::Reply::Type::integer) {
      metrics_.requests.inc(ctx.worker, {label_, "store_error"});
      return FilterStatus::next;
    }
    return decide(ctx, reply->elements[0].integer == 1, reply->elements[1].integer);
  }

  // IETF httpapi RateLimit header fields (separate-header form), on every
  // response of the route: the upstream's, a later filter's reply, our 429.
  // set(), not add(): an upstream's own RateLimit-* would contradict ours.
  void on_response(RequestContext& ctx) override {
    FilterState& st = *ctx.state;
    if (st.a == kNothing || ctx.response_headers == nullptr) {
      return;
    }
    http::HeaderList& h = *ctx.response_headers;
    const bool replace = has_our_fields(h);
    int64_t wait_ns = st.c;
    put(h, replace, "RateLimit-Limit", limit_text_);
    put_number(h, replace, "RateLimit-Remaining", st.b);
    put_number(h, replace, "RateLimit-Reset", ceil_seconds(wait_ns));
    put(h, replace, "RateLimit-Policy", policy_text_);
    if (st.a == kLimited) {
      // RFC 9110 10.2.3. Never 0: "retry now" would invite a retry storm
      // that is refused again.
      put_number(h, replace, "Retry-After", std::max<int64_t>(1, ceil_seconds(wait_ns)));
    }
  }

 private:
  // The bucket this request counts against: its namespace and value.
  struct BucketName {
    std::string_view ns;
    std::string_view value;
  };

  BucketName bucket_of(const RequestContext& ctx) const {
    std::optional<std::string_view> value;
    if (o_.source != KeySource::client_ip && ctx.request_headers != nullptr) {
      value = o_.source == KeySource::header ? header_value(*ctx.request_headers)
                                             : cookie(*ctx.request_headers);
    }
    // No usable header or cookie: count under the client IP. An empty value
    // counts as missing, or every client sending an empty one would share
    // (and drain) a single bucket.
    if (value && !value->empty()) {
      return {o_.ns, *value};
    }
    return {kIpNamespace, ctx.client_ip_text};
  }

  uint64_t key_of(const RequestContext& ctx) const {
    const BucketName b = bucket_of(ctx);
    return table_->key(b.ns, b.value);
  }

  std::optional<std::string_view> header_value(const http::HeaderList& headers) const {
    auto v = headers.get(o_.name);  // the first field of that name
    if (!v) {
      return std::nullopt;
    }
    return http::trim_ows(*v);
  }

  std::optional<std::string_view> cookie(const http::HeaderList& headers) const {
    // HTTP/2 may split cookies over several fields (RFC 9113 8.2.3): look
    // in each, first match wins.
    std::optional<std::string_view> found;
    headers.for_each([&](const http::HeaderList::Field& f) {
      if (!found && http::iequals(f.name, "cookie")) {
        found = cookie_value(f.value, o_.name);
      }
    });
    return found;
  }

  // `d`: TAT - now after the decision (see bucket_table.h), ns.
  FilterStatus decide(RequestContext& ctx, bool allowed, int64_t d) const {
    if (allowed) {
      metrics_.requests.inc(ctx.worker, {label_, "allowed"});
      if (!o_.dry_run) {
        remember(ctx, kAllowed, d);
      }
      return FilterStatus::next;
    }
    if (o_.dry_run) {
      // Observe only: the request passes and its response is untouched.
      metrics_.requests.inc(ctx.worker, {label_, "dry_run"});
      return FilterStatus::next;
    }
    metrics_.requests.inc(ctx.worker, {label_, "limited"});
    remember(ctx, kLimited, d);
    ctx.reply(o_.status, "rate_limited");
    return FilterStatus::stop;
  }

  // The bucket's key on the Redis server: "ward:rl:<filter>:<ns>:<value>",
  // where <filter> is the share name or the instance's label, so ward
  // instances with the same config count together.
  std::string redis_key(const RequestContext& ctx) const {
    const BucketName b = bucket_of(ctx);
    std::string key = redis_prefix_;
    key += b.ns;
    key += ':';
    if (b.value.size() > kMaxRedisKeyValue) {
      key += "sha256:";
      key += digest_hex(EVP_sha256(), b.value);
    } else {
      key += b.value;
    }
    return key;
  }

  // Stores what on_response needs: whole tokens left and ns to the next
  // token, from d = TAT - now, how far the bucket is from full (see
  // bucket_table.h), ns.
  void remember(RequestContext& ctx, Decided decided, int64_t d) const {
    int64_t interval = o_.policy.interval_ns;
    int64_t burst_ns = o_.policy.burst_ns;
    int64_t remaining = o_.burst;
    int64_t wait_ns = 0;
    if (d > 0) {
      remaining = d >= burst_ns ? 0 : (burst_ns - d) / interval;
      // The bucket refills one whole token each time d crosses a multiple
      // of T: the next is d mod T away, or a full T when d is a multiple.
      wait_ns = d - (d - 1) / interval * interval;
    }
    ctx.state->a = decided;
    ctx.state->b = remaining;
    ctx.state->c = wait_ns;
  }

  void count_table_changes(size_t worker, const BucketTable::Verdict& v) const {
    // Per-worker shards of one gauge: each insert or removal is counted by
    // the worker that made it, so the sum over shards is the table's size
    // (a shard alone may go negative).
    int64_t delta =
        (v.inserted ? 1 : 0) - static_cast<int64_t>(v.expired) - static_cast<int64_t>(v.evicted);
    if (delta != 0) {
      metrics_.keys.add(worker, {label_}, delta);
    }
    if (v.evicted > 0) {
      metrics_.evictions.inc(worker, {label_}, v.evicted);
    }
  }

  const Options o_;
  const std::shared_ptr<BucketTable> table_;  // thread-safe; shared with reloads and `share`
  const RateLimitMetrics metrics_;
  const std::string label_;  // the metrics' `filter` label
  const std::string limit_text_;
  const std::string policy_text_;
  // store: redis
  const std::string redis_prefix_;
  const std::string script_sha_;   // EVALSHA's name of kRedisScript
  const std::string step_text_;    // T, microseconds
  const std::string window_text_;  // burst * T, microseconds
};

}  // namespace

std::unique_ptr<Filter> make_rate_limit_filter(BuildContext& ctx) {
  std::optional<Options> options = OptionReader(ctx).read();
  if (!options) {
    return nullptr;
  }
  // Without `share` the table is this instance's, keyed by its label, so a
  // reload that keeps the route keeps the buckets (a reload must not hand
  // every client a fresh burst). A share name never contains '.', a label
  // always does: the two kinds of key cannot meet.
  std::string name = options->share.empty() ? ctx.label : options->share;
  auto table = ctx.runtime.get_or_create<BucketTable>(
      "rate_limit:" + name, [] { return std::make_shared<BucketTable>(); });
  return std::make_unique<RateLimitFilter>(std::move(*options), std::move(table),
                                           RateLimitMetrics(ctx.metrics), std::move(name));
}

}  // namespace ward::filters
