#include "proxy/observe/access_log.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/observe/alloc_counter.h"

namespace ward::observe {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono;
using namespace std::chrono_literals;

// 2026-11-23T09:41:07.123456Z
system_clock::time_point sample_time() {
  return sys_days{year{2026} / November / 23} + 9h + 41min + 7s + 123456us;
}

AccessRecord sample_record() {
  AccessRecord r;
  r.time = sample_time();
  r.client_ip = "192.0.2.10";
  r.method = "GET";
  r.host = "api.example.com";
  r.path = "/api/items";
  r.query = "page=2";
  r.protocol = "HTTP/1.1";
  r.status = 200;
  r.bytes_in = 12;
  r.bytes_out = 2326;
  r.duration_ms = 12.3456;
  r.route = "api";
  r.upstream = "backend";
  r.upstream_server = "127.0.0.1:9001";
  r.upstream_duration_ms = 10.5;
  r.request_id = "req-1";
  r.user_agent = "curl/8.5.0";
  r.tls_version = "TLSv1.3";
  r.referer = "https://example.com/";
  return r;
}

std::string json(const AccessRecord& r) {
  std::string out;
  format_json(r, out);
  return out;
}

std::string combined(const AccessRecord& r) {
  std::string out;
  format_combined(r, out);
  return out;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    EXPECT_NE(nl, std::string::npos) << "unterminated last line";
    if (nl == std::string::npos) {
      break;
    }
    lines.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return lines;
}

// ---------------------------------------------------------------------------
// Formats

TEST(AccessLogFormatTest, JsonHasExactlyTheDocumentedKeysInOrder) {
  EXPECT_EQ(json(sample_record()),
            R"({"time":"2026-11-23T09:41:07.123Z","client_ip":"192.0.2.10","method":"GET",)"
            R"("host":"api.example.com","path":"/api/items","query":"page=2",)"
            R"("protocol":"HTTP/1.1","status":200,"bytes_in":12,"bytes_out":2326,)"
            R"("duration_ms":12.346,"route":"api","upstream":"backend",)"
            R"("upstream_server":"127.0.0.1:9001","upstream_duration_ms":10.500,)"
            R"("request_id":"req-1","user_agent":"curl/8.5.0","tls_version":"TLSv1.3"})"
            "\n");
}

TEST(AccessLogFormatTest, JsonAddsTheClientSubjectOnlyWhenThereIsOne) {
  auto r = sample_record();
  r.tls_client_subject = "CN=client \"1\",O=Example";
  auto line = json(r);
  EXPECT_NE(
      line.find(R"("tls_version":"TLSv1.3","tls_client_subject":"CN=client \"1\",O=Example"})"),
      std::string::npos)
      << line;
  EXPECT_EQ(json(sample_record()).find("tls_client_subject"), std::string::npos);
}

TEST(AccessLogFormatTest, JsonWritesNullForAbsentOptionalFields) {
  AccessRecord r;
  r.time = system_clock::time_point{};  // the epoch
  r.status = 404;
  EXPECT_EQ(json(r),
            R"({"time":"1970-01-01T00:00:00.000Z","client_ip":"","method":"","host":"",)"
            R"("path":"","query":"","protocol":"","status":404,"bytes_in":0,"bytes_out":0,)"
            R"("duration_ms":0.000,"route":null,"upstream":null,"upstream_server":null,)"
            R"("upstream_duration_ms":null,"request_id":null,"user_agent":"","tls_version":null})"
            "\n");
}

