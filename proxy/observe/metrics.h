#pragma once

// Prometheus metrics with per-worker shards.
//
// Families are registered once at start-up (main thread, before workers run)
// and live as long as the Registry. Updates name a shard (the worker index;
// the main thread uses shard 0 only for main-thread metrics such as reload
// counters, which are not on the request path). A shard is written by one
// thread only and read by the scraper:
//   - the owning thread finds a series in a map only it touches (no lock);
//   - a new series is created by the owning thread and published to the
//     scraper under the shard's mutex (once per label set, not per request);
//   - values are relaxed atomics, so the scraper reads without stopping anyone.
// render() sums every shard and writes the text exposition format 0.0.4.

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ward::observe {

using Labels = std::initializer_list<std::string_view>;
// Label values held elsewhere (a Labels list converts to it).
using LabelValues = std::span<const std::string_view>;

class CounterFamily {
 public:
  virtual ~CounterFamily() = default;
  // Label values in the order of the family's label names.
  virtual void inc(size_t shard, Labels labels, uint64_t n = 1) = 0;
  // Sum over shards (for tests and /upstreams); 0 when the series does not exist.
  virtual uint64_t value(Labels labels) const = 0;
  // Drops this shard's part of every series whose label values `drop`
  // accepts (other shards keep theirs); returns how many. Only the thread
  // that updates the shard may call it. A later inc() starts the series
  // again from 0, which Prometheus reads as a counter reset.
  virtual size_t remove_if(size_t shard,
                           const std::function<bool(const std::vector<std::string>&)>& drop) = 0;
};

class GaugeFamily {
 public:
  virtual ~GaugeFamily() = default;
  virtual void add(size_t shard, Labels labels, int64_t delta) = 0;
  // Sets this shard's part (other shards keep theirs); for main-thread gauges.
  virtual void set(size_t shard, Labels labels, int64_t v) = 0;
  // Drops this shard's part of the series (other shards keep theirs). Only
  // the thread that updates the shard may call it.
  virtual void remove(size_t shard, LabelValues labels) = 0;
  virtual int64_t value(Labels labels) const = 0;
};

// Keeps one shard of a gauge family equal to a full export of something
// that changes (the servers of health-checked upstreams, the certificates
// served): each pass sets every series that exists now, and finish() removes
// those an earlier pass set and this one did not. A server that left its
// upstream or a certificate replaced by another then leaves /metrics
// instead of showing its last value forever (an alert on it would never
// clear). Used by one thread, the shard's owner.
class GaugeExport {
 public:
  GaugeExport(GaugeFamily& family, size_t shard) : family_(family), shard_(shard) {}

  void set(Labels labels, int64_t v);
  void finish();

 private:
  GaugeFamily& family_;
  const size_t shard_;
  std::set<std::vector<std::string>> exported_;  // by the passes before this one
  std::set<std::vector<std::string>> current_;   // by this pass so far
};

class HistogramFamily {
 public:
  virtual ~HistogramFamily() = default;
  virtual void observe(size_t shard, Labels labels, double v) = 0;
  virtual uint64_t count(Labels labels) const = 0;
};

class Registry {
 public:
  explicit Registry(size_t shards);
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  size_t shards() const;

  // The returned reference stays valid for the Registry's lifetime.
  // Registering a name again returns the existing family when type and label
  // names (and bounds) match; a mismatch or an invalid metric/label name throws
  // std::invalid_argument. Thread-safe (may run during a scrape).
  // An update with the wrong number of label values, or a shard >= shards(),
  // is a programming error: it asserts in debug builds and is ignored otherwise.
  CounterFamily& counter(std::string name, std::string help, std::vector<std::string> label_names);
  GaugeFamily& gauge(std::string name, std::string help, std::vector<std::string> label_names);
  HistogramFamily& histogram(std::string name, std::string help,
                             std::vector<std::string> label_names, std::vector<double> bounds);

  // Text exposition format 0.0.4: # HELP, # TYPE, series sorted by name then
  // labels, label values escaped (\\, \", \n), histograms with cumulative
  // _bucket{le=...} including le="+Inf", _sum and _count. A family without
  // labels always shows its one series (0 until updated); a labelled family
  // with no series yet shows only its HELP and TYPE lines.
  std::string render() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Default latency buckets in seconds (1 ms .. 10 s).
std::vector<double> default_latency_buckets();

}  // namespace ward::observe
