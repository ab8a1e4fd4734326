#include "proxy/observe/metrics.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/observe/alloc_counter.h"

namespace ward::observe {
namespace {

class MetricsTest : public ::testing::Test {
 protected:
  Registry registry_{4};
};

TEST_F(MetricsTest, EmptyRegistryRendersNothing) {
  EXPECT_EQ(registry_.render(), "");
}

TEST_F(MetricsTest, CounterWithoutLabelsRendersNameValueFromTheStart) {
  auto& reloads = registry_.counter("ward_config_reloads_total", "Successful reloads.", {});
  EXPECT_EQ(registry_.render(),
            "# HELP ward_config_reloads_total Successful reloads.\n"
            "# TYPE ward_config_reloads_total counter\n"
            "ward_config_reloads_total 0\n");
  reloads.inc(0, {});
  reloads.inc(0, {}, 2);
  EXPECT_EQ(reloads.value({}), 3u);
  EXPECT_EQ(registry_.render(),
            "# HELP ward_config_reloads_total Successful reloads.\n"
            "# TYPE ward_config_reloads_total counter\n"
            "ward_config_reloads_total 3\n");
}

TEST_F(MetricsTest, LabelledFamilyWithoutSeriesPrintsOnlyHelpAndType) {
  registry_.counter("ward_requests_total", "Requests.", {"route", "status"});
  registry_.histogram("ward_request_duration_seconds", "Latency.", {"route"}, {0.1, 1});
  EXPECT_EQ(registry_.render(),
            "# HELP ward_request_duration_seconds Latency.\n"
            "# TYPE ward_request_duration_seconds histogram\n"
            "# HELP ward_requests_total Requests.\n"
            "# TYPE ward_requests_total counter\n");
}

TEST_F(MetricsTest, CounterSumsEveryShard) {
  auto& c = registry_.counter("ward_requests_total", "Requests.", {"route"});
  c.inc(0, {"api"});
  c.inc(1, {"api"}, 10);
  c.inc(3, {"api"}, 100);
  c.inc(2, {"web"}, 5);
  EXPECT_EQ(c.value({"api"}), 111u);
  EXPECT_EQ(c.value({"web"}), 5u);
  EXPECT_EQ(c.value({"nope"}), 0u);
  EXPECT_EQ(registry_.render(),
            "# HELP ward_requests_total Requests.\n"
            "# TYPE ward_requests_total counter\n"
            "ward_requests_total{route=\"api\"} 111\n"
            "ward_requests_total{route=\"web\"} 5\n");
}

TEST_F(MetricsTest, FamiliesSortedByNameAndSeriesByLabels) {
  auto& b = registry_.counter("b_total", "B.", {"route", "code"});
  auto& a = registry_.gauge("a_connections", "A.", {"listener"});
  b.inc(1, {"web", "200"});
  b.inc(0, {"api", "500"});
  b.inc(2, {"api", "200"});
  a.add(0, {"websecure"}, 2);
  a.add(1, {"web"}, 1);
  EXPECT_EQ(registry_.render(),
            "# HELP a_connections A.\n"
            "# TYPE a_connections gauge\n"
            "a_connections{listener=\"web\"} 1\n"
            "a_connections{listener=\"websecure\"} 2\n"
            "# HELP b_total B.\n"
            "# TYPE b_total counter\n"
            "b_total{route=\"api\",code=\"200\"} 1\n"
            "b_total{route=\"api\",code=\"500\"} 1\n"
            "b_total{route=\"web\",code=\"200\"} 1\n");
}

TEST_F(MetricsTest, LabelValuesAndHelpAreEscaped) {
  auto& c = registry_.counter("x_total", "Line one\nback\\slash \"quoted\".", {"v"});
  c.inc(0, {"a\\b\"c\nd"});
  c.inc(0, {std::string_view("bad\xff utf8 \xc3\xa9")});
  EXPECT_EQ(registry_.render(),
            "# HELP x_total Line one\\nback\\\\slash \"quoted\".\n"
            "# TYPE x_total counter\n"
            "x_total{v=\"a\\\\b\\\"c\\nd\"} 1\n"
            "x_total{v=\"bad\xEF\xBF\xBD utf8 \xc3\xa9\"} 1\n");
}

TEST_F(MetricsTest, LabelSetsThatConcatenateAlikeStayDistinct) {
  auto& c = registry_.counter("x_total", "X.", {"a", "b"});
  c.inc(0, {"ab", ""});
  c.inc(0, {"a", "b"}, 2);
  c.inc(0, {"b", "a"}, 3);
  EXPECT_EQ(c.value({"ab", ""}), 1u);
  EXPECT_EQ(c.value({"a", "b"}), 2u);
  EXPECT_EQ(c.value({"b", "a"}), 3u);
}

// The owner thread compares its last few series first (a memo of pointers to
// series): more label sets than it holds, interleaved, and a caller's buffer
// reused for another value must still land on the right series.
TEST_F(MetricsTest, InterleavedSeriesBeyondTheRecentMemoCountApart) {
  auto& c = registry_.counter("x_total", "X.", {"server", "code"});
  auto& h = registry_.histogram("h", "H.", {"route"}, {1});
  std::vector<std::string> servers;
  for (int i = 0; i < 9; ++i) {
    servers.push_back("10.0.0." + std::to_string(i) + ":80");
  }
  for (int round = 0; round < 3; ++round) {
    for (size_t i = 0; i < servers.size(); ++i) {
      c.inc(0, {servers[i], "200"}, i + 1);
      h.observe(0, {servers[i]}, 0.5);
    }
  }
  for (size_t i = 0; i < servers.size(); ++i) {
    EXPECT_EQ(c.value({servers[i], "200"}), 3 * (i + 1)) << servers[i];
    EXPECT_EQ(h.count({servers[i]}), 3u) << servers[i];
  }
  // The same bytes of the caller's memory, another value: another series.
  std::string label = "route-a";
  c.inc(0, {label, "200"});
  label[6] = 'b';
  c.inc(0, {label, "200"}, 5);
  EXPECT_EQ(c.value({"route-a", "200"}), 1u);
  EXPECT_EQ(c.value({"route-b", "200"}), 5u);
}

TEST_F(MetricsTest, UpdatingAnExistingSeriesDoesNotAllocate) {
  auto& c = registry_.counter("c_total", "C.", {"route", "status"});
  auto& g = registry_.gauge("g", "G.", {"route"});
  auto& h = registry_.histogram("h", "H.", {"route"}, default_latency_buckets());
  std::string route = "a-route-name-too-long-for-the-small-string-buffer";
  c.inc(1, {route, "200"});
  g.add(1, {route}, 1);
  h.observe(1, {route}, 0.2);
  uint64_t before = testing::allocations_on_this_thread();
  for (int i = 0; i < 1000; ++i) {
    c.inc(1, {route, "200"});
    g.add(1, {route}, 1);
    h.observe(1, {route}, 0.2);
  }
  EXPECT_EQ(testing::allocations_on_this_thread(), before);
  EXPECT_EQ(c.value({route, "200"}), 1001u);
  c.inc(1, {route, "500"});  // a new series does allocate: the counter works
  EXPECT_GT(testing::allocations_on_this_thread(), before);
}

TEST_F(MetricsTest, GaugeAddsAndSetsPerShard) {
  auto& g = registry_.gauge("ward_active", "Active.", {});
  g.set(0, {}, 5);
  g.add(1, {}, -7);
  g.add(1, {}, 1);
  EXPECT_EQ(g.value({}), -1);
  g.set(0, {}, 10);  // replaces shard 0's part only
  EXPECT_EQ(g.value({}), 4);
  g.add(2, {}, -10);
  EXPECT_EQ(registry_.render(),
            "# HELP ward_active Active.\n"
            "# TYPE ward_active gauge\n"
            "ward_active -6\n");
}

TEST_F(MetricsTest, RemovingAGaugeSeriesDropsThatShardsPartOnly) {
  auto& g = registry_.gauge("up", "Up.", {"server"});
  g.set(0, {"a"}, 1);  // a is in the owner's memo of recent series
  g.set(0, {"b"}, 0);
  g.set(1, {"b"}, 5);
  const std::vector<std::string_view> b = {"b"};
  g.remove(0, b);
  EXPECT_EQ(g.value({"b"}), 5);  // shard 1 keeps its part
  g.remove(1, b);
  g.remove(1, b);  // absent already: nothing happens
  EXPECT_EQ(g.value({"b"}), 0);
  EXPECT_EQ(registry_.render(),
            "# HELP up Up.\n"
            "# TYPE up gauge\n"
            "up{server=\"a\"} 1\n");
  // Set again after removal: a new series from zero, not a freed one.
  g.add(0, {"b"}, 2);
  g.add(0, {"b"}, 1);
  EXPECT_EQ(g.value({"b"}), 3);
  const std::vector<std::string_view> a = {"a"};
  g.remove(0, a);
  g.set(0, {"a"}, 7);
  EXPECT_EQ(g.value({"a"}), 7);
}

TEST_F(MetricsTest, RemoveIfDropsTheMatchingCounterSeriesOfOneShard) {
  auto& c = registry_.counter("reqs", "R.", {"server", "code"});
  c.inc(0, {"a", "200"}, 3);
  c.inc(0, {"b", "200"}, 4);
  c.inc(0, {"b", "502"}, 1);  // b's series are in the owner's memo of recent ones
  c.inc(1, {"b", "200"}, 10);
  auto is_b = [](const std::vector<std::string>& v) { return v[0] == "b"; };
  EXPECT_EQ(c.remove_if(0, is_b), 2u);
  EXPECT_EQ(c.value({"b", "200"}), 10u);  // shard 1 keeps its part
  EXPECT_EQ(c.value({"b", "502"}), 0u);
  EXPECT_EQ(c.value({"a", "200"}), 3u);
  EXPECT_EQ(c.remove_if(0, is_b), 0u);  // gone already
  EXPECT_EQ(c.remove_if(1, is_b), 1u);
  EXPECT_EQ(registry_.render(),
            "# HELP reqs R.\n"
            "# TYPE reqs counter\n"
            "reqs{server=\"a\",code=\"200\"} 3\n");
  // Counted again after removal: a new series from zero, not a freed one.
  c.inc(0, {"b", "200"});
  EXPECT_EQ(c.value({"b", "200"}), 1u);
}

TEST_F(MetricsTest, GaugeExportRemovesWhatTheLastPassDidNotSet) {
  auto& g = registry_.gauge("healthy", "H.", {"upstream", "server"});
  GaugeExport out(g, 0);
  out.set({"app", "10.0.0.1:80"}, 1);
  out.set({"app", "10.0.0.2:80"}, 0);
  out.finish();
  EXPECT_EQ(g.value({"app", "10.0.0.2:80"}), 0);
  EXPECT_NE(registry_.render().find("server=\"10.0.0.2:80\"} 0"), std::string::npos);

  out.set({"app", "10.0.0.1:80"}, 1);
  out.set({"app", "10.0.0.3:80"}, 1);
  out.finish();  // 10.0.0.2 left the upstream
  std::string text = registry_.render();
  EXPECT_EQ(text.find("10.0.0.2"), std::string::npos) << text;
  EXPECT_NE(text.find("server=\"10.0.0.1:80\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("server=\"10.0.0.3:80\"} 1"), std::string::npos) << text;

  out.finish();  // an empty pass: nothing is exported any more
  EXPECT_EQ(registry_.render(),
            "# HELP healthy H.\n"
            "# TYPE healthy gauge\n");
}

TEST_F(MetricsTest, RemovalWhileScrapingIsSafe) {
  // Under ThreadSanitizer and AddressSanitizer: a scrape and value() read
  // cells while the owner removes and recreates them.
  auto& g = registry_.gauge("g", "G.", {"server"});
  std::atomic<bool> done{false};
  std::thread scraper([&] {
    while (!done.load()) {
      std::string text = registry_.render();
      EXPECT_NE(text.find("# TYPE g gauge"), std::string::npos);
      EXPECT_GE(g.value({"s1"}), 0);
    }
  });
  GaugeExport out(g, 2);
  for (int i = 0; i < 5000; ++i) {
    out.set({"s" + std::to_string(i % 3)}, i);
    out.finish();  // removes the series of the pass before
  }
  done.store(true);
  scraper.join();
  EXPECT_EQ(registry_.render(),
            "# HELP g G.\n"
            "# TYPE g gauge\n"
            "g{server=\"s1\"} 4999\n");
}

TEST_F(MetricsTest, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  auto& h = registry_.histogram("lat_seconds", "Latency.", {"route"}, {0.1, 1, 2.5});
  h.observe(0, {"api"}, 0.05);
  h.observe(1, {"api"}, 0.1);  // le is inclusive
  h.observe(2, {"api"}, 0.5);
  h.observe(3, {"api"}, 3);
  EXPECT_EQ(h.count({"api"}), 4u);
  EXPECT_EQ(h.count({"web"}), 0u);
  EXPECT_EQ(registry_.render(),
            "# HELP lat_seconds Latency.\n"
            "# TYPE lat_seconds histogram\n"
            "lat_seconds_bucket{route=\"api\",le=\"0.1\"} 2\n"
            "lat_seconds_bucket{route=\"api\",le=\"1\"} 3\n"
            "lat_seconds_bucket{route=\"api\",le=\"2.5\"} 3\n"
            "lat_seconds_bucket{route=\"api\",le=\"+Inf\"} 4\n"
            "lat_seconds_sum{route=\"api\"} 3.65\n"
            "lat_seconds_count{route=\"api\"} 4\n");
}

TEST_F(MetricsTest, HistogramWithoutLabelsRendersZeroesFromTheStart) {
  registry_.histogram("h", "H.", {}, {1, std::numeric_limits<double>::infinity()});
  EXPECT_EQ(registry_.render(),
            "# HELP h H.\n"
            "# TYPE h histogram\n"
            "h_bucket{le=\"1\"} 0\n"
            "h_bucket{le=\"+Inf\"} 0\n"
            "h_sum 0\n"
            "h_count 0\n");
}

TEST_F(MetricsTest, NanObservationCountsInInfBucket) {
  auto& h = registry_.histogram("h", "H.", {}, {1});
  h.observe(0, {}, std::nan(""));
  EXPECT_EQ(registry_.render(),
            "# HELP h H.\n"
            "# TYPE h histogram\n"
            "h_bucket{le=\"1\"} 0\n"
            "h_bucket{le=\"+Inf\"} 1\n"
            "h_sum NaN\n"
            "h_count 1\n");
}

TEST_F(MetricsTest, IntegersArePrintedWithoutExponent) {
  auto& c = registry_.counter("c_total", "C.", {});
  auto& g = registry_.gauge("g", "G.", {});
  auto& h = registry_.histogram("h", "H.", {}, {});
  c.inc(0, {}, 18446744073709551615ull);
  g.set(0, {}, -9223372036854775807ll);
  h.observe(0, {}, 1e12);
  h.observe(0, {}, 0.5);
  EXPECT_EQ(registry_.render(),
            "# HELP c_total C.\n"
            "# TYPE c_total counter\n"
            "c_total 18446744073709551615\n"
            "# HELP g G.\n"
            "# TYPE g gauge\n"
            "g -9223372036854775807\n"
            "# HELP h H.\n"
            "# TYPE h histogram\n"
            "h_bucket{le=\"+Inf\"} 2\n"
            "h_sum 1000000000000.5\n"
            "h_count 2\n");
}

// A proxied request takes about a millisecond: the buckets must tell 1 ms
// from 4 ms, and their le labels must read as dashboards write them.
TEST_F(MetricsTest, DefaultLatencyBucketsSpanOneMillisecondToTenSeconds) {
  std::vector<double> expected{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                               0.25,  0.5,    1,     2.5,  5,     10};
  EXPECT_EQ(default_latency_buckets(), expected);
  auto& d = registry_.histogram("d", "D.", {}, default_latency_buckets());
  d.observe(0, {}, 0.0008);
  d.observe(0, {}, 0.0031);
  std::string text = registry_.render();
  EXPECT_NE(text.find("d_bucket{le=\"0.001\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("d_bucket{le=\"0.0025\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("d_bucket{le=\"0.005\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("d_bucket{le=\"10\"} 2\n"), std::string::npos) << text;
}

TEST_F(MetricsTest, RegisteringTheSameFamilyAgainReturnsIt) {
  auto& a = registry_.counter("x_total", "X.", {"route"});
  auto& b = registry_.counter("x_total", "X again.", {"route"});
  EXPECT_EQ(&a, &b);
  auto& h1 = registry_.histogram("h", "H.", {}, {1, 2});
  auto& h2 = registry_.histogram("h", "H.", {}, {1, 2});
  EXPECT_EQ(&h1, &h2);
}

TEST_F(MetricsTest, ConflictingOrInvalidRegistrationsThrow) {
  registry_.counter("x_total", "X.", {"route"});
  EXPECT_THROW(registry_.gauge("x_total", "X.", {"route"}), std::invalid_argument);
  EXPECT_THROW(registry_.counter("x_total", "X.", {"other"}), std::invalid_argument);
  registry_.histogram("h", "H.", {}, {1, 2});
  EXPECT_THROW(registry_.histogram("h", "H.", {}, {1, 3}), std::invalid_argument);
  EXPECT_THROW(registry_.counter("1bad", "B.", {}), std::invalid_argument);
  EXPECT_THROW(registry_.counter("bad-name", "B.", {}), std::invalid_argument);
  EXPECT_THROW(registry_.counter("ok", "B.", {"bad-label"}), std::invalid_argument);
  EXPECT_THROW(registry_.counter("ok", "B.", {"__reserved"}), std::invalid_argument);
  EXPECT_THROW(registry_.counter("ok", "B.", {"a", "a"}), std::invalid_argument);
  EXPECT_THROW(registry_.histogram("hh", "H.", {"le"}, {1}), std::invalid_argument);
  EXPECT_THROW(registry_.histogram("hh", "H.", {}, {2, 1}), std::invalid_argument);
  EXPECT_THROW(registry_.histogram("hh", "H.", {}, {1, 1}), std::invalid_argument);
  EXPECT_THROW(registry_.histogram("hh", "H.", {}, {std::nan("")}), std::invalid_argument);
}

// A structural check of text format 0.0.4, standing in for `promtool check
// metrics` (not installed here): every sample belongs to the family announced
// by the HELP/TYPE lines before it, names and labels are well-formed, values
// parse, no series repeats, and histogram buckets are cumulative with
// _count equal to the +Inf bucket.
void expect_valid_exposition(const std::string& text) {
  static const std::regex kHelp(R"(# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .*)");
  static const std::regex kType(R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram))");
  static const std::regex kSample(
      R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*")(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*")*\})? (-?[0-9]+(\.[0-9]+)?(e[-+][0-9]+)?|NaN|\+Inf|-Inf))");
  ASSERT_FALSE(text.empty());
  ASSERT_EQ(text.back(), '\n');
  std::istringstream in(text);
  std::string line;
  std::string family;
  std::string type;
  std::set<std::string> seen_families;
  std::set<std::string> seen_series;
  std::map<std::string, std::pair<double, double>> last_bucket;  // series w/o le -> (le, count)
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_match(line, m, kHelp)) {
      family = m[1];
      EXPECT_TRUE(seen_families.insert(family).second) << "family repeated: " << line;
      ASSERT_TRUE(std::getline(in, line));
      ASSERT_TRUE(std::regex_match(line, m, kType)) << line;
      EXPECT_EQ(m[1], family);
      type = m[2];
      continue;
    }
    ASSERT_TRUE(std::regex_match(line, m, kSample)) << "bad sample line: " << line;
    std::string name = m[1];
    std::string series = line.substr(0, line.rfind(' '));
    EXPECT_TRUE(seen_series.insert(series).second) << "series repeated: " << line;
    if (type == "histogram") {
      ASSERT_TRUE(name == family + "_bucket" || name == family + "_sum" ||
                  name == family + "_count")
          << line;
      double value = std::stod(line.substr(line.rfind(' ') + 1));
      auto le_pos = series.find("le=\"");
      if (name == family + "_bucket") {
        ASSERT_NE(le_pos, std::string::npos) << line;
        std::string le = series.substr(le_pos + 4, series.find('"', le_pos + 4) - le_pos - 4);
        std::string key = series.substr(family.size() + 7, le_pos - family.size() - 7);
        double bound = le == "+Inf" ? std::numeric_limits<double>::infinity() : std::stod(le);
        auto it = last_bucket.find(key);
        if (it != last_bucket.end()) {
          EXPECT_LT(it->second.first, bound) << line;
          EXPECT_LE(it->second.second, value) << line;
        }
        last_bucket[key] = {bound, value};
      } else if (name == family + "_count") {
        std::string labels = series.substr(family.size() + 6);
        std::string key = labels.empty() ? "{" : labels.substr(0, labels.size() - 1) + ",";
        auto it = last_bucket.find(key);
        ASSERT_NE(it, last_bucket.end()) << line;
        EXPECT_TRUE(std::isinf(it->second.first)) << line;
        EXPECT_EQ(it->second.second, value) << line;
      }
    } else {
      EXPECT_EQ(name, family) << line;
    }
  }
}