TEST(AccessLogFormatTest, JsonEscapesHostileBytesAndNulsOnOneLine) {
  AccessRecord r = sample_record();
  using namespace std::string_view_literals;
  r.user_agent = "a\"b\\c\nd\re\tf\0g\x01h\x7f\xff caf\xc3\xa9"sv;
  r.path = "/x\"}\n{\"evil\":1"sv;
  std::string line = json(r);
  EXPECT_NE(line.find(R"("user_agent":"a\"b\\c\nd\re\tf\u0000g\u0001h\u007f)"
                      "\xEF\xBF\xBD caf\xC3\xA9\""),
            std::string::npos)
      << line;
  EXPECT_NE(line.find(R"("path":"/x\"}\n{\"evil\":1")"), std::string::npos) << line;
  EXPECT_EQ(line.find('\n'), line.size() - 1);
  EXPECT_EQ(line.find('\0'), std::string::npos);
}

TEST(AccessLogFormatTest, JsonTimeIsUtcMillisecondsTruncated) {
  AccessRecord r = sample_record();
  r.time = sys_days{year{1999} / December / 31} + 23h + 59min + 59s + 999999us;
  EXPECT_EQ(json(r).substr(0, 34), R"({"time":"1999-12-31T23:59:59.999Z")");
  r.time = sys_days{year{2024} / February / 29} + 5ms;
  EXPECT_EQ(json(r).substr(0, 34), R"({"time":"2024-02-29T00:00:00.005Z")");
}

TEST(AccessLogFormatTest, FormattersAppendToTheBuffer) {
  std::string out = "prefix:";
  format_json(sample_record(), out);
  format_combined(sample_record(), out);
  EXPECT_EQ(out, "prefix:" + json(sample_record()) + combined(sample_record()));
}

TEST(AccessLogFormatTest, CombinedMatchesApacheShape) {
  EXPECT_EQ(combined(sample_record()),
            "192.0.2.10 - - [23/Nov/2026:09:41:07 +0000] \"GET /api/items?page=2 HTTP/1.1\" "
            "200 2326 \"https://example.com/\" \"curl/8.5.0\"\n");
}

TEST(AccessLogFormatTest, CombinedWritesDashForEmptyFields) {
  AccessRecord r;
  r.time = sys_days{year{2000} / October / 10} + 13h + 55min + 36s;
  r.status = 400;
  EXPECT_EQ(combined(r), "- - - [10/Oct/2000:13:55:36 +0000] \"-\" 400 0 \"-\" \"-\"\n");
  r.method = "GET";
  r.path = "/";
  r.protocol = "HTTP/2";
  EXPECT_EQ(combined(r), "- - - [10/Oct/2000:13:55:36 +0000] \"GET / HTTP/2\" 400 0 \"-\" \"-\"\n");
}

TEST(AccessLogFormatTest, CombinedEscapesHostileBytesAndNuls) {
  AccessRecord r = sample_record();
  using namespace std::string_view_literals;
  r.user_agent = "a\"b\\c\nd\0e\x7f\xff\xc3\xa9 ok"sv;
  r.referer = "\" \"forged"sv;
  r.path = "/p\r\n";
  std::string line = combined(r);
  EXPECT_EQ(
      line,
      "192.0.2.10 - - [23/Nov/2026:09:41:07 +0000] \"GET /p\\x0D\\x0A?page=2 HTTP/1.1\" "
      "200 2326 \"\\x22 \\x22forged\" \"a\\x22b\\x5Cc\\x0Ad\\x00e\\x7F\\xFF\\xC3\\xA9 ok\"\n");
}

// ---------------------------------------------------------------------------
// The log itself

class AccessLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ward-access-log-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  config::AccessLogConfig file_config(uint64_t max_size = 10 * config::kMiB,
                                      uint32_t max_files = 5) const {
    config::AccessLogConfig c;
    c.path = (dir_ / "access.log").string();
    c.format = config::AccessLogFormat::json;
    c.max_size = max_size;
    c.max_files = max_files;
    return c;
  }

  fs::path log_path(int n = 0) const {
    return n == 0 ? dir_ / "access.log" : dir_ / ("access.log." + std::to_string(n));
  }

  // A record whose JSON line has the same length for every `seq` < 10^6.
  static std::string path_for(size_t shard, size_t seq) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "/s%zu/%06zu", shard, seq);
    return buf;
  }

  static AccessRecord numbered(const std::string& path) {
    AccessRecord r = sample_record();
    r.path = path;
    return r;
  }

  fs::path dir_;
};

