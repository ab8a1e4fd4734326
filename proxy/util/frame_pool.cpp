#include "proxy/util/frame_pool.h"

#include <atomic>

namespace ward::util::frame_pool {

constinit thread_local Lists lists = {};

namespace {

std::atomic<size_t> freed_at_exit{0};

// Frees the thread's kept blocks when the thread ends; what is released
// after that goes straight to free().
struct Release {
  ~Release() {
    Lists& l = lists;
    l.ended = true;
    l.armed = false;  // a later release calls arm(), which says no
    size_t freed = 0;
    for (size_t c = 0; c < kClasses; ++c) {
      while (Block* b = l.head[c]) {
#ifdef WARD_FRAME_POOL_ASAN
        ASAN_UNPOISON_MEMORY_REGION(b, (c + 1) * kStep);
#endif
        l.head[c] = b->next;
        std::free(b);
        ++freed;
      }
      l.count[c] = 0;
    }
    l.kept_bytes = 0;
    freed_at_exit.fetch_add(freed, std::memory_order_relaxed);
  }
};

}  // namespace

bool arm() {
  Lists& l = lists;
  if (l.ended) {
    return false;
  }
  if (!l.armed) {
    l.armed = true;
    thread_local Release release;  // constructed now: destroyed at thread exit
    (void)release;
  }
  return true;
}

void* allocate_fresh(size_t size_class) {
  void* p = std::malloc((size_class + 1) * kStep);
  if (p == nullptr) {
    throw std::bad_alloc();
  }
  return p;
}

void deallocate_slow(void* p, size_t size) {
  Lists& l = lists;
  const size_t bytes = (class_of(size) + 1) * kStep;
  if (size > kMaxBlock || l.kept_bytes + bytes > kMaxKeptBytes || !arm()) {
    std::free(p);
    return;
  }
  deallocate(p, size);  // armed now: kept
}

size_t kept_blocks() {
  size_t n = 0;
  for (uint32_t c : lists.count) {
    n += c;
  }
  return n;
}

size_t kept_bytes() {
  return lists.kept_bytes;
}

size_t freed_by_ended_threads() {
  return freed_at_exit.load(std::memory_order_relaxed);
}

}  // namespace ward::util::frame_pool
