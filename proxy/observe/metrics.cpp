#include "proxy/observe/metrics.h"

#include <algorithm>
#include <array>
#include <cassert>
#include <charconv>
#include <cmath>
#include <map>
#include <mutex>
#include <span>
#include <stdexcept>
#include <unordered_map>

#include "proxy/util/number.h"

namespace ward::observe {

namespace {

// ---------------------------------------------------------------------------
// Label sets

// FNV-1a over every value, with a separator byte after each one so that
// ("ab", "") and ("a", "b") hash differently. A collision only costs an extra
// comparison: lookups always compare the values themselves.
uint64_t hash_labels(LabelValues labels) {
  constexpr uint64_t kOffset = 14695981039346656037ull;
  constexpr uint64_t kPrime = 1099511628211ull;
  uint64_t h = kOffset;
  for (std::string_view v : labels) {
    for (char c : v) {
      h ^= static_cast<uint8_t>(c);
      h *= kPrime;
    }
    h ^= 0xff;
    h *= kPrime;
  }
  return h;
}

bool same_labels(LabelValues labels, const std::vector<std::string>& values) {
  return std::equal(labels.begin(), labels.end(), values.begin(), values.end(),
                    [](std::string_view a, const std::string& b) { return a == b; });
}

// Length of the valid UTF-8 sequence at s[i], 0 when invalid. Prometheus
// requires label values to be UTF-8; a hostile value must not make the whole
// exposition unparseable.
size_t utf8_length(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  auto cont = [&](size_t k) { return k < s.size() && (b(k) & 0xC0) == 0x80; };
  uint8_t c = b(i);
  if (c < 0x80) {
    return 1;
  }
  if (c >= 0xC2 && c <= 0xDF) {
    return cont(i + 1) ? 2 : 0;
  }
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(i + 1) || !cont(i + 2)) {
      return 0;
    }
    if ((c == 0xE0 && b(i + 1) < 0xA0) || (c == 0xED && b(i + 1) > 0x9F)) {
      return 0;  // overlong or surrogate
    }
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(i + 1) || !cont(i + 2) || !cont(i + 3)) {
      return 0;
    }
    if ((c == 0xF0 && b(i + 1) < 0x90) || (c == 0xF4 && b(i + 1) > 0x8F)) {
      return 0;  // overlong or above U+10FFFF
    }
    return 4;
  }
  return 0;
}

// Text format 0.0.4: label values escape backslash, double quote and line
// feed; invalid UTF-8 bytes become U+FFFD.
std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size();) {
    size_t n = utf8_length(v, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    if (n == 1) {
      char c = v[i];
      if (c == '\\') {
        out += "\\\\";
      } else if (c == '"') {
        out += "\\\"";
      } else if (c == '\n') {
        out += "\\n";
      } else {
        out.push_back(c);
      }
    } else {
      out.append(v.substr(i, n));
    }
    i += n;
  }
  return out;
}

// HELP text escapes only backslash and line feed (text format 0.0.4).
void append_help(std::string& out, std::string_view help) {
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
}

// ---------------------------------------------------------------------------
// Numbers: integers never in exponent form, so 1000000 stays "1000000".

using util::append_int;
using util::append_uint;

void append_double(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
    return;
  }
  if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
    return;
  }
  // 2^53: every integer below it is exact in a double and in an int64.
  constexpr double kExactIntegers = 9007199254740992.0;
  if (v == std::trunc(v) && std::fabs(v) < kExactIntegers) {
    append_int(out, static_cast<int64_t>(v));
    return;
  }
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip form
  out.append(buf, r.ptr);
}

// ---------------------------------------------------------------------------
// Names

bool valid_metric_name(std::string_view n) {
  if (n.empty()) {
    return false;
  }
  for (size_t i = 0; i < n.size(); ++i) {
    char c = n[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) {
      return false;
    }
  }
  return true;
}

bool valid_label_name(std::string_view n) {
  if (n.empty() || n.starts_with("__")) {
    return false;  // "__" names are reserved for Prometheus itself
  }
  for (size_t i = 0; i < n.size(); ++i) {
    char c = n[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) {
      return false;
    }
  }
  return true;
}

// ---------------------------------------------------------------------------
// Cells: the values of one series in one shard. Written by the shard's owner
// with relaxed atomics, read by the scraper without stopping it.