TEST_F(AccessLogTest, OffGivesADisabledLog) {
  config::AccessLogConfig c;
  c.path = "off";
  AccessLog log(c, 2);
  EXPECT_FALSE(log.enabled());
  log.write(0, sample_record());
  log.flush();
  log.reopen();
  EXPECT_EQ(log.dropped(), 0u);
}

TEST_F(AccessLogTest, UnopenablePathThrowsWithThePath) {
  config::AccessLogConfig c;
  c.path = (dir_ / "missing-dir" / "access.log").string();
  try {
    AccessLog log(c, 1);
    FAIL() << "expected std::runtime_error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(c.path), std::string::npos) << e.what();
  }
}

TEST_F(AccessLogTest, WritesJsonLinesToAFileInOrder) {
  AccessLog log(file_config(), 1);
  EXPECT_TRUE(log.enabled());
  std::string expected;
  for (size_t i = 0; i < 1000; ++i) {
    std::string p = path_for(0, i);
    log.write(0, numbered(p));
    format_json(numbered(p), expected);
  }
  log.flush();
  EXPECT_EQ(read_file(log_path()), expected);
  EXPECT_EQ(log.dropped(), 0u);
  EXPECT_EQ(log.write_errors(), 0u);
}

TEST_F(AccessLogTest, WarmWorkerWritesWithoutAllocating) {
  AccessLog log(file_config(), 1);
  AccessRecord r = sample_record();
  log.write(0, r);  // sizes the shard's line buffer
  uint64_t before = testing::allocations_on_this_thread();
  for (int i = 0; i < 100; ++i) {
    log.write(0, r);
  }
  EXPECT_EQ(testing::allocations_on_this_thread(), before);
  log.flush();
  EXPECT_EQ(lines_of(read_file(log_path())).size() + log.dropped(), 101u);
}

TEST_F(AccessLogTest, CombinedFormatGoesToTheFile) {
  auto c = file_config();
  c.format = config::AccessLogFormat::combined;
  AccessLog log(c, 1);
  log.write(0, sample_record());
  log.flush();
  EXPECT_EQ(read_file(log_path()), combined(sample_record()));
}

TEST_F(AccessLogTest, FlushReturnsOnlyAfterEveryEarlierLineIsWritten) {
  AccessLog log(file_config(), 2);
  std::string expected;
  for (size_t round = 0; round < 50; ++round) {
    for (size_t shard = 0; shard < 2; ++shard) {
      log.write(shard, numbered(path_for(shard, round)));
      format_json(numbered(path_for(shard, round)), expected);
    }
    log.flush();
    // The writer drains shard 0 then shard 1, but a line of shard 0 from this
    // round may land after shard 1's; compare as sets of lines per round.
    auto got = lines_of(read_file(log_path()));
    auto want = lines_of(expected);
    ASSERT_EQ(got.size(), want.size()) << "round " << round;
    std::sort(got.begin(), got.end());
    std::sort(want.begin(), want.end());
    ASSERT_EQ(got, want) << "round " << round;
  }
}

TEST_F(AccessLogTest, DestructorDrainsWhatIsQueued) {
  std::string expected;
  {
    AccessLog log(file_config(), 1);
    for (size_t i = 0; i < 500; ++i) {
      log.write(0, numbered(path_for(0, i)));
      format_json(numbered(path_for(0, i)), expected);
    }
  }
  EXPECT_EQ(read_file(log_path()), expected);
}

