// ward-bench-handshake: the load generator of tls-handshake-*: every request
// on a new TLS connection with a full handshake.
//
// wrk cannot do this: on reconnect it calls SSL_clear(), which keeps the TLS
// session, so its next handshake is a resumption (no certificate signature:
// RSA and ECDSA would cost the same). Here each connection gets a new SSL
// object from a context whose session cache is off, so the server signs with
// its certificate key every time, as for a browser's first visit.
//
//   ward-bench-handshake --port P [--host 127.0.0.1] [--path /] [--connections 64]
//                        [--threads 1] [--duration 8] [--timeout 5]
//
// Closed loop: --connections slots, each connect -> handshake -> GET (with
// Connection: close) -> read the whole answer -> close, then again, until
// --duration seconds have passed. An epoll loop per --threads, the
// connections shared out among them. Prints the same line as
// bench/wrk/report.lua:
//   BENCH-RESULT requests=N duration_us=N bytes=N connect=N read=N write=N
//                status=N timeout=N p50_us=N p99_us=N mean_us=X max_us=N
// (read counts handshake and read failures; status counts non-2xx answers),
// plus "tls version=... reused=N" so a resumed handshake would show.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  std::string path = "/";
  int connections = 64;
  int threads = 1;
  double duration_s = 8;
  double timeout_s = 5;
};

struct Counters {
  uint64_t requests = 0;
  uint64_t bytes = 0;
  uint64_t connect = 0;
  uint64_t read = 0;
  uint64_t write = 0;
  uint64_t status = 0;
  uint64_t timeout = 0;
  uint64_t reused = 0;
  std::vector<uint32_t> latency_us;
  std::string version;

  void merge(const Counters& o) {
    requests += o.requests;
    bytes += o.bytes;
    connect += o.connect;
    read += o.read;
    write += o.write;
    status += o.status;
    timeout += o.timeout;
    reused += o.reused;
    latency_us.insert(latency_us.end(), o.latency_us.begin(), o.latency_us.end());
    if (version.empty()) {
      version = o.version;
    }
  }
};

enum class State { connecting, handshaking, writing, reading };

struct Slot {
  int fd = -1;
  SSL* ssl = nullptr;
  State state = State::connecting;
  Clock::time_point started;
  std::string in;
  std::size_t sent = 0;
};

std::size_t response_end(const std::string& in, int& status) {
  std::size_t head = in.find("\r\n\r\n");
  if (head == std::string::npos) {
    return std::string::npos;
  }
  status = 0;
  if (in.size() > 12) {
    std::from_chars(in.data() + 9, in.data() + 12, status);
  }
  std::size_t length = 0;
  std::size_t pos = in.find("\r\n") + 2;
  while (pos < head) {
    std::size_t eol = in.find("\r\n", pos);
    std::string_view line(in.data() + pos, eol - pos);
    if (line.size() > 15 && strncasecmp(line.data(), "content-length:", 15) == 0) {
      std::string_view v = line.substr(15);
      while (!v.empty() && v.front() == ' ') {
        v.remove_prefix(1);
      }
      std::from_chars(v.data(), v.data() + v.size(), length);
    }
    pos = eol + 2;
  }
  return head + 4 + length;
}

class Client {
 public:
  Client(const Options& o, SSL_CTX* ctx, int connections) : o_(o), ctx_(ctx) {
    addr_.sin_family = AF_INET;
    addr_.sin_port = htons(static_cast<uint16_t>(o.port));
    inet_pton(AF_INET, o.host.c_str(), &addr_.sin_addr);
    request_ = "GET " + o.path + " HTTP/1.1\r\nHost: " + o.host +
               "\r\nUser-Agent: ward-bench-handshake\r\nConnection: close\r\n\r\n";
    slots_.resize(static_cast<std::size_t>(connections));
  }

