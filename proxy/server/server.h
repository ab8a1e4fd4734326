#pragma once

#include <spdlog/logger.h>

#include <functional>
#include <memory>

#include "proxy/config/config.h"
#include "proxy/config/loader.h"

namespace ward::server {

// The process: N workers, the admin listener, signals, drain. run() blocks
// until the process should exit and returns its exit code.
class Server {
 public:
  Server(std::shared_ptr<const config::Config> config, std::shared_ptr<spdlog::logger> log);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Where SIGHUP reads the configuration again (with every check `ward
  // check` makes); without one, SIGHUP re-reads certificates only.
  using ConfigSource = std::function<config::LoadResult()>;
  void set_config_source(ConfigSource source);

  int run();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ward::server
