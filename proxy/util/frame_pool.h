#pragma once

// Per-thread free lists for Asio's coroutine frames and posted handlers.
//
// Why: every request runs a handful of nested coroutines (handle -> proxy ->
// forward_once -> read_response_head, and an HTTP/2 stream's run), each a
// heap frame of 100-600 bytes, and every post() a handler block. Asio keeps
// a few freed blocks per thread for reuse (BOOST_ASIO_RECYCLING_ALLOCATOR_
// CACHE_SIZE slots, first fit, and a miss frees one of them), which covers
// one connection's nesting but not 64 connections' or streams' interleaved
// requests: most frames went back to malloc, and past glibc's 7-entry
// per-size thread cache into its slower bins (h2-tls: 7.4 of 13.7 mallocs
// per request, ~7% of the worker's CPU in malloc and free).
//
// Here each worker thread keeps freed blocks by size class (32-byte steps
// up to kMaxBlock) on intrusive lists: an allocation pops, a release
// pushes, no search. Bounded: at most kMaxKeptBytes per thread; beyond it,
// and above kMaxBlock, blocks go to malloc and free as before. A thread's
// lists are freed when it ends. Blocks freed on another thread than the one
// that allocated them join that thread's lists (any block of a class fits).
//
// How it is wired: Asio takes these blocks through
// thread_info_base::allocate / deallocate for a purpose tag. This header
// specialises both for the awaitable-frame and executor-function tags, so
// it must be seen before any of Asio's own code: CMakeLists.txt makes every
// file of the build include it first (-include). A file compiled without it
// would allocate those blocks Asio's way and could hand them to this pool's
// release, or the reverse.
//
// Under AddressSanitizer a kept block is poisoned, so a use after free of a
// frame is still reported.

#include <boost/asio/detail/thread_info_base.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

#if defined(__SANITIZE_ADDRESS__)
#define WARD_FRAME_POOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WARD_FRAME_POOL_ASAN 1
#endif
#endif
#ifdef WARD_FRAME_POOL_ASAN
#include <sanitizer/asan_interface.h>
#endif

#define WARD_FRAME_POOL 1  // tests check that the build includes this header

namespace ward::util::frame_pool {

inline constexpr size_t kStep = 32;
inline constexpr size_t kClasses = 48;
inline constexpr size_t kMaxBlock = kStep * kClasses;  // 1536 bytes
inline constexpr size_t kMaxKeptBytes = 256 * 1024;
inline constexpr size_t kAlign = 16;  // what malloc gives

struct Block {
  Block* next;
};

// A thread's lists: constant-initialised, so reaching it costs no guard.
struct Lists {
  Block* head[kClasses];
  uint32_t count[kClasses];
  size_t kept_bytes;
  bool armed;  // the thread-exit release is registered
  bool ended;  // the thread is ending: keep nothing more
};

extern constinit thread_local Lists lists;

// Registers the thread-exit release that frees the thread's lists; false
// when the thread is already ending.
bool arm();
// A block from malloc, for a class whose list is empty.
void* allocate_fresh(size_t size_class);
// What deallocate does not do inline: blocks above kMaxBlock, lists at
// their bound, the first release on a thread (arm), an ending thread.
void deallocate_slow(void* p, size_t size);
// Blocks kept by this thread, all classes (for tests and metrics).
size_t kept_blocks();
size_t kept_bytes();
// Blocks the lists of ended threads held and freed, all threads so far.
size_t freed_by_ended_threads();

inline size_t class_of(size_t size) {
  return size == 0 ? 0 : (size - 1) / kStep;
}

inline void* allocate(size_t size, size_t align) {
  if (size > kMaxBlock || align > kAlign) [[unlikely]] {
    void* p =
        std::aligned_alloc(align < kAlign ? kAlign : align, (size + align - 1) / align * align);
    if (p == nullptr) {
      throw std::bad_alloc();
    }
    return p;
  }
  const size_t c = class_of(size);
  Lists& l = lists;
  Block* b = l.head[c];
  if (b != nullptr) [[likely]] {
#ifdef WARD_FRAME_POOL_ASAN
    ASAN_UNPOISON_MEMORY_REGION(b, (c + 1) * kStep);
#endif
    l.head[c] = b->next;
    --l.count[c];
    l.kept_bytes -= (c + 1) * kStep;
    return b;
  }
  return allocate_fresh(c);
}

// `p` is not null. The common case (a block of a class this thread keeps,
// under the bound) is a push and needs no stack frame; the rest is out of
// line.
inline void deallocate(void* p, size_t size) {
  const size_t c = class_of(size);
  const size_t bytes = (c + 1) * kStep;
  Lists& l = lists;
  if (size > kMaxBlock || !l.armed || l.kept_bytes + bytes > kMaxKeptBytes) [[unlikely]] {
    deallocate_slow(p, size);
    return;
  }
  auto* b = static_cast<Block*>(p);
  b->next = l.head[c];
  l.head[c] = b;
  ++l.count[c];
  l.kept_bytes += bytes;
#ifdef WARD_FRAME_POOL_ASAN
  ASAN_POISON_MEMORY_REGION(b, bytes);
#endif
}

}  // namespace ward::util::frame_pool

namespace boost::asio::detail {

template <>
inline void* thread_info_base::allocate<thread_info_base::awaitable_frame_tag>(
    thread_info_base::awaitable_frame_tag, thread_info_base*, std::size_t size, std::size_t align) {
  return ::ward::util::frame_pool::allocate(size, align);
}

template <>
inline void thread_info_base::deallocate<thread_info_base::awaitable_frame_tag>(
    thread_info_base::awaitable_frame_tag, thread_info_base*, void* pointer, std::size_t size) {
  ::ward::util::frame_pool::deallocate(pointer, size);
}

template <>
inline void* thread_info_base::allocate<thread_info_base::executor_function_tag>(
    thread_info_base::executor_function_tag, thread_info_base*, std::size_t size,
    std::size_t align) {
  return ::ward::util::frame_pool::allocate(size, align);
}

template <>
inline void thread_info_base::deallocate<thread_info_base::executor_function_tag>(
    thread_info_base::executor_function_tag, thread_info_base*, void* pointer, std::size_t size) {
  ::ward::util::frame_pool::deallocate(pointer, size);
}

}  // namespace boost::asio::detail
