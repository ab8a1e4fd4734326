#pragma once

#include <cstdint>

namespace ward::observe::testing {

// Heap allocations made by the calling thread so far. The counting global
// operator new lives in alloc_counter_test.cpp (linked into unit_observe).
uint64_t allocations_on_this_thread();

}  // namespace ward::observe::testing
