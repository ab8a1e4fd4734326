#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <new>
#include <string_view>

#include "proxy/util/spare.h"

namespace ward::util {

// A read buffer: bytes [begin, end) are data not yet consumed, [end, block
// size) is free space to read into. The memory is taken on the first
// write_ptr() and may be given back with release() while empty, so an idle
// keep-alive connection (or a pooled upstream one) holds no buffer: 10,000
// idle clients cost 10,000 sockets, not 10,000 x 32 KiB. The block comes
// from and goes back to the thread's spares (util/spare.h): a keep-alive
// connection releases it between requests, and a malloc/free pair of 32 KiB
// per request is what that would otherwise cost. compact() moves the unread
// tail to the front so a busy connection never reallocates.
//
// It may start smaller than its capacity (`initial`): a downstream
// connection reads request heads into 4 KiB, which holds nearly all of them,
// and grow()s to the full capacity for a larger head or a body to stream.
// A burst of new connections, each reading its first request, then holds a
// few KiB apiece rather than 32 (nginx reads heads into 1 KiB first).
class IoBuffer {
 public:
  explicit IoBuffer(size_t capacity) : IoBuffer(capacity, capacity) {}
  IoBuffer(size_t capacity, size_t initial)
      : capacity_(capacity), initial_(initial < capacity ? initial : capacity), block_(initial_) {}
  ~IoBuffer() { give_block(data_, block_); }
  IoBuffer(const IoBuffer&) = delete;
  IoBuffer& operator=(const IoBuffer&) = delete;

  std::string_view data() const {
    return data_ ? std::string_view(data_.get() + begin_, end_ - begin_) : std::string_view();
  }
  size_t size() const { return end_ - begin_; }
  bool empty() const { return begin_ == end_; }
  // The most it holds (after grow()).
  size_t capacity() const { return capacity_; }
  // The block it reads into now (or will, once allocated).
  size_t block_size() const { return block_; }

  // Free space after the data (allocating it if released); compacts first
  // when the tail is short.
  char* write_ptr() {
    if (!data_) {
      data_ = take_block(block_);
      if (!data_) {
        throw std::bad_alloc();
      }
    }
    if (block_ - end_ < block_ / 4 && begin_ > 0) {
      compact();
    }
    return data_.get() + end_;
  }
  size_t write_space() const { return block_ - end_; }
  void commit(size_t n) { end_ += n; }

  // To the full capacity, keeping the data: false when it is there already.
  bool grow() {
    if (block_ == capacity_) {
      return false;
    }
    if (data_) {
      auto bigger = take_block(capacity_);
      if (!bigger) {
        throw std::bad_alloc();
      }
      std::memcpy(bigger.get(), data_.get() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
      give_block(data_, block_);
      data_ = std::move(bigger);
    }
    block_ = capacity_;
    return true;
  }

  void consume(size_t n) {
    begin_ += n;
    if (begin_ == end_) {
      begin_ = end_ = 0;
    }
  }
  void compact() {
    if (begin_ > 0) {
      std::memmove(data_.get(), data_.get() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
  }
  void clear() { begin_ = end_ = 0; }
  // Frees the memory when no data is held; the next write_ptr() allocates,
  // the initial size again.
  void release() {
    if (empty()) {
      give_block(data_, block_);
      block_ = initial_;
    }
  }
  bool allocated() const { return data_ != nullptr; }

 private:
  std::unique_ptr<char[]> data_;
  size_t capacity_;
  size_t initial_;
  size_t block_;  // the size of data_ (or of the next one)
  size_t begin_ = 0;
  size_t end_ = 0;
};

}  // namespace ward::util
