#include "proxy/util/heap_trim.h"

#include <malloc.h>

namespace ward::util {

bool release_free_heap() {
  return ::malloc_trim(0) != 0;
}

}  // namespace ward::util