struct CounterCell {
  explicit CounterCell(size_t) {}
  std::atomic<uint64_t> value{0};
};

struct GaugeCell {
  explicit GaugeCell(size_t) {}
  std::atomic<int64_t> value{0};
};

struct HistogramCell {
  // One counter per bucket, not cumulative: bucket i counts bounds[i-1] < v <=
  // bounds[i]; the last one is +Inf. _count is derived from the buckets, so
  // _count always equals le="+Inf" even while the owner is writing.
  explicit HistogramCell(size_t buckets)
      : counts(new std::atomic<uint64_t>[buckets]()), size(buckets) {}
  std::unique_ptr<std::atomic<uint64_t>[]> counts;
  size_t size;
  std::atomic<double> sum{0};
};

// alignas: each series sits on its own cache line(s), so two shards' hot
// counters never share a line.
template <class Cell>
struct alignas(64) Series {
  Series(LabelValues labels, size_t cell_arg)
      : values(labels.begin(), labels.end()), cell(cell_arg) {}
  const std::vector<std::string> values;  // label values as given
  Cell cell;
};

// The series of one family in one shard.
//
// Thread-safety: index_ is mutated only by the shard's owning thread, and
// always under mu_. The owner reads it without mu_ (nobody else mutates it, so
// there is no concurrent write); every other thread reads it under mu_.
template <class Cell>
class alignas(64) ShardTable {
 public:
  // Owner thread only. No lock and no allocation when the series exists.
  Cell& find_or_create(LabelValues labels, size_t cell_arg) {
    // The request path updates the same few series over and over (its
    // route, status 200, the upstream's servers): the series found last are
    // compared first, which skips hashing the values and probing the map
    // (about 2% of a proxied request's instructions, callgrind h1-small).
    // Compared by value, never by the callers' pointers: a label string a
    // reload freed cannot make a new one match the wrong series.
    for (Series<Cell>* s : recent_) {
      if (s != nullptr && same_labels(labels, s->values)) {
        return s->cell;
      }
    }
    uint64_t hash = hash_labels(labels);
    Series<Cell>* found = find(labels, hash);
    if (found == nullptr) {
      auto series = std::make_unique<Series<Cell>>(labels, cell_arg);
      found = series.get();
      std::lock_guard lock(mu_);
      index_.emplace(hash, std::move(series));
    }
    // Round robin: a steady mix of up to kRecent series stays in.
    recent_[next_recent_] = found;
    next_recent_ = (next_recent_ + 1) % kRecent;
    return found->cell;
  }

  // Owner thread only: the series leaves this shard. A scrape holds mu_ while
  // it reads cells, so none is reading this one when it is freed.
  void remove(LabelValues labels) {
    const uint64_t hash = hash_labels(labels);
    Series<Cell>* found = find(labels, hash);
    if (found == nullptr) {
      return;
    }
    for (Series<Cell>*& s : recent_) {
      if (s == found) {
        s = nullptr;
      }
    }
    std::unique_ptr<Series<Cell>> owned;  // freed after the lock is released
    std::lock_guard lock(mu_);
    auto [it, end] = index_.equal_range(hash);
    for (; it != end; ++it) {
      if (it->second.get() == found) {
        owned = std::move(it->second);
        index_.erase(it);
        break;
      }
    }
  }

