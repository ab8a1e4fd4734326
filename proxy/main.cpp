// ward: command line. `ward [run] [-c FILE]`, `ward check -c FILE`, `ward version`.

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <malloc.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <thread>

#include "filters/registry.h"
#include "proxy/config/loader.h"
#include "proxy/config/reader.h"
#include "proxy/server/server.h"
#include "proxy/server/snapshot.h"
#include "proxy/server/tls_listeners.h"

namespace {

constexpr const char* kDefaultConfig = "conf/ward.yaml";

void print_usage(FILE* out) {
  std::fprintf(out,
               "usage: ward [run] [-c FILE]   run in the foreground (default FILE: %s)\n"
               "       ward check -c FILE     validate FILE and exit (0 ok, 1 errors)\n"
               "       ward version           print the version\n"
               "       ward --help            this text\n"
               "signals: SIGTERM/SIGINT drain and exit, SIGHUP reload, SIGUSR1 reopen log files\n",
               kDefaultConfig);
}

const ward::filters::FilterRegistry& filter_registry() {
  static const ward::filters::FilterRegistry registry = [] {
    ward::filters::FilterRegistry r;
    ward::filters::register_builtin_filters(r);
    return r;
  }();
  return registry;
}

ward::config::LoadOptions load_options() {
  ward::config::LoadOptions options;
  // Features this build has; the loader rejects the keys of the others with
  // "... is not supported yet" rather than ignoring them.
  options.features.tls = true;
  options.features.upstream_tls = true;
  options.features.proxy_protocol = true;
  options.features.health_checks = true;
  options.features.passive = true;
  options.features.dns = true;
  options.features.filters = filter_registry().names();
  // Every filter's options are checked at load (and by `ward check`) by
  // building a throwaway instance, so their errors come with file:line:col.
  options.features.check_filter = [](const ward::config::FilterSpec& spec,
                                     ward::config::Reader& reader) {
    ward::observe::Registry scratch_metrics(1);
    ward::filters::RuntimeState scratch_runtime;
    filter_registry().build({spec}, "check", reader, scratch_metrics, scratch_runtime);
  };
  return options;
}

// The file, checked as `ward check` checks it; TLS warnings go to `warn`.
ward::config::LoadResult load_checked(
    const std::string& path, const std::function<void(const ward::config::ConfigError&)>& warn) {
  auto result = ward::config::load_file(path, load_options());
  if (result.ok()) {
    // Certificates and keys are read and matched here too, so `ward check`
    // finds a broken chain or a key that is not the certificate's.
    auto tls = ward::server::TlsListeners::check(*result.config);
    for (const auto& w : tls.warnings) {
      warn(w);
    }
    result.errors = std::move(tls.errors);
    // And every upstream's tls_ca (a file that is not a CA certificate).
    auto upstream_tls = ward::server::Snapshot::check_upstream_tls(*result.config);
    result.errors.insert(result.errors.end(), upstream_tls.begin(), upstream_tls.end());
    if (!result.ok()) {
      result.config = nullptr;
    }
  }
  return result;
}

ward::config::LoadResult load(const std::string& path) {
  auto result = load_checked(path, [](const ward::config::ConfigError& w) {
    std::fprintf(stderr, "warning: %s\n", w.to_string().c_str());
  });
  for (const auto& e : result.errors) {
    std::fprintf(stderr, "%s\n", e.to_string().c_str());
  }
  return result;
}

std::shared_ptr<spdlog::logger> make_logger(const ward::config::LoggingConfig& cfg) {
  spdlog::sink_ptr sink;
  if (cfg.error_log == "stdout") {
    sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
  } else if (cfg.error_log == "stderr") {
    sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  } else {
    sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(cfg.error_log);
  }
  auto log = std::make_shared<spdlog::logger>("ward", sink);
  log->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l [%n] %v", spdlog::pattern_time_type::utc);
  log->set_level(spdlog::level::from_str(cfg.level));
  log->flush_on(spdlog::level::info);
  return log;
}

}  // namespace

// glibc returns the top of a heap to the kernel (madvise) whenever more
// than M_TRIM_THRESHOLD is free there, and takes it back (page faults) on the
// next growth. A proxy frees and reallocates its 16 KiB buffers (an idle
// connection holds none; OpenSSL's record buffers are released when empty)
// on every request, and with the default 128 KiB threshold a worker's arena
// shrank and grew over and over: sysmalloc and madvise were 8% of ward's CPU
// in the TLS keep-alive benchmark. A few MiB kept per arena stops that; they
// are reused, never lost, and bounded (nginx and HAProxy keep their pools).
static void keep_freed_memory() {
#ifdef __GLIBC__
  mallopt(M_TRIM_THRESHOLD, 4 << 20);
  mallopt(M_TOP_PAD, 1 << 20);
#endif
}

int main(int argc, char** argv) {
  std::string command = "run";
  std::string path = kDefaultConfig;
  int i = 1;
  if (argc > 1 && argv[1][0] != '-') {
    command = argv[1];
    i = 2;
  }
  for (; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      print_usage(stdout);
      return 0;
    }
    if ((arg == "-c" || arg == "--config") && i + 1 < argc) {
      path = argv[++i];
    } else if (arg == "-v" || arg == "--version") {
      command = "version";
    } else {
      std::fprintf(stderr, "ward: unknown argument '%s'\n", argv[i]);
      print_usage(stderr);
      return 2;
    }
  }
  if (command == "version") {
    std::printf("ward %s\n", WARD_VERSION);
    return 0;
  }
  if (command == "help") {
    print_usage(stdout);
    return 0;
  }
  if (command == "check") {
    auto result = load(path);
    if (!result.ok()) {
      return 1;
    }
    std::printf("configuration ok\n");
    return 0;
  }
  if (command != "run") {
    std::fprintf(stderr, "ward: unknown command '%s'\n", command.c_str());
    print_usage(stderr);
    return 2;
  }
  auto result = load(path);
  if (!result.ok()) {
    std::fprintf(stderr, "ward: %zu error(s) in %s; not starting\n", result.errors.size(),
                 path.c_str());
    return 1;
  }
  std::shared_ptr<spdlog::logger> log;
  try {
    log = make_logger(result.config->logging);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ward: error_log %s: %s\n", result.config->logging.error_log.c_str(),
                 e.what());
    return 1;
  }
  keep_freed_memory();
  ward::server::Server server(result.config, log);
  // SIGHUP reads the same file again; its errors go to the error log.
  server.set_config_source([path, log] {
    return load_checked(
        path, [&log](const ward::config::ConfigError& w) { log->warn("{}", w.to_string()); });
  });
  return server.run();
}
