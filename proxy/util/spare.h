#pragma once

// Per-thread spare memory for what a connection needs only while it works on
// a request: the header lists' arenas, the serialised heads, the 32 KiB read
// buffer, the TLS staging buffer.
//
// Why: an idle keep-alive connection should hold its socket, its TLS state
// and little else (nginx frees a request's pool when the request ends, and
// holds ~1.5 KiB per idle connection besides OpenSSL's ~14 KiB). Freeing
// this memory when a connection goes idle and allocating it again for the
// next request costs a malloc/free pair per buffer per request, and the
// freed blocks stay in the heap between live ones, so RSS does not drop.
// Handing them to the next connection that needs them instead costs a
// push and a pop, and the memory is reused while it is hot: 10,000 idle
// connections share the few dozen buffers the busy ones are using.
//
// Each worker is one thread, so the lists are thread_local and lock-free.
// Bounded: at most kMaxSpares of each kind, none larger than kMaxSpareBytes
// (blocks: kMaxBlocks of each of kBlockSizes sizes); anything beyond is
// freed as before.

#include <cstddef>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

namespace ward::util {

inline constexpr size_t kMaxSpares = 64;
inline constexpr size_t kMaxSpareBytes = 64 * 1024;

namespace detail {
template <typename T>
std::vector<T>& spare_list() {
  thread_local std::vector<T> list;
  return list;
}
}  // namespace detail

// Capacity an empty T has without heap memory: std::string's inline buffer.
template <typename T>
inline constexpr size_t kInlineCapacity = 0;
template <>
inline constexpr size_t kInlineCapacity<std::string> = 15;  // libstdc++'s short-string buffer

// For std::string and std::vector: hands `v`'s memory to this thread's
// spares (or frees it when the list is full or the block too large) and
// leaves `v` empty, holding no memory.
template <typename T>
inline void give_back(T& v) {
  if (v.capacity() <= kInlineCapacity<T>) {
    v.clear();  // no heap memory (a short string's inline buffer)
    return;
  }
  auto& list = detail::spare_list<T>();
  if (list.size() < kMaxSpares && v.capacity() * sizeof(typename T::value_type) <= kMaxSpareBytes)
      [[likely]] {
    v.clear();
    if (list.capacity() == 0) [[unlikely]] {
      list.reserve(kMaxSpares);
    }
    list.push_back(std::move(v));
    v.clear();  // moved-from: empty and without memory in libstdc++; clear() makes it so
    return;
  }
  T().swap(v);
}

// For std::string and std::vector: when `v` is empty and holds no memory of
// its own, gives it a spare's. Does nothing when there is no spare.
template <typename T>
inline void take_spare(T& v) {
  if (!v.empty() || v.capacity() > kInlineCapacity<T>) {
    return;
  }
  auto& list = detail::spare_list<T>();
  if (!list.empty()) {
    v = std::move(list.back());
    list.pop_back();
  }
}

// Objects a connection needs only while it works on a request (the request
// state, the HTTP/1.1 codec's part of it): at most kMaxSpares of each type
// kept per thread. take_object() hands out a spare or a new one; the caller
// resets what it reuses. give_object() leaves `p` null.
template <typename T>
inline std::unique_ptr<T> take_object() {
  auto& list = detail::spare_list<std::unique_ptr<T>>();
  if (list.empty()) {
    return std::make_unique<T>();
  }
  auto p = std::move(list.back());
  list.pop_back();
  return p;
}

template <typename T>
inline void give_object(std::unique_ptr<T>& p) {
  if (!p) {
    return;
  }
  auto& list = detail::spare_list<std::unique_ptr<T>>();
  if (list.size() < kMaxSpares) {
    if (list.capacity() == 0) [[unlikely]] {
      list.reserve(kMaxSpares);
    }
    list.push_back(std::move(p));
  } else {
    p.reset();
  }
}

// Raw blocks (read buffers, TLS staging) come in a few sizes: a list per
// size, at most kBlockSizes sizes and kMaxBlocks blocks of each (16 x 64 KiB
// + 16 x 32 KiB + ... bounds what a thread keeps to a few MiB).
inline constexpr size_t kBlockSizes = 8;
inline constexpr size_t kMaxBlocks = 16;

namespace detail {
struct BlockList {
  size_t size = 0;
  std::vector<std::unique_ptr<char[]>> blocks;
};
// The list for `size`, made when there is room for another size; null when not.
inline BlockList* block_list(size_t size, bool make) {
  thread_local std::vector<BlockList> lists;
  for (auto& l : lists) {
    if (l.size == size) {
      return &l;
    }
  }
  if (!make || lists.size() >= kBlockSizes) {
    return nullptr;
  }
  if (lists.capacity() == 0) {
    lists.reserve(kBlockSizes);
  }
  auto& l = lists.emplace_back();
  l.size = size;
  l.blocks.reserve(kMaxBlocks);
  return &l;
}
}  // namespace detail

// A spare block of exactly `size` bytes, or a new one; null when memory is
// exhausted.
inline std::unique_ptr<char[]> take_block(size_t size) {
  if (auto* l = detail::block_list(size, false); l != nullptr && !l->blocks.empty()) {
    auto block = std::move(l->blocks.back());
    l->blocks.pop_back();
    return block;
  }
  return std::unique_ptr<char[]>(new (std::nothrow) char[size]);
}

// Hands back a block of `size` bytes from take_block() (or any new
// char[size]); frees it when its list is full.
inline void give_block(std::unique_ptr<char[]>& block, size_t size) {
  if (!block) {
    return;
  }
  if (size <= kMaxSpareBytes) {
    if (auto* l = detail::block_list(size, true); l != nullptr && l->blocks.size() < kMaxBlocks) {
      l->blocks.push_back(std::move(block));
      return;
    }
  }
  block.reset();
}

}  // namespace ward::util
