#include "proxy/observe/access_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "proxy/util/json.h"
#include "proxy/util/number.h"

namespace ward::observe {

namespace {

// ---------------------------------------------------------------------------
// Formatting helpers. Plain digit arithmetic and to_chars: no locale, no
// iostreams, no allocation beyond growing `out`.

// Appends v in decimal, zero-padded to at least `width` digits.
void append_padded(std::string& out, int64_t v, int width) {
  if (v < 0) {
    out.push_back('-');
    v = -v;
  }
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, static_cast<uint64_t>(v));
  for (int pad = width - static_cast<int>(r.ptr - buf); pad > 0; --pad) {
    out.push_back('0');
  }
  out.append(buf, r.ptr);
}

using util::append_int;
using util::append_uint;

// Milliseconds with three decimals ("12.345"); JSON has no NaN/Infinity, so
// a non-finite value is written as null.
void append_ms(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += "null";
    return;
  }
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed, 3);
  if (r.ec != std::errc{}) {
    r = std::to_chars(buf, buf + sizeof buf, v);  // absurdly large: exponent form
  }
  out.append(buf, r.ptr);
}

struct CivilTime {
  int64_t year;
  unsigned month;  // 1..12
  unsigned day;    // 1..31
  unsigned hour;
  unsigned minute;
  unsigned second;
  unsigned millis;
};

