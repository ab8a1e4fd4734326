#pragma once

// The `security_headers` filter (CONFIG.md "Filters"): browser hardening
// fields on every response going downstream, upstream answers and ward's own
// replies alike.

#include <memory>

#include "filters/filter.h"

namespace ward::filters {

std::unique_ptr<Filter> make_security_headers_filter(BuildContext& ctx);

}  // namespace ward::filters
