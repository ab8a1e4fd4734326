#pragma once

// The `ip_access` filter (CONFIG.md "Filters"): allow and deny lists of
// CIDRs checked against the client IP, which the codec has already decided
// (trusted_proxies / PROXY protocol), so a client cannot spoof its way in
// with X-Forwarded-For.

#include <memory>

#include "filters/filter.h"

namespace ward::filters {

std::unique_ptr<Filter> make_ip_access_filter(BuildContext& ctx);

}  // namespace ward::filters