CivilTime to_civil(std::chrono::system_clock::time_point tp) {
  using namespace std::chrono;
  auto ms = floor<milliseconds>(tp);
  auto day = floor<days>(ms);
  year_month_day ymd{day};
  auto in_day = (ms - day).count();  // 0 .. 86'399'999
  return CivilTime{static_cast<int>(ymd.year()),
                   static_cast<unsigned>(ymd.month()),
                   static_cast<unsigned>(ymd.day()),
                   static_cast<unsigned>(in_day / 3'600'000),
                   static_cast<unsigned>(in_day / 60'000 % 60),
                   static_cast<unsigned>(in_day / 1000 % 60),
                   static_cast<unsigned>(in_day % 1000)};
}

// RFC 3339 in UTC with milliseconds: 2026-11-23T09:41:07.123Z
void append_rfc3339(std::string& out, std::chrono::system_clock::time_point tp) {
  CivilTime t = to_civil(tp);
  append_padded(out, t.year, 4);
  out.push_back('-');
  append_padded(out, t.month, 2);
  out.push_back('-');
  append_padded(out, t.day, 2);
  out.push_back('T');
  append_padded(out, t.hour, 2);
  out.push_back(':');
  append_padded(out, t.minute, 2);
  out.push_back(':');
  append_padded(out, t.second, 2);
  out.push_back('.');
  append_padded(out, t.millis, 3);
  out.push_back('Z');
}

// Common Log Format time, always UTC: 10/Oct/2000:13:55:36 +0000
void append_clf_time(std::string& out, std::chrono::system_clock::time_point tp) {
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  CivilTime t = to_civil(tp);
  append_padded(out, t.day, 2);
  out.push_back('/');
  out += kMonths[(t.month - 1) % 12];
  out.push_back('/');
  append_padded(out, t.year, 4);
  out.push_back(':');
  append_padded(out, t.hour, 2);
  out.push_back(':');
  append_padded(out, t.minute, 2);
  out.push_back(':');
  append_padded(out, t.second, 2);
  out += " +0000";
}

void append_json_or_null(std::string& out, std::string_view s) {
  if (s.empty()) {
    out += "null";
  } else {
    util::json_string_append(out, s);
  }
}

// nginx's access-log escaping: '"', '\\', control bytes and bytes >= 0x7f as
// \xHH, so a hostile header can neither end a quoted field nor a line.
void append_clf_escaped(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (char ch : s) {
    auto c = static_cast<uint8_t>(ch);
    if (c == '"' || c == '\\' || c < 0x20 || c >= 0x7f) {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    } else {
      out.push_back(ch);
    }
  }
}

// An empty field is "-" (Apache/nginx convention).
void append_clf_field(std::string& out, std::string_view s) {
  if (s.empty()) {
    out.push_back('-');
  } else {
    append_clf_escaped(out, s);
  }
}

// ---------------------------------------------------------------------------
// The per-shard ring: single producer (the worker), single consumer (the
// writer thread). head_/tail_ are byte positions that only grow; the bytes in
// [head_, tail_) are complete lines, because the producer publishes a line
// only after copying all of it.

size_t round_up_pow2(size_t n) {
  size_t p = 64;
  while (p < n) {
    p <<= 1;
  }
  return p;
}

class alignas(64) Ring {
 public:
  explicit Ring(size_t bytes)
      : capacity_(round_up_pow2(bytes)), mask_(capacity_ - 1), data_(new char[capacity_]) {}

  // Producer only. False (and counted) when the line does not fit.
  bool push(std::string_view line) {
    uint64_t tail = tail_.load(std::memory_order_relaxed);
    if (capacity_ - (tail - cached_head_) < line.size()) {
      cached_head_ = head_.load(std::memory_order_acquire);
      if (capacity_ - (tail - cached_head_) < line.size()) {
        dropped_.fetch_add(1, std::memory_order_relaxed);
        return false;
      }
    }
    size_t at = tail & mask_;
    size_t first = std::min(line.size(), capacity_ - at);
    std::memcpy(data_.get() + at, line.data(), first);
    std::memcpy(data_.get(), line.data() + first, line.size() - first);
    // seq_cst, not just release: with the writer's seq_cst store of `sleeping`
    // followed by its load of tail_, one side always sees the other, so a
    // line is never left unannounced while the writer sleeps (Dekker).
    tail_.store(tail + line.size(), std::memory_order_seq_cst);
    return true;
  }

  // Consumer only: appends every published byte to `out` and frees it.
  size_t pop_into(std::string& out) {
    uint64_t head = head_.load(std::memory_order_relaxed);
    uint64_t tail = tail_.load(std::memory_order_acquire);
    size_t n = tail - head;
    if (n == 0) {
      return 0;
    }
    size_t at = head & mask_;
    size_t first = std::min(n, capacity_ - at);
    out.append(data_.get() + at, first);
    out.append(data_.get(), n - first);
    head_.store(tail, std::memory_order_release);
    return n;
  }

  // Consumer only.
  bool empty() const {
    return tail_.load(std::memory_order_seq_cst) == head_.load(std::memory_order_relaxed);
  }

  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

  // Producer-private line buffer: formatting reuses it, so a warmed-up worker
  // formats without allocating.
  std::string scratch;

 private:
  const size_t capacity_;  // a power of two
  const size_t mask_;
  const std::unique_ptr<char[]> data_;
  // Producer's line.
  alignas(64) std::atomic<uint64_t> tail_{0};
  uint64_t cached_head_ = 0;  // producer-private copy of head_
  std::atomic<uint64_t> dropped_{0};
  // Consumer's line.
  alignas(64) std::atomic<uint64_t> head_{0};
};

// ---------------------------------------------------------------------------
// Where lines go. Used by the writer thread only (and the constructor before
// the writer starts).

class Sink {
 public:
  explicit Sink(const config::AccessLogConfig& config)
      : max_size_(config.max_size), max_files_(config.max_files) {
    if (config.path == "stdout") {
      fd_ = STDOUT_FILENO;
    } else if (config.path == "stderr") {
      fd_ = STDERR_FILENO;
    } else {
      if (config.path.empty()) {
        throw std::runtime_error("access log path is empty");
      }
      path_ = config.path;
      fd_ = open_file(path_);
      if (fd_ < 0) {
        throw std::runtime_error("cannot open access log " + path_ + ": " + std::strerror(errno));
      }
      size_ = file_size(fd_);
    }
  }

  ~Sink() {
    if (!path_.empty() && fd_ >= 0) {
      ::close(fd_);
    }
  }

  Sink(const Sink&) = delete;
  Sink& operator=(const Sink&) = delete;

  // Writes whole lines, rotating a file before a line that would take it past
  // max_size (a single line longer than max_size gets a file of its own).
  void write_lines(std::string_view data) {
    if (path_.empty() || max_size_ == 0) {
      write_all(data);
      return;
    }
    size_t start = 0;  // first byte not yet written
    size_t pos = 0;    // end of the lines accepted for the current file
    while (pos < data.size()) {
      size_t nl = data.find('\n', pos);
      size_t end = nl == std::string_view::npos ? data.size() : nl + 1;
      uint64_t pending = pos - start;
      if (size_ + pending > 0 && size_ + pending + (end - pos) > max_size_) {
        write_all(data.substr(start, pos - start));
        start = pos;
        rotate();
      }
      pos = end;
    }
    write_all(data.substr(start));
  }

  void reopen() {
    if (path_.empty()) {
      return;
    }
    int fd = open_file(path_);
    if (fd < 0) {
      errors_.fetch_add(1, std::memory_order_relaxed);
      return;  // keep writing where we were rather than lose lines
    }
    ::close(fd_);
    fd_ = fd;
    size_ = file_size(fd_);
  }

  uint64_t errors() const { return errors_.load(std::memory_order_relaxed); }

 private:
  static int open_file(const std::string& path) {
    return ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  }

  static uint64_t file_size(int fd) {
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      return 0;
    }
    return static_cast<uint64_t>(st.st_size);
  }

  void write_all(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::write(fd_, data.data(), data.size());
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        errors_.fetch_add(1, std::memory_order_relaxed);
        return;  // the disk is full or gone: drop these lines, keep going
      }
      data.remove_prefix(static_cast<size_t>(n));
      size_ += static_cast<uint64_t>(n);
    }
  }

  // path.N-1 -> path.N ... path -> path.1, then a fresh path. The rename onto
  // path.N replaces (drops) the oldest file.
  void rotate() {
    auto now = std::chrono::steady_clock::now();
    if (now < next_rotation_attempt_) {
      return;  // a recent rotation failed; do not retry on every line
    }
    bool ok = true;
    if (max_files_ == 0) {
      ok = ::unlink(path_.c_str()) == 0 || errno == ENOENT;
    } else {
      for (uint32_t i = max_files_ - 1; i >= 1; --i) {
        std::string from = path_ + "." + std::to_string(i);
        std::string to = path_ + "." + std::to_string(i + 1);
        if (::rename(from.c_str(), to.c_str()) != 0 && errno != ENOENT) {
          ok = false;
        }
      }
      std::string first = path_ + ".1";
      ok = ok && ::rename(path_.c_str(), first.c_str()) == 0;
    }
    int fd = ok ? open_file(path_) : -1;
    if (fd < 0) {
      errors_.fetch_add(1, std::memory_order_relaxed);
      next_rotation_attempt_ = now + std::chrono::seconds(1);
      return;
    }
    ::close(fd_);
    fd_ = fd;
    size_ = file_size(fd_);
  }

  int fd_ = -1;
  std::string path_;  // empty for stdout/stderr
  uint64_t size_ = 0;
  const uint64_t max_size_;   // 0 = never rotate
  const uint32_t max_files_;  // old files kept
  std::chrono::steady_clock::time_point next_rotation_attempt_{};
  std::atomic<uint64_t> errors_{0};  // read by any thread
};

}  // namespace