TEST_F(MetricsTest, FullyLoadedRegistryRendersValidExposition) {
  auto& requests = registry_.counter("ward_requests_total", "Requests by route and status.",
                                     {"route", "method", "status"});
  auto& active =
      registry_.gauge("ward_active_connections", "Open downstream connections.", {"listener"});
  auto& latency = registry_.histogram("ward_request_duration_seconds", "Request latency.",
                                      {"route"}, default_latency_buckets());
  auto& reloads = registry_.counter("ward_config_reloads_total", "Reloads.", {});
  registry_.counter("ward_unused_total", "Never updated.", {"x"});
  const char* routes[] = {"api", "web", "weird \"route\"\\\n", "caf\xc3\xa9"};
  for (size_t shard = 0; shard < registry_.shards(); ++shard) {
    for (const char* route : routes) {
      requests.inc(shard, {route, "GET", "200"}, shard + 1);
      requests.inc(shard, {route, "POST", "503"});
      latency.observe(shard, {route}, 0.003 * static_cast<double>(shard + 1));
      latency.observe(shard, {route}, 42);
    }
    active.add(shard, {"web"}, 3);
  }
  reloads.inc(0, {});
  std::string text = registry_.render();
  expect_valid_exposition(text);
  EXPECT_NE(text.find("ward_requests_total{route=\"api\",method=\"GET\",status=\"200\"} 10\n"),
            std::string::npos);
  EXPECT_NE(text.find("ward_active_connections{listener=\"web\"} 12\n"), std::string::npos);
  EXPECT_NE(text.find("ward_request_duration_seconds_count{route=\"web\"} 8\n"), std::string::npos);
  EXPECT_NE(text.find("ward_request_duration_seconds_bucket{route=\"web\",le=\"0.005\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("ward_request_duration_seconds_bucket{route=\"web\",le=\"0.01\"} 3\n"),
            std::string::npos);
}

// One writer per shard plus a scraper rendering all the time: the totals are
// exact, and under ThreadSanitizer this is the data-race check.
TEST_F(MetricsTest, ConcurrentShardWritersAndScraperAgree) {
  constexpr int kIterations = 20000;
  auto& c = registry_.counter("c_total", "C.", {"route", "code"});
  auto& g = registry_.gauge("g", "G.", {"route"});
  auto& h = registry_.histogram("h_seconds", "H.", {"route"}, {0.5, 1});
  std::atomic<bool> done{false};
  std::atomic<int> renders{0};
  std::thread scraper([&] {
    while (!done.load()) {
      std::string text = registry_.render();
      EXPECT_NE(text.find("# TYPE h_seconds histogram"), std::string::npos);
      renders.fetch_add(1);
    }
  });
  std::vector<std::thread> writers;
  for (size_t shard = 0; shard < registry_.shards(); ++shard) {
    writers.emplace_back([&, shard] {
      std::string code = std::to_string(200 + shard);
      for (int i = 0; i < kIterations; ++i) {
        std::string route = "r" + std::to_string(i % 7);  // new series early, hits later
        c.inc(shard, {route, code});
        g.add(shard, {route}, i % 2 == 0 ? 1 : -1);
        h.observe(shard, {route}, (i % 3) * 0.5);
      }
    });
  }
  for (auto& w : writers) {
    w.join();
  }
  done.store(true);
  scraper.join();
  EXPECT_GT(renders.load(), 0);
  uint64_t total = 0;
  uint64_t observations = 0;
  for (int r = 0; r < 7; ++r) {
    std::string route = "r" + std::to_string(r);
    for (size_t shard = 0; shard < registry_.shards(); ++shard) {
      total += c.value({route, std::to_string(200 + shard)});
    }
    observations += h.count({route});
  }
  EXPECT_EQ(total, registry_.shards() * kIterations);
  EXPECT_EQ(observations, registry_.shards() * kIterations);
  expect_valid_exposition(registry_.render());
}

}  // namespace
}  // namespace ward::observe
