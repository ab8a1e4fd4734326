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
//
// Redaction details: the option-name match is case-insensitive, applies at
// any depth of a filter's options (so a `headers` filter's
// `request_set: {Authorization: ...}` is covered too, "authorization" being a
// fifth word), and replaces the whole value, list or map included. Note that
// rate_limit's `key: client_ip` is redacted as well by the same rule.
std::string to_json(const Config& config, uint64_t generation);

}  // namespace ward::config