// ---------------------------------------------------------------------------
// Formats

void format_json(const AccessRecord& r, std::string& out) {
  out += "{\"time\":\"";
  append_rfc3339(out, r.time);
  out += "\",\"client_ip\":";
  util::json_string_append(out, r.client_ip);
  out += ",\"method\":";
  util::json_string_append(out, r.method);
  out += ",\"host\":";
  util::json_string_append(out, r.host);
  out += ",\"path\":";
  util::json_string_append(out, r.path);
  out += ",\"query\":";
  util::json_string_append(out, r.query);
  out += ",\"protocol\":";
  util::json_string_append(out, r.protocol);
  out += ",\"status\":";
  append_int(out, r.status);
  out += ",\"bytes_in\":";
  append_uint(out, r.bytes_in);
  out += ",\"bytes_out\":";
  append_uint(out, r.bytes_out);
  out += ",\"duration_ms\":";
  append_ms(out, r.duration_ms);
  out += ",\"route\":";
  append_json_or_null(out, r.route);
  out += ",\"upstream\":";
  append_json_or_null(out, r.upstream);
  out += ",\"upstream_server\":";
  append_json_or_null(out, r.upstream_server);
  out += ",\"upstream_duration_ms\":";
  if (r.upstream_duration_ms >= 0) {
    append_ms(out, r.upstream_duration_ms);
  } else {
    out += "null";  // no upstream was used (or NaN)
  }
  out += ",\"request_id\":";
  append_json_or_null(out, r.request_id);
  out += ",\"user_agent\":";
  util::json_string_append(out, r.user_agent);
  out += ",\"tls_version\":";
  append_json_or_null(out, r.tls_version);
  if (!r.tls_client_subject.empty()) {
    out += ",\"tls_client_subject\":";
    util::json_string_append(out, r.tls_client_subject);
  }
  out += "}\n";
}

void format_combined(const AccessRecord& r, std::string& out) {
  append_clf_field(out, r.client_ip);
  out += " - - [";
  append_clf_time(out, r.time);
  out += "] \"";
  if (r.method.empty() && r.path.empty() && r.protocol.empty()) {
    out.push_back('-');  // no request line was read
  } else {
    append_clf_escaped(out, r.method);
    out.push_back(' ');
    append_clf_escaped(out, r.path);
    if (!r.query.empty()) {
      out.push_back('?');
      append_clf_escaped(out, r.query);
    }
    out.push_back(' ');
    append_clf_escaped(out, r.protocol);
  }
  out += "\" ";
  append_int(out, r.status);
  out.push_back(' ');
  append_uint(out, r.bytes_out);
  out += " \"";
  append_clf_field(out, r.referer);
  out += "\" \"";
  append_clf_field(out, r.user_agent);
  out += "\"\n";
}

// ---------------------------------------------------------------------------

struct AccessLog::Impl {
  Impl(const config::AccessLogConfig& config, size_t shards, size_t ring_bytes)
      : format(config.format), sink(config) {
    rings.reserve(shards);
    for (size_t i = 0; i < shards; ++i) {
      rings.push_back(std::make_unique<Ring>(ring_bytes));
    }
    writer = std::thread([this] { run(); });
  }

