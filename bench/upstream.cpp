// ward-bench-upstream: the upstream the benchmark puts behind ward, nginx and
// HAProxy. It must never be the bottleneck, so it does as little as a server
// can: one epoll loop per thread, an SO_REUSEPORT listener per port in every
// thread (the kernel spreads connections), keep-alive, fixed responses
// prepared once, and every complete request in a read answered with one write
// (pipelined requests included). No Date header, no logging, no allocation
// per request beyond growing a connection's buffers.
//
//   ward-bench-upstream [--threads N] [--host ADDR] PORT [PORT...]
//
//   GET /       200, a 12-byte body (the "small" response)
//   GET /16k    200, a 16384-byte body
//   GET /info   200, the request head as received plus the port it came in on
//               (the harness checks X-Forwarded-For and round robin with it)
//   anything else: 404 with a short body
//
// Request bodies (Content-Length) are read and discarded; a chunked request is
// answered 501 and the connection closed (the benchmark sends none).
// "Connection: close" or HTTP/1.0 without keep-alive closes after the answer.
// Prints "ready" on stdout once every listener is bound. SIGINT/SIGTERM exit 0.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

constexpr std::size_t kReadChunk = 64 * 1024;  // bytes per read()
constexpr std::size_t kMaxHead = 64 * 1024;    // a longer request head: 431 and close
constexpr int kMaxEvents = 256;                // epoll_wait batch
constexpr std::size_t kMaxPending = 1 << 20;   // queued response bytes before reads pause
constexpr std::size_t kLargeBody = 16 * 1024;  // the /16k response body, bytes
constexpr std::string_view kSmallBody = "hello world\n";  // 12 bytes

std::atomic<bool> g_stop{false};
int g_wake_fd = -1;  // eventfd every loop watches, written on SIGINT/SIGTERM

std::string response(std::string_view status, std::string_view body) {
  std::string r = "HTTP/1.1 ";
  r += status;
  r += "\r\nServer: ward-bench-upstream\r\nContent-Type: text/plain\r\nContent-Length: ";
  r += std::to_string(body.size());
  r += "\r\n\r\n";
  r += body;
  return r;
}

struct Responses {
  std::string small = response("200 OK", kSmallBody);
  std::string large = response("200 OK", std::string(kLargeBody, 'x'));
  std::string not_found = response("404 Not Found", "not found\n");
  std::string too_large = response("431 Request Header Fields Too Large", "head too large\n");
  std::string chunked = response("501 Not Implemented", "chunked requests not supported\n");
};

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

bool icontains(std::string_view hay, std::string_view needle) {
  if (needle.size() > hay.size()) {
    return false;
  }
  for (std::size_t i = 0; i + needle.size() <= hay.size(); ++i) {
    if (iequals(hay.substr(i, needle.size()), needle)) {
      return true;
    }
  }
  return false;
}

struct Conn {
  int fd = -1;
  int port = 0;
  std::string in;        // unparsed request bytes
  std::string out;       // response bytes not yet written
  std::size_t skip = 0;  // request body bytes still to discard
  bool close_after = false;
  bool want_write = false;
  bool want_read = true;
};

// What one request head asks for.
struct Head {
  std::string_view target;
  std::size_t content_length = 0;
  bool chunked = false;
  bool close = false;
};

Head parse_head(std::string_view head) {
  Head h;
  std::size_t eol = head.find("\r\n");
  std::string_view line = head.substr(0, eol);
  std::size_t sp1 = line.find(' ');
  std::size_t sp2 = line.rfind(' ');
  if (sp1 != std::string_view::npos && sp2 > sp1) {
    h.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    std::string_view version = line.substr(sp2 + 1);
    h.close = version == "HTTP/1.0";  // 1.0 closes unless it asks for keep-alive
  }
  std::size_t pos = eol == std::string_view::npos ? head.size() : eol + 2;
  while (pos < head.size()) {
    std::size_t end = head.find("\r\n", pos);
    if (end == std::string_view::npos) {
      end = head.size();
    }
    std::string_view field = head.substr(pos, end - pos);
    pos = end + 2;
    std::size_t colon = field.find(':');
    if (colon == std::string_view::npos) {
      continue;
    }
    std::string_view name = field.substr(0, colon);
    std::string_view value = field.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
      value.remove_prefix(1);
    }
    if (iequals(name, "content-length")) {
      std::from_chars(value.data(), value.data() + value.size(), h.content_length);
    } else if (iequals(name, "transfer-encoding")) {
      h.chunked = icontains(value, "chunked");
    } else if (iequals(name, "connection")) {
      if (icontains(value, "close")) {
        h.close = true;
      } else if (icontains(value, "keep-alive")) {
        h.close = false;
      }
    }
  }
  return h;
}