TEST_F(AccessLogTest, RotatesBySizeKeepingMaxFilesOldFiles) {
  const size_t line_size = json(numbered(path_for(0, 0))).size();
  // Room for five lines and a half: the sixth line goes to a new file.
  auto c = file_config(5 * line_size + line_size / 2, 2);
  std::vector<std::string> lines;
  {
    AccessLog log(c, 1);
    for (size_t i = 0; i < 23; ++i) {
      lines.push_back(json(numbered(path_for(0, i))));
      log.write(0, numbered(path_for(0, i)));
      if (i % 3 == 0) {
        log.flush();  // vary how lines are batched: rotation must not care
      }
    }
    log.flush();
    EXPECT_EQ(log.write_errors(), 0u);
  }
  auto join = [&](size_t from, size_t to) {
    std::string s;
    for (size_t i = from; i < to; ++i) {
      s += lines[i];
    }
    return s;
  };
  // Files of 5 lines: 0-4, 5-9, 10-14, 15-19, then 20-22 in the live file;
  // only two old files are kept.
  EXPECT_EQ(read_file(log_path()), join(20, 23));
  EXPECT_EQ(read_file(log_path(1)), join(15, 20));
  EXPECT_EQ(read_file(log_path(2)), join(10, 15));
  EXPECT_FALSE(fs::exists(log_path(3)));
}

TEST_F(AccessLogTest, ExistingFileIsAppendedAndCountsTowardsMaxSize) {
  const std::string line = json(numbered(path_for(0, 0)));
  {
    std::ofstream out(log_path(), std::ios::binary);
    out << "old line\n";
  }
  AccessLog log(file_config(2 * line.size(), 3), 1);
  log.write(0, numbered(path_for(0, 0)));
  log.write(0, numbered(path_for(0, 0)));
  log.flush();
  EXPECT_EQ(read_file(log_path(1)), "old line\n" + line);
  EXPECT_EQ(read_file(log_path()), line);
}

TEST_F(AccessLogTest, MaxFilesZeroKeepsNoOldFile) {
  const std::string line = json(numbered(path_for(0, 0)));
  AccessLog log(file_config(line.size(), 0), 1);
  for (int i = 0; i < 3; ++i) {
    log.write(0, numbered(path_for(0, 0)));
  }
  log.flush();
  EXPECT_EQ(read_file(log_path()), line);
  EXPECT_FALSE(fs::exists(log_path(1)));
}

TEST_F(AccessLogTest, ReopenStartsANewFileAfterTheOldOneWasMovedAway) {
  AccessLog log(file_config(), 1);
  log.write(0, numbered("/before"));
  log.flush();
  fs::rename(log_path(), dir_ / "moved.log");
  log.write(0, numbered("/still-old"));  // queued before reopen: either file
  log.reopen();
  log.write(0, numbered("/after"));
  log.flush();
  std::string moved = read_file(dir_ / "moved.log");
  std::string fresh = read_file(log_path());
  EXPECT_EQ(moved.find(json(numbered("/before"))), 0u);
  EXPECT_NE((moved + fresh).find(json(numbered("/still-old"))), std::string::npos);
  EXPECT_EQ(fresh.substr(fresh.size() - json(numbered("/after")).size()), json(numbered("/after")));
  EXPECT_EQ(moved.find("/after"), std::string::npos);
}

TEST_F(AccessLogTest, ReopenOfAnUnopenablePathKeepsTheOldFile) {
  AccessLog log(file_config(), 1);
  fs::rename(log_path(), dir_ / "moved.log");
  fs::create_directory(log_path());  // a directory where the file should be
  log.reopen();
  EXPECT_EQ(log.write_errors(), 1u);
  log.write(0, numbered("/x"));
  log.flush();
  EXPECT_EQ(read_file(dir_ / "moved.log"), json(numbered("/x")));
}

TEST_F(AccessLogTest, LineLargerThanTheRingIsDroppedAndCounted) {
  AccessLog log(file_config(), 1, 64);
  for (int i = 0; i < 10; ++i) {
    log.write(0, sample_record());
  }
  log.flush();
  EXPECT_EQ(log.dropped(), 10u);
  EXPECT_EQ(read_file(log_path()), "");
}