  ~Impl() {
    {
      std::lock_guard lock(mu);
      stop = true;
    }
    wake_writer();
    writer.join();
  }

  void wake_writer() {
    wake.fetch_add(1, std::memory_order_release);
    wake.notify_one();
  }

  // Waits until the writer has completed request number `ticket` of a kind.
  void request_and_wait(uint64_t Impl::*requested, uint64_t Impl::*done) {
    std::unique_lock lock(mu);
    uint64_t ticket = ++(this->*requested);
    lock.unlock();
    wake_writer();
    lock.lock();
    cv.wait(lock, [&] { return this->*done >= ticket; });
  }

  // Moves every ring's lines to the sink. True when anything was written.
  bool drain(std::string& batch) {
    bool any = false;
    for (auto& ring : rings) {
      batch.clear();
      if (ring->pop_into(batch) > 0) {
        sink.write_lines(batch);
        any = true;
      }
    }
    return any;
  }

  bool rings_empty() const {
    for (const auto& ring : rings) {
      if (!ring->empty()) {
        return false;
      }
    }
    return true;
  }

  void run() {
    std::string batch;
    uint64_t reopened = 0;
    for (;;) {
      uint32_t seen = wake.load(std::memory_order_acquire);
      uint64_t flush_ticket = 0;
      uint64_t reopen_ticket = 0;
      bool stopping = false;
      {
        std::lock_guard lock(mu);
        flush_ticket = flush_requested;
        reopen_ticket = reopen_requested;
        stopping = stop;
      }
      if (reopen_ticket != reopened) {
        sink.reopen();
        reopened = reopen_ticket;
      }
      // Everything published before the tickets were read is drained here.
      bool wrote = drain(batch);
      if (stopping) {
        while (drain(batch)) {
        }
      }
      {
        std::lock_guard lock(mu);
        flush_done = flush_ticket;
        reopen_done = reopen_ticket;
      }
      cv.notify_all();
      if (stopping) {
        return;
      }
      if (!wrote) {
        sleeping.store(true, std::memory_order_seq_cst);
        if (rings_empty()) {
          // Returns at once if anyone bumped `wake` since `seen` was read.
          wake.wait(seen, std::memory_order_acquire);
        }
        sleeping.store(false, std::memory_order_relaxed);
      }
    }
  }

  const config::AccessLogFormat format;
  std::vector<std::unique_ptr<Ring>> rings;  // one per shard
  Sink sink;                                 // writer thread only

  // Requests to the writer; guarded by mu. A waiter sleeps on cv.
  std::mutex mu;
  std::condition_variable cv;
  uint64_t flush_requested = 0;
  uint64_t flush_done = 0;
  uint64_t reopen_requested = 0;
  uint64_t reopen_done = 0;
  bool stop = false;

  // Lock-free wake-up: producers bump `wake` and futex-notify it, but only
  // when the writer has said it is going to sleep, so a busy writer costs the
  // workers no system call.
  std::atomic<uint32_t> wake{0};
  std::atomic<bool> sleeping{false};

  std::thread writer;  // last: starts after everything above exists
};

AccessLog::AccessLog(const config::AccessLogConfig& config, size_t shards,
                     size_t ring_bytes_per_shard) {
  if (config.path != "off") {
    impl_ = std::make_unique<Impl>(config, shards == 0 ? 1 : shards, ring_bytes_per_shard);
  }
}

AccessLog::~AccessLog() = default;

bool AccessLog::enabled() const {
  return impl_ != nullptr;
}

void AccessLog::write(size_t shard, const AccessRecord& record) {
  if (!impl_ || shard >= impl_->rings.size()) {
    return;
  }
  Ring& ring = *impl_->rings[shard];
  ring.scratch.clear();
  if (impl_->format == config::AccessLogFormat::json) {
    format_json(record, ring.scratch);
  } else {
    format_combined(record, ring.scratch);
  }
  if (ring.push(ring.scratch) && impl_->sleeping.load(std::memory_order_seq_cst)) {
    impl_->wake_writer();
  }
}

void AccessLog::reopen() {
  if (impl_) {
    impl_->request_and_wait(&Impl::reopen_requested, &Impl::reopen_done);
  }
}

void AccessLog::flush() {
  if (impl_) {
    impl_->request_and_wait(&Impl::flush_requested, &Impl::flush_done);
  }
}

uint64_t AccessLog::dropped() const {
  uint64_t n = 0;
  if (impl_) {
    for (const auto& ring : impl_->rings) {
      n += ring->dropped();
    }
  }
  return n;
}

uint64_t AccessLog::write_errors() const {
  return impl_ ? impl_->sink.errors() : 0;
}

}  // namespace ward::observe
