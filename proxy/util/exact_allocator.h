#pragma once

#include <cstddef>
#include <new>

namespace ward::util {

// An allocator for an Asio operation that may stay pending for a long time
// (an idle connection's wait): bound to a handler with
// boost::asio::bind_allocator, the operation gets a block of its own size
// from operator new. Without it, Asio takes the block from its per-thread
// recycling cache, which hands out any cached block large enough (often one
// sized for a bigger operation, such as an accept), and 10,000 idle
// connections each hold one. std::allocator would not do: Asio treats it as
// "no allocator" and recycles anyway.
template <typename T>
struct ExactAllocator {
  using value_type = T;

  ExactAllocator() noexcept = default;
  template <typename U>
  ExactAllocator(const ExactAllocator<U>&) noexcept {}

  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T))); }
  void deallocate(T* p, size_t) noexcept { ::operator delete(p); }

  template <typename U>
  bool operator==(const ExactAllocator<U>&) const noexcept {
    return true;
  }
};

}  // namespace ward::util