  // Owner thread only: every series `drop(values)` accepts leaves this shard.
  template <class Pred>
  size_t remove_if(Pred&& drop) {
    std::vector<std::unique_ptr<Series<Cell>>> owned;  // freed after the lock is released
    {
      std::lock_guard lock(mu_);
      for (auto it = index_.begin(); it != index_.end();) {
        if (drop(it->second->values)) {
          owned.push_back(std::move(it->second));
          it = index_.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (const auto& gone : owned) {
      for (Series<Cell>*& s : recent_) {
        if (s == gone.get()) {
          s = nullptr;
        }
      }
    }
    return owned.size();
  }

  // Any thread: f(cell) under the lock when the series exists, so the owner
  // cannot remove it meanwhile.
  template <class F>
  void read_shared(LabelValues labels, uint64_t hash, F&& f) const {
    std::lock_guard lock(mu_);
    if (const Series<Cell>* s = find(labels, hash)) {
      f(s->cell);
    }
  }

  // Any thread: f(label values, cell) for every series.
  template <class F>
  void for_each(F&& f) const {
    std::lock_guard lock(mu_);
    for (const auto& entry : index_) {
      f(entry.second->values, entry.second->cell);
    }
  }

 private:
  Series<Cell>* find(LabelValues labels, uint64_t hash) const {
    auto [it, end] = index_.equal_range(hash);
    for (; it != end; ++it) {
      if (same_labels(labels, it->second->values)) {
        return it->second.get();
      }
    }
    return nullptr;
  }

  static constexpr size_t kRecent = 4;

  mutable std::mutex mu_;
  std::unordered_multimap<uint64_t, std::unique_ptr<Series<Cell>>> index_;
  // Owner thread only (no lock); remove() clears a pointer to the series it frees.
  std::array<Series<Cell>*, kRecent> recent_{};
  size_t next_recent_ = 0;
};

// ---------------------------------------------------------------------------
// Families

class FamilyBase {
 public:
  FamilyBase(std::string name, std::string help, std::vector<std::string> label_names,
             std::string_view type)
      : name_(std::move(name)),
        help_(std::move(help)),
        label_names_(std::move(label_names)),
        type_(type) {}
  virtual ~FamilyBase() = default;

  virtual void render(std::string& out) const = 0;

  std::string_view type() const { return type_; }
  const std::vector<std::string>& label_names() const { return label_names_; }

 protected:
  void render_header(std::string& out) const {
    out += "# HELP ";
    out += name_;
    out.push_back(' ');
    append_help(out, help_);
    out += "\n# TYPE ";
    out += name_;
    out.push_back(' ');
    out += type_;
    out.push_back('\n');
  }

  // `{a="x",b="y"}` (plus le= for buckets); nothing when there are no labels.
  void append_labels(std::string& out, const std::vector<std::string>& escaped_values,
                     std::string_view le = {}) const {
    if (label_names_.empty() && le.empty()) {
      return;
    }
    out.push_back('{');
    for (size_t i = 0; i < label_names_.size(); ++i) {
      if (i > 0) {
        out.push_back(',');
      }
      out += label_names_[i];
      out += "=\"";
      out += escaped_values[i];
      out.push_back('"');
    }
    if (!le.empty()) {
      if (!label_names_.empty()) {
        out.push_back(',');
      }
      out += "le=\"";
      out += le;
      out.push_back('"');
    }
    out.push_back('}');
  }

  // Checks a call's labels; a wrong count is a programming error (assert in
  // debug builds) and the update is ignored rather than crash a worker.
  bool labels_ok(LabelValues labels) const {
    bool ok = labels.size() == label_names_.size();
    assert(ok && "label value count differs from the family's label names");
    return ok;
  }

  // Sums every shard's cells into one entry per rendered label set, sorted.
  // A family without labels always has its single series, zero until updated.
  template <class Cell, class Agg, class Add>
  std::map<std::vector<std::string>, Agg> aggregate(
      const std::vector<std::unique_ptr<ShardTable<Cell>>>& shards, Agg zero, Add add) const {
    std::map<std::vector<std::string>, Agg> out;
    for (const auto& shard : shards) {
      shard->for_each([&](const std::vector<std::string>& values, const Cell& cell) {
        std::vector<std::string> key;
        key.reserve(values.size());
        for (const auto& v : values) {
          key.push_back(escape_label_value(v));
        }
        auto it = out.try_emplace(std::move(key), zero).first;
        add(it->second, cell);
      });
    }
    if (label_names_.empty() && out.empty()) {
      out.emplace(std::vector<std::string>{}, zero);
    }
    return out;
  }

  const std::string name_;
  const std::string help_;
  const std::vector<std::string> label_names_;
  const std::string_view type_;
};

template <class Cell>
std::vector<std::unique_ptr<ShardTable<Cell>>> make_shards(size_t n) {
  std::vector<std::unique_ptr<ShardTable<Cell>>> shards;
  shards.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    shards.push_back(std::make_unique<ShardTable<Cell>>());
  }
  return shards;
}

class CounterFamilyImpl final : public CounterFamily, public FamilyBase {
 public:
  CounterFamilyImpl(std::string name, std::string help, std::vector<std::string> label_names,
                    size_t shards)
      : FamilyBase(std::move(name), std::move(help), std::move(label_names), "counter"),
        shards_(make_shards<CounterCell>(shards)) {}

  void inc(size_t shard, Labels labels, uint64_t n) override {
    if (!labels_ok(labels) || !shard_ok(shard)) {
      return;
    }
    auto& cell = shards_[shard]->find_or_create(labels, 0);
    cell.value.fetch_add(n, std::memory_order_relaxed);
  }

  uint64_t value(Labels labels) const override {
    uint64_t sum = 0;
    uint64_t h = hash_labels(labels);
    for (const auto& shard : shards_) {
      shard->read_shared(
          labels, h, [&](const CounterCell& c) { sum += c.value.load(std::memory_order_relaxed); });
    }
    return sum;
  }

  size_t remove_if(size_t shard,
                   const std::function<bool(const std::vector<std::string>&)>& drop) override {
    if (!shard_ok(shard)) {
      return 0;
    }
    return shards_[shard]->remove_if(drop);
  }

  void render(std::string& out) const override {
    render_header(out);
    auto series = aggregate(shards_, uint64_t{0}, [](uint64_t& acc, const CounterCell& c) {
      acc += c.value.load(std::memory_order_relaxed);
    });
    for (const auto& [labels, v] : series) {
      out += name_;
      append_labels(out, labels);
      out.push_back(' ');
      append_uint(out, v);
      out.push_back('\n');
    }
  }

 private:
  bool shard_ok(size_t shard) const {
    bool ok = shard < shards_.size();
    assert(ok && "shard index out of range");
    return ok;
  }

  std::vector<std::unique_ptr<ShardTable<CounterCell>>> shards_;
};

class GaugeFamilyImpl final : public GaugeFamily, public FamilyBase {
 public:
  GaugeFamilyImpl(std::string name, std::string help, std::vector<std::string> label_names,
                  size_t shards)
      : FamilyBase(std::move(name), std::move(help), std::move(label_names), "gauge"),
        shards_(make_shards<GaugeCell>(shards)) {}

  void add(size_t shard, Labels labels, int64_t delta) override {
    if (GaugeCell* c = cell(shard, labels)) {
      c->value.fetch_add(delta, std::memory_order_relaxed);
    }
  }

  void set(size_t shard, Labels labels, int64_t v) override {
    if (GaugeCell* c = cell(shard, labels)) {
      c->value.store(v, std::memory_order_relaxed);
    }
  }

  void remove(size_t shard, LabelValues labels) override {
    if (!labels_ok(labels)) {
      return;
    }
    assert(shard < shards_.size() && "shard index out of range");
    if (shard < shards_.size()) {
      shards_[shard]->remove(labels);
    }
  }

  int64_t value(Labels labels) const override {
    int64_t sum = 0;
    uint64_t h = hash_labels(labels);
    for (const auto& shard : shards_) {
      shard->read_shared(
          labels, h, [&](const GaugeCell& c) { sum += c.value.load(std::memory_order_relaxed); });
    }
    return sum;
  }

  void render(std::string& out) const override {
    render_header(out);
    auto series = aggregate(shards_, int64_t{0}, [](int64_t& acc, const GaugeCell& c) {
      acc += c.value.load(std::memory_order_relaxed);
    });
    for (const auto& [labels, v] : series) {
      out += name_;
      append_labels(out, labels);
      out.push_back(' ');
      append_int(out, v);
      out.push_back('\n');
    }
  }

 private:
  GaugeCell* cell(size_t shard, LabelValues labels) {
    if (!labels_ok(labels)) {
      return nullptr;
    }
    assert(shard < shards_.size() && "shard index out of range");
    if (shard >= shards_.size()) {
      return nullptr;
    }
    return &shards_[shard]->find_or_create(labels, 0);
  }

  std::vector<std::unique_ptr<ShardTable<GaugeCell>>> shards_;
};

class HistogramFamilyImpl final : public HistogramFamily, public FamilyBase {
 public:
  HistogramFamilyImpl(std::string name, std::string help, std::vector<std::string> label_names,
                      std::vector<double> bounds, size_t shards)
      : FamilyBase(std::move(name), std::move(help), std::move(label_names), "histogram"),
        bounds_(std::move(bounds)),
        shards_(make_shards<HistogramCell>(shards)) {
    for (double b : bounds_) {
      std::string s;
      append_double(s, b);
      le_.push_back(std::move(s));
    }
    le_.push_back("+Inf");
  }

  const std::vector<double>& bounds() const { return bounds_; }

  void observe(size_t shard, Labels labels, double v) override {
    if (!labels_ok(labels)) {
      return;
    }
    assert(shard < shards_.size() && "shard index out of range");
    if (shard >= shards_.size()) {
      return;
    }
    auto& cell = shards_[shard]->find_or_create(labels, bounds_.size() + 1);
    // le is inclusive: the first bucket whose bound is >= v. NaN goes to +Inf
    // (lower_bound would put it in the first bucket).
    size_t i = std::isnan(v)
                   ? bounds_.size()
                   : static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) -
                                         bounds_.begin());
    cell.counts[i].fetch_add(1, std::memory_order_relaxed);
    cell.sum.fetch_add(v, std::memory_order_relaxed);
  }

