#include "filters/registry.h"

namespace ward::filters {

void register_builtin_filters(FilterRegistry& registry) {
  (void)registry;
}

}  // namespace ward::filters
