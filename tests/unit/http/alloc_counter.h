#pragma once

// Counts global operator new calls in this test binary (defined in
// header_list_test.cpp), so tests can assert that a reused object allocates
// nothing in steady state.

#include <cstddef>

namespace ward::http::testing {

size_t allocation_count();

// Allocations made while an instance is alive.
class AllocationScope {
 public:
  AllocationScope() : start_(allocation_count()) {}
  size_t allocations() const { return allocation_count() - start_; }

 private:
  size_t start_;
};

}  // namespace ward::http::testing