class Loop {
 public:
  Loop(const std::vector<int>& listeners, const std::vector<int>& ports)
      : listeners_(listeners), ports_(ports) {}

  int run() {
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    if (ep_ < 0) {
      std::perror("epoll_create1");
      return 1;
    }
    for (int fd : listeners_) {
      add(fd, EPOLLIN, fd);
    }
    add(g_wake_fd, EPOLLIN, g_wake_fd);
    epoll_event events[kMaxEvents];
    std::vector<char> buf(kReadChunk);
    while (!g_stop.load(std::memory_order_relaxed)) {
      int n = epoll_wait(ep_, events, kMaxEvents, -1);
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        std::perror("epoll_wait");
        return 1;
      }
      for (int i = 0; i < n; ++i) {
        int fd = events[i].data.fd;
        if (fd == g_wake_fd) {
          return 0;
        }
        if (auto it = std::find(listeners_.begin(), listeners_.end(), fd); it != listeners_.end()) {
          accept_all(fd, ports_[it - listeners_.begin()]);
          continue;
        }
        auto c = conns_.find(fd);
        if (c == conns_.end()) {
          continue;
        }
        Conn& conn = *c->second;
        bool alive = true;
        if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
          alive = on_readable(conn, buf);
        }
        if (alive && (events[i].events & EPOLLOUT)) {
          alive = flush(conn);
        }
        if (!alive) {
          drop(fd);
        }
      }
    }
    return 0;
  }

 private:
  void add(int fd, uint32_t events, int key) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = key;
    epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
  }

  void accept_all(int listener, int port) {
    for (;;) {
      int fd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        return;  // EAGAIN, or EMFILE: the next readiness retries
      }
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      auto conn = std::make_unique<Conn>();
      conn->fd = fd;
      conn->port = port;
      add(fd, EPOLLIN | EPOLLRDHUP, fd);
      conns_[fd] = std::move(conn);
    }
  }

  // Reads what is there, answers every complete request; false: close.
  bool on_readable(Conn& c, std::vector<char>& buf) {
    for (;;) {
      ssize_t n = read(c.fd, buf.data(), buf.size());
      if (n > 0) {
        std::string_view data(buf.data(), static_cast<std::size_t>(n));
        if (c.skip > 0) {
          std::size_t k = std::min(c.skip, data.size());
          c.skip -= k;
          data.remove_prefix(k);
        }
        c.in.append(data);
        if (static_cast<std::size_t>(n) < buf.size()) {
          break;  // drained the socket: no need for a read that says EAGAIN
        }
        continue;
      }
      if (n == 0) {
        return false;
      }
      if (errno == EINTR) {
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        break;
      }
      return false;
    }
    if (!answer(c)) {
      return false;
    }
    return flush(c);
  }

  // Turns every complete request in c.in into a response appended to c.out.
  bool answer(Conn& c) {
    std::size_t pos = 0;
    while (!c.close_after && c.skip == 0) {
      std::string_view rest(c.in.data() + pos, c.in.size() - pos);
      std::size_t end = rest.find("\r\n\r\n");
      if (end == std::string_view::npos) {
        if (rest.size() > kMaxHead) {
          c.out += responses_.too_large;
          c.close_after = true;
        }
        break;
      }
      std::string_view head = rest.substr(0, end + 2);
      Head h = parse_head(head);
      pos += end + 4;
      if (h.chunked) {
        c.out += responses_.chunked;
        c.close_after = true;
        break;
      }
      if (h.target == "/") {
        c.out += responses_.small;
      } else if (h.target == "/16k") {
        c.out += responses_.large;
      } else if (h.target == "/info") {
        std::string body = "port: " + std::to_string(c.port) + "\r\n";
        body += head;
        c.out += response("200 OK", body);
      } else {
        c.out += responses_.not_found;
      }
      c.close_after = h.close;
      std::size_t available = c.in.size() - pos;
      std::size_t take = std::min(available, h.content_length);
      pos += take;
      c.skip = h.content_length - take;
    }
    c.in.erase(0, pos);
    return true;
  }

  // Writes c.out; watches for writability while some is left, and stops
  // reading while more than kMaxPending is queued (a client that pipelines
  // without reading must not grow the buffer without bound). false: close.
  bool flush(Conn& c) {
    std::size_t done = 0;
    while (done < c.out.size()) {
      ssize_t n = write(c.fd, c.out.data() + done, c.out.size() - done);
      if (n > 0) {
        done += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        break;
      }
      return false;
    }
    c.out.erase(0, done);
    if (c.out.empty() && c.close_after) {
      return false;
    }
    bool want_write = !c.out.empty();
    bool want_read = c.out.size() < kMaxPending;
    if (want_write != c.want_write || want_read != c.want_read) {
      epoll_event ev{};
      ev.events = (want_read ? EPOLLIN | EPOLLRDHUP : 0u) | (want_write ? EPOLLOUT : 0u);
      ev.data.fd = c.fd;
      epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
      c.want_write = want_write;
      c.want_read = want_read;
    }
    return true;
  }

  void drop(int fd) {
    epoll_ctl(ep_, EPOLL_CTL_DEL, fd, nullptr);
    close(fd);
    conns_.erase(fd);
  }

  const std::vector<int>& listeners_;
  const std::vector<int>& ports_;
  Responses responses_;
  int ep_ = -1;
  std::unordered_map<int, std::unique_ptr<Conn>> conns_;
};