  uint64_t count(Labels labels) const override {
    uint64_t n = 0;
    uint64_t h = hash_labels(labels);
    for (const auto& shard : shards_) {
      shard->read_shared(labels, h, [&](const HistogramCell& c) {
        for (size_t i = 0; i < c.size; ++i) {
          n += c.counts[i].load(std::memory_order_relaxed);
        }
      });
    }
    return n;
  }

  void render(std::string& out) const override {
    render_header(out);
    struct Agg {
      std::vector<uint64_t> counts;
      double sum = 0;
    };
    Agg zero{std::vector<uint64_t>(bounds_.size() + 1, 0), 0};
    auto series = aggregate(shards_, zero, [](Agg& acc, const HistogramCell& c) {
      for (size_t i = 0; i < c.size; ++i) {
        acc.counts[i] += c.counts[i].load(std::memory_order_relaxed);
      }
      acc.sum += c.sum.load(std::memory_order_relaxed);
    });
    for (const auto& [labels, agg] : series) {
      uint64_t cumulative = 0;
      for (size_t i = 0; i < agg.counts.size(); ++i) {
        cumulative += agg.counts[i];
        out += name_;
        out += "_bucket";
        append_labels(out, labels, le_[i]);
        out.push_back(' ');
        append_uint(out, cumulative);
        out.push_back('\n');
      }
      out += name_;
      out += "_sum";
      append_labels(out, labels);
      out.push_back(' ');
      append_double(out, agg.sum);
      out.push_back('\n');
      out += name_;
      out += "_count";
      append_labels(out, labels);
      out.push_back(' ');
      append_uint(out, cumulative);
      out.push_back('\n');
    }
  }