  // Runs until the deadline; returns what it counted.
  Counters& run() {
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    auto start = Clock::now();
    auto end = start + std::chrono::microseconds(static_cast<int64_t>(o_.duration_s * 1e6));
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      open(i);
    }
    std::vector<epoll_event> events(slots_.size());
    while (Clock::now() < end) {
      int n = epoll_wait(ep_, events.data(), static_cast<int>(events.size()), 20);
      for (int k = 0; k < n; ++k) {
        step(events[k].data.u64);
      }
      expire();
    }
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      drop(i);
    }
    close(ep_);
    return c_;
  }

 private:
  void open(std::size_t i) {
    Slot& s = slots_[i];
    s = Slot{};
    s.started = Clock::now();
    s.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(s.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(s.fd, reinterpret_cast<sockaddr*>(&addr_), sizeof addr_) < 0 &&
        errno != EINPROGRESS) {
      ++c_.connect;
      close(s.fd);
      s.fd = -1;
      return;  // expire() retries the slot
    }
    epoll_event ev{};
    ev.events = EPOLLOUT;
    ev.data.u64 = i;
    epoll_ctl(ep_, EPOLL_CTL_ADD, s.fd, &ev);
  }

  void want(std::size_t i, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = i;
    epoll_ctl(ep_, EPOLL_CTL_MOD, slots_[i].fd, &ev);
  }

  // Waits for what OpenSSL asked for; false on a real error.
  bool retry(std::size_t i, int r) {
    switch (SSL_get_error(slots_[i].ssl, r)) {
      case SSL_ERROR_WANT_READ:
        want(i, EPOLLIN);
        return true;
      case SSL_ERROR_WANT_WRITE:
        want(i, EPOLLOUT);
        return true;
      default:
        return false;
    }
  }

  void step(std::size_t i) {
    Slot& s = slots_[i];
    if (s.fd < 0) {
      return;
    }
    if (s.state == State::connecting) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        ++c_.connect;
        return restart(i);
      }
      s.ssl = SSL_new(ctx_);
      SSL_set_fd(s.ssl, s.fd);
      SSL_set_connect_state(s.ssl);
      s.state = State::handshaking;
    }
    if (s.state == State::handshaking) {
      int r = SSL_do_handshake(s.ssl);
      if (r != 1) {
        if (!retry(i, r)) {
          ++c_.read;
          restart(i);
        }
        return;
      }
      if (SSL_session_reused(s.ssl)) {
        ++c_.reused;
      }
      if (c_.version.empty()) {
        c_.version = SSL_get_version(s.ssl);
      }
      s.state = State::writing;
    }
    if (s.state == State::writing) {
      int r =
          SSL_write(s.ssl, request_.data() + s.sent, static_cast<int>(request_.size() - s.sent));
      if (r <= 0) {
        if (!retry(i, r)) {
          ++c_.write;
          restart(i);
        }
        return;
      }
      s.sent += static_cast<std::size_t>(r);
      if (s.sent < request_.size()) {
        return;
      }
      s.state = State::reading;
    }
    char buf[32 * 1024];
    for (;;) {
      int r = SSL_read(s.ssl, buf, sizeof buf);
      if (r <= 0) {
        if (!retry(i, r)) {
          ++c_.read;  // closed or failed before the whole answer
          restart(i);
        }
        return;
      }
      s.in.append(buf, static_cast<std::size_t>(r));
      int status = 0;
      std::size_t end = response_end(s.in, status);
      if (end != std::string::npos && s.in.size() >= end) {
        auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - s.started);
        ++c_.requests;
        c_.bytes += s.in.size();
        c_.latency_us.push_back(static_cast<uint32_t>(us.count()));
        if (status < 200 || status > 399) {
          ++c_.status;
        }
        return restart(i);
      }
    }
  }

  void drop(std::size_t i) {
    Slot& s = slots_[i];
    if (s.ssl != nullptr) {
      SSL_shutdown(s.ssl);  // close_notify, as a polite client sends; not awaited
      SSL_free(s.ssl);
      s.ssl = nullptr;
    }
    if (s.fd >= 0) {
      close(s.fd);  // also leaves the epoll set
      s.fd = -1;
    }
  }

  void restart(std::size_t i) {
    drop(i);
    open(i);
  }

  void expire() {
    auto now = Clock::now();
    auto limit = std::chrono::microseconds(static_cast<int64_t>(o_.timeout_s * 1e6));
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].fd < 0) {
        open(i);
      } else if (now - slots_[i].started > limit) {
        ++c_.timeout;
        restart(i);
      }
    }
  }

  const Options& o_;
  SSL_CTX* ctx_;
  sockaddr_in addr_{};
  std::string request_;
  std::vector<Slot> slots_;
  Counters c_;
  int ep_ = -1;
};

