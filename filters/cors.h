#pragma once

// The `cors` filter (CONFIG.md "Filters"): Cross-Origin Resource Sharing as
// the Fetch standard defines it (https://fetch.spec.whatwg.org/#http-cors-protocol).
// Ward answers preflights itself and is the only source of Access-Control-*
// response fields on the route: an upstream's own are dropped, so an upstream
// that reflects any Origin cannot widen the allow list.

#include <memory>

#include "filters/filter.h"

namespace ward::filters {

std::unique_ptr<Filter> make_cors_filter(BuildContext& ctx);

}  // namespace ward::filters