 private:
  const std::vector<double> bounds_;  // strictly increasing, finite
  std::vector<std::string> le_;       // rendered bounds, then "+Inf"
  std::vector<std::unique_ptr<ShardTable<HistogramCell>>> shards_;
};

void validate_names(const std::string& name, const std::vector<std::string>& label_names,
                    bool histogram) {
  if (!valid_metric_name(name)) {
    throw std::invalid_argument("invalid metric name '" + name + "'");
  }
  for (size_t i = 0; i < label_names.size(); ++i) {
    const auto& l = label_names[i];
    if (!valid_label_name(l)) {
      throw std::invalid_argument("metric " + name + ": invalid label name '" + l + "'");
    }
    if (histogram && l == "le") {
      throw std::invalid_argument("histogram " + name + ": label name 'le' is reserved");
    }
    if (std::find(label_names.begin(), label_names.begin() + i, l) != label_names.begin() + i) {
      throw std::invalid_argument("metric " + name + ": duplicate label name '" + l + "'");
    }
  }
}

// Strictly increasing finite bounds; a trailing +Inf is implied and dropped.
std::vector<double> normalize_bounds(const std::string& name, std::vector<double> bounds) {
  if (!bounds.empty() && std::isinf(bounds.back()) && bounds.back() > 0) {
    bounds.pop_back();
  }
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i]) || (i > 0 && !(bounds[i - 1] < bounds[i]))) {
      throw std::invalid_argument("histogram " + name +
                                  ": bucket bounds must be finite and strictly increasing");
    }
  }
  return bounds;
}

}  // namespace

