#pragma once

#include <cstdint>
#include <string>

#include "proxy/config/config.h"

namespace ward::config {

// The effective config as one JSON object for the admin `/config` endpoint:
// every field with its resolved value (defaults filled in, durations as
// strings like "10s", sizes in bytes), "generation": N, and secrets redacted
// as "<redacted>": api_key keys, any filter option whose name contains
// "key", "secret", "token" or "password", and TLS private key paths are kept
// (a path is not a secret) but never key contents.
std::string to_json(const Config& config, uint64_t generation);

}  // namespace ward::config