void report(Counters& c, uint64_t elapsed_us) {
  auto& l = c.latency_us;
  std::sort(l.begin(), l.end());
  auto pct = [&](double p) -> uint64_t {
    if (l.empty()) {
      return 0;
    }
    std::size_t k = std::min(l.size() - 1, static_cast<std::size_t>(p / 100.0 * l.size()));
    return l[k];
  };
  double mean = 0;
  for (uint32_t v : l) {
    mean += v;
  }
  mean = l.empty() ? 0 : mean / static_cast<double>(l.size());
  std::printf("tls version=%s reused=%llu\n", c.version.empty() ? "none" : c.version.c_str(),
              static_cast<unsigned long long>(c.reused));
  std::printf(
      "BENCH-RESULT requests=%llu duration_us=%llu bytes=%llu connect=%llu read=%llu "
      "write=%llu status=%llu timeout=%llu p50_us=%llu p99_us=%llu mean_us=%.1f max_us=%llu\n",
      static_cast<unsigned long long>(c.requests), static_cast<unsigned long long>(elapsed_us),
      static_cast<unsigned long long>(c.bytes), static_cast<unsigned long long>(c.connect),
      static_cast<unsigned long long>(c.read), static_cast<unsigned long long>(c.write),
      static_cast<unsigned long long>(c.status), static_cast<unsigned long long>(c.timeout),
      static_cast<unsigned long long>(pct(50)), static_cast<unsigned long long>(pct(99)), mean,
      static_cast<unsigned long long>(l.empty() ? 0 : l.back()));
}

int usage() {
  std::fprintf(stderr,
               "usage: ward-bench-handshake --port P [--host ADDR] [--path /] "
               "[--connections N] [--threads N] [--duration S] [--timeout S]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string_view k = argv[i];
    const char* v = argv[i + 1];
    if (k == "--port") {
      o.port = std::atoi(v);
    } else if (k == "--host") {
      o.host = v;
    } else if (k == "--path") {
      o.path = v;
    } else if (k == "--connections") {
      o.connections = std::atoi(v);
    } else if (k == "--duration") {
      o.duration_s = std::atof(v);
    } else if (k == "--threads") {
      o.threads = std::atoi(v);
    } else if (k == "--timeout") {
      o.timeout_s = std::atof(v);
    } else {
      return usage();
    }
  }
  if (argc % 2 == 0 || o.port <= 0 || o.port > 65535 || o.connections < 1 ||
      o.connections > 10000 || o.duration_s <= 0 || o.threads < 1 || o.threads > o.connections) {
    return usage();
  }
  std::signal(SIGPIPE, SIG_IGN);
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);  // the bench's throwaway certificate
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  static const unsigned char kAlpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  SSL_CTX_set_alpn_protos(ctx, kAlpn, sizeof kAlpn);
  // One client (epoll loop) per thread, the connections shared out.
  std::vector<std::unique_ptr<Client>> clients;
  for (int t = 0; t < o.threads; ++t) {
    int share = o.connections / o.threads + (t < o.connections % o.threads ? 1 : 0);
    clients.push_back(std::make_unique<Client>(o, ctx, share));
  }
  Counters total;
  std::mutex mu;  // guards total
  auto start = Clock::now();
  std::vector<std::thread> threads;
  for (auto& client : clients) {
    threads.emplace_back([&, c = client.get()] {
      Counters& mine = c->run();
      std::lock_guard lock(mu);
      total.merge(mine);
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  auto elapsed = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start);
  report(total, static_cast<uint64_t>(elapsed.count()));
  SSL_CTX_free(ctx);
  return total.requests > 0 ? 0 : 1;
}
