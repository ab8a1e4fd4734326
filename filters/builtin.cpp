#include "filters/compress.h"
#include "filters/registry.h"

namespace ward::filters {

// CONFIG.md's filter table, one line a filter. Explicit on purpose: no
// static self-registration (ARCHITECTURE.md).
void register_builtin_filters(FilterRegistry& registry) {
  registry.add("compress", make_compress_filter);
}

}  // namespace ward::filters
