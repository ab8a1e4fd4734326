#pragma once

// The `request_id` filter (CONFIG.md "Filters"): one id per request, taken
// from the client when well formed or made here, sent upstream, returned
// downstream on every response and written in the access log
// (ctx.request_id).

#include <memory>
#include <string_view>

#include "filters/filter.h"

namespace ward::filters {

std::unique_ptr<Filter> make_request_id_filter(BuildContext& ctx);

// 1 to 128 characters of A-Za-z0-9._:- : enough for UUIDs, ULIDs and
// trace ids, and nothing that could break a log line or a header.
bool is_valid_request_id(std::string_view id);

}  // namespace ward::filters