// ---------------------------------------------------------------------------

struct Registry::Impl {
  explicit Impl(size_t n) : shards(n) {}

  // Returns the family registered under `name`, checking it is the same kind;
  // nullptr when there is none. Caller holds mu.
  template <class T>
  T* existing(const std::string& name, std::string_view type,
              const std::vector<std::string>& label_names) {
    auto it = families.find(name);
    if (it == families.end()) {
      return nullptr;
    }
    auto* family = dynamic_cast<T*>(it->second.get());
    if (family == nullptr || it->second->type() != type ||
        it->second->label_names() != label_names) {
      throw std::invalid_argument("metric " + name +
                                  " is already registered with another type or labels");
    }
    return family;
  }

  const size_t shards;
  // Guards `families` (registration may happen while a scrape runs). Lock
  // order: mu, then a shard's mutex.
  mutable std::mutex mu;
  std::map<std::string, std::unique_ptr<FamilyBase>, std::less<>> families;  // sorted by name
};

Registry::Registry(size_t shards) : impl_(std::make_unique<Impl>(shards == 0 ? 1 : shards)) {}

Registry::~Registry() = default;

size_t Registry::shards() const {
  return impl_->shards;
}

CounterFamily& Registry::counter(std::string name, std::string help,
                                 std::vector<std::string> label_names) {
  validate_names(name, label_names, false);
  std::lock_guard lock(impl_->mu);
  if (auto* f = impl_->existing<CounterFamilyImpl>(name, "counter", label_names)) {
    return *f;
  }
  auto family = std::make_unique<CounterFamilyImpl>(name, std::move(help), std::move(label_names),
                                                    impl_->shards);
  auto& ref = *family;
  impl_->families.emplace(std::move(name), std::move(family));
  return ref;
}

GaugeFamily& Registry::gauge(std::string name, std::string help,
                             std::vector<std::string> label_names) {
  validate_names(name, label_names, false);
  std::lock_guard lock(impl_->mu);
  if (auto* f = impl_->existing<GaugeFamilyImpl>(name, "gauge", label_names)) {
    return *f;
  }
  auto family = std::make_unique<GaugeFamilyImpl>(name, std::move(help), std::move(label_names),
                                                  impl_->shards);
  auto& ref = *family;
  impl_->families.emplace(std::move(name), std::move(family));
  return ref;
}

HistogramFamily& Registry::histogram(std::string name, std::string help,
                                     std::vector<std::string> label_names,
                                     std::vector<double> bounds) {
  validate_names(name, label_names, true);
  bounds = normalize_bounds(name, std::move(bounds));
  std::lock_guard lock(impl_->mu);
  if (auto* f = impl_->existing<HistogramFamilyImpl>(name, "histogram", label_names)) {
    if (f->bounds() != bounds) {
      throw std::invalid_argument("histogram " + name +
                                  " is already registered with other bucket bounds");
    }
    return *f;
  }
  auto family = std::make_unique<HistogramFamilyImpl>(name, std::move(help), std::move(label_names),
                                                      std::move(bounds), impl_->shards);
  auto& ref = *family;
  impl_->families.emplace(std::move(name), std::move(family));
  return ref;
}

std::string Registry::render() const {
  std::string out;
  std::lock_guard lock(impl_->mu);
  for (const auto& [name, family] : impl_->families) {
    family->render(out);
  }
  return out;
}

void GaugeExport::set(Labels labels, int64_t v) {
  family_.set(shard_, labels, v);
  current_.emplace(labels.begin(), labels.end());
}

void GaugeExport::finish() {
  for (const auto& values : exported_) {
    if (!current_.contains(values)) {
      const std::vector<std::string_view> views(values.begin(), values.end());
      family_.remove(shard_, views);
    }
  }
  exported_ = std::move(current_);
  current_.clear();
}

// Prometheus' usual buckets, from 5 ms, and two below them: a proxied
// request on a LAN takes about 1 ms, which the 5 ms bucket could not tell
// from 4 ms. Not 0.5 ms: std::to_chars writes it "5e-04", which is valid
// but matches no dashboard written for le="0.0005".
std::vector<double> default_latency_buckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

}  // namespace ward::observe