// The writer is stuck on a full pipe, so the worker's small ring fills up:
// the worker must neither block nor lose count. Every line is either
// delivered whole or counted as dropped.
TEST_F(AccessLogTest, FullRingDropsAndCountsWithoutBlockingTheWorker) {
  fs::path fifo = dir_ / "fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(reader, 0);
  ::fcntl(reader, F_SETPIPE_SZ, 4096);  // as small as Linux allows

  config::AccessLogConfig c;
  c.path = fifo.string();
  auto log = std::make_unique<AccessLog>(c, 1, 4096);
  constexpr size_t kLines = 2000;  // ~700 KB: far more than pipe + ring
  auto start = steady_clock::now();
  for (size_t i = 0; i < kLines; ++i) {
    log->write(0, numbered(path_for(0, i)));
  }
  EXPECT_LT(steady_clock::now() - start, 10s) << "the worker blocked";
  EXPECT_GT(log->dropped(), 0u);

  // Drain the pipe until the log has flushed everything it kept.
  auto flushed = std::async(std::launch::async, [&] { log->flush(); });
  std::string received;
  char buf[65536];
  auto deadline = steady_clock::now() + 30s;
  for (;;) {
    ssize_t n = ::read(reader, buf, sizeof buf);
    if (n > 0) {
      received.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (flushed.wait_for(0s) == std::future_status::ready) {
      while ((n = ::read(reader, buf, sizeof buf)) > 0) {
        received.append(buf, static_cast<size_t>(n));
      }
      break;
    }
    ASSERT_LT(steady_clock::now(), deadline) << "flush never completed";
    pollfd p{reader, POLLIN, 0};
    ::poll(&p, 1, 10);
  }
  auto lines = lines_of(received);
  EXPECT_EQ(lines.size() + log->dropped(), kLines);
  size_t last = 0;
  bool first = true;
  for (const auto& line : lines) {
    ASSERT_EQ(line + "\n", json(numbered(line.substr(line.find("/s0/"), 10)))) << line;
    size_t seq = std::stoul(line.substr(line.find("/s0/") + 4, 6));
    EXPECT_TRUE(first || seq > last) << "out of order: " << line;
    first = false;
    last = seq;
  }
  log.reset();
  ::close(reader);
}

// One thread per shard writing as fast as it can: every line that arrives is
// whole and well-formed, each shard's lines keep their order, and nothing is
// lost without being counted.
TEST_F(AccessLogTest, ConcurrentShardsNeverInterleaveLines) {
  constexpr size_t kShards = 4;
  constexpr size_t kPerShard = 5000;
  AccessLog log(file_config(0, 0), kShards, 256 * 1024);
  std::vector<std::thread> workers;
  for (size_t shard = 0; shard < kShards; ++shard) {
    workers.emplace_back([&, shard] {
      for (size_t i = 0; i < kPerShard; ++i) {
        std::string p = path_for(shard, i);
        log.write(shard, numbered(p));
      }
    });
  }
  for (auto& w : workers) {
    w.join();
  }
  log.flush();
  auto lines = lines_of(read_file(log_path()));
  EXPECT_EQ(lines.size() + log.dropped(), kShards * kPerShard);
  std::vector<long> last(kShards, -1);
  for (const auto& line : lines) {
    auto at = line.find("\"path\":\"/s");
    ASSERT_NE(at, std::string::npos) << line;
    std::string p = line.substr(at + 8, 10);
    ASSERT_EQ(line + "\n", json(numbered(p))) << "corrupt line: " << line;
    size_t shard = std::stoul(p.substr(2, 1));
    long seq = std::stol(p.substr(4, 6));
    ASSERT_LT(shard, kShards);
    EXPECT_GT(seq, last[shard]) << line;
    last[shard] = seq;
  }
}

TEST_F(AccessLogTest, StdoutTargetWritesToFileDescriptorOne) {
  fs::path capture = dir_ / "stdout.txt";
  std::fflush(stdout);
  int saved = ::dup(STDOUT_FILENO);
  ASSERT_GE(saved, 0);
  int fd = ::open(capture.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  ::dup2(fd, STDOUT_FILENO);
  {
    config::AccessLogConfig c;
    c.path = "stdout";
    AccessLog log(c, 1);
    log.write(0, sample_record());
    log.flush();
  }
  ::dup2(saved, STDOUT_FILENO);
  ::close(saved);
  ::close(fd);
  EXPECT_EQ(read_file(capture), json(sample_record()));
}

}  // namespace
}  // namespace ward::observe
