#pragma once

// The `api_key` filter (CONFIG.md "Filters"): a request must carry one of
// the configured keys in a header, compared in constant time; the key is
// removed before the request goes upstream unless `forward: true`.
//
// Metrics: ward_api_key_requests_total{filter="<ctx.label>",
// result="allowed|denied"}.

#include <memory>

#include "filters/filter.h"

namespace ward::filters {

std::unique_ptr<Filter> make_api_key_filter(BuildContext& ctx);

}  // namespace ward::filters
