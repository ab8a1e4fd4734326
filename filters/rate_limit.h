#pragma once

// rate_limit: a token bucket per client (CONFIG.md "Filters"), kept as GCRA
// in a BucketTable that survives reloads and may be shared by name.
//
//   - rate_limit:
//       rate: 30/minute     # required: tokens earned per period
//       burst: 10           # bucket size, tokens (default: one second of rate, >= 1)
//       key: client_ip      # client_ip | header:NAME | cookie:NAME
//       status: 429         # 400-599
//       share: api          # filters with the same share name share buckets
//       dry_run: false      # true: count would-be refusals, change nothing
//       store: local        # or redis://[[user]:password@]host[:port][/db]
//       store_timeout: 50ms # waits for Redis at most this, then passes (extension)
//       max_keys: 100000    # keys tracked at most (ward extension)
//
// Every response of the route (when not dry_run) carries RateLimit-Limit,
// RateLimit-Remaining, RateLimit-Reset and RateLimit-Policy; a refusal is
// ctx.reply(status, "rate_limited") plus Retry-After.
//
// With a Redis store the request phase waits (FilterStatus::wait) for one
// script call per request; see kRedisScript in rate_limit.cpp. No answer
// within store_timeout, or a wrong one, lets the request pass.

#include <cstddef>
#include <memory>

#include "filters/filter.h"

namespace ward::filters {

// Keys tracked per bucket table when max_keys is not set. A key costs one
// 16-byte slot and the table stays at most 3/4 full: 21.3 bytes per key at
// the cap, so about 2.1 MB per table (8 KiB more for the shards' locks),
// allocated only as keys arrive.
inline constexpr size_t kDefaultRateLimitMaxKeys = 100'000;

// Builds the filter; reports every option error at its node and returns
// nullptr when there is any.
std::unique_ptr<Filter> make_rate_limit_filter(BuildContext& ctx);

}  // namespace ward::filters
