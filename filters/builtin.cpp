#include "filters/api_key.h"
#include "filters/compress.h"
#include "filters/cors.h"
#include "filters/headers.h"
#include "filters/ip_access.h"
#include "filters/rate_limit.h"
#include "filters/registry.h"
#include "filters/request_id.h"
#include "filters/security_headers.h"

namespace ward::filters {

// CONFIG.md's filter table, one line a filter. Explicit on purpose: no
// static self-registration (ARCHITECTURE.md).
void register_builtin_filters(FilterRegistry& registry) {
  registry.add("api_key", make_api_key_filter);
  registry.add("compress", make_compress_filter);
  registry.add("cors", make_cors_filter);
  registry.add("headers", make_headers_filter);
  registry.add("ip_access", make_ip_access_filter);
  registry.add("rate_limit", make_rate_limit_filter);
  registry.add("request_id", make_request_id_filter);
  registry.add("security_headers", make_security_headers_filter);
}

}  // namespace ward::filters