int listen_on(const std::string& host, int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    std::perror("socket");
    return -1;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    std::fprintf(stderr, "bad address %s\n", host.c_str());
    close(fd);
    return -1;
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 || listen(fd, 4096) < 0) {
    std::fprintf(stderr, "listen %s:%d: %s\n", host.c_str(), port, std::strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

void on_signal(int) {
  g_stop.store(true);
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(g_wake_fd, &one, sizeof one);
}

int usage() {
  std::fprintf(stderr, "usage: ward-bench-upstream [--threads N] [--host ADDR] PORT [PORT...]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 1;
  std::string host = "127.0.0.1";
  std::vector<int> ports;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--threads" && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else if (arg == "--host" && i + 1 < argc) {
      host = argv[++i];
    } else if (!arg.empty() && arg[0] != '-') {
      ports.push_back(std::atoi(argv[i]));
    } else {
      return usage();
    }
  }
  if (ports.empty() || threads < 1 || threads > 64 ||
      std::any_of(ports.begin(), ports.end(), [](int p) { return p <= 0 || p > 65535; })) {
    return usage();
  }
  signal(SIGPIPE, SIG_IGN);
  // EFD_SEMAPHORE-free eventfd stays readable once written: every loop wakes.
  g_wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  // One listener per port per thread, all bound before "ready".
  std::vector<std::vector<int>> listeners(threads);
  for (auto& set : listeners) {
    for (int port : ports) {
      int fd = listen_on(host, port);
      if (fd < 0) {
        return 1;
      }
      set.push_back(fd);
    }
  }
  std::printf("ready\n");
  std::fflush(stdout);

  std::vector<std::thread> workers;
  std::atomic<int> failed{0};
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      Loop loop(listeners[t], ports);
      if (loop.run() != 0) {
        failed.fetch_add(1);
      }
    });
  }
  for (auto& w : workers) {
    w.join();
  }
  return failed.load() == 0 ? 0 : 1;
}
