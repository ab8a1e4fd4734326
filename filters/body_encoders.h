#pragma once

// Streaming content codings for the compress filter: gzip (RFC 1952, zlib's
// deflate) and br (RFC 7932, libbrotlienc). Each encoder owns its codec
// state, allocates it through a MemoryMeter (so the bound on memory per
// response is measured, not guessed, and tests hold it), and frees it as soon
// as the stream is finished: a keep-alive connection that idles after a
// compressed response does not keep a compressor alive.
//
// Memory per compressing response (peak codec state, measured through the
// meter on text and on random data; the output goes to the caller's buffer):
//   gzip  windowBits 15, memLevel 8: 262 KiB (256 KiB of window and hash
//         tables + 6 KiB of zlib state), whatever the level. A body whose
//         Content-Length is known and small gets a smaller window and hash
//         table with the same output: 38 KiB for a 2 KB body, 134 KiB for 10 KB.
//   br    window 64 KiB (lgwin 16): 1.8 MiB at the default quality 4 (and at
//         5-8), 0.3-1.0 MiB at 0-3, 2.5 MiB at 9; a small body still takes
//         about 0.6 MiB. Qualities 10 and 11 (Zopfli-style search, about 100
//         times slower) are not offered for on-the-fly use. brotli's default
//         window (4 MiB) would need 10+ MiB per response.
//
// Output held back in Mode::none: gzip emits a deflate block whenever its
// buffer of 16K symbols (literals or matches) fills: every 100-200 KiB of
// typical text or JSON, sooner for data that compresses badly, later for very
// repetitive data. br emits a meta-block per 2^(lgwin+1) = 128 KiB of input
// at most. Mode::flush and Mode::finish hold nothing back.

#include <zlib.h>

#include <brotli/encode.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "filters/filter.h"

namespace ward::filters {

// Counts the bytes a codec library allocates through it (zlib's zalloc,
// brotli's alloc_func): current and peak. One per encoder, used by one thread.
class MemoryMeter {
 public:
  size_t current() const { return current_; }
  size_t peak() const { return peak_; }

  // malloc/free with a size header; nullptr when out of memory (both
  // libraries report that as an error instead of crashing).
  static void* allocate(void* meter, size_t bytes) noexcept;
  static void release(void* meter, void* block) noexcept;

 private:
  size_t current_ = 0;
  size_t peak_ = 0;
};

// gzip via deflate. Not copyable or movable: zlib keeps pointers to it.
class GzipEncoder final : public BodyEncoder {
 public:
  static constexpr int kDefaultLevel = 5;  // 1-9; see CompressFilter's notes
  static constexpr int kMaxWindowBits = 15;
  static constexpr int kMaxMemLevel = 8;

  // An encoder at `level` (1-9) for a body of `content_length` bytes (-1:
  // unknown). nullptr when zlib cannot start (out of memory).
  static std::unique_ptr<GzipEncoder> create(int level, int64_t content_length);

  GzipEncoder(const GzipEncoder&) = delete;
  GzipEncoder& operator=(const GzipEncoder&) = delete;
  ~GzipEncoder() override;

  bool encode(std::string_view in, Mode mode, std::string& out) override;

  const MemoryMeter& memory() const { return meter_; }
  int window_bits() const { return window_bits_; }
  int mem_level() const { return mem_level_; }

 private:
  GzipEncoder(int window_bits, int mem_level) : window_bits_(window_bits), mem_level_(mem_level) {}
  // One deflate() sequence with `flush` over `in`; sets finished_ at the end
  // of the stream.
  bool deflate_all(std::string_view in, int flush, std::string& out);
  void release();

  z_stream zs_{};
  MemoryMeter meter_;
  int window_bits_;
  int mem_level_;
  bool started_ = false;    // deflateInit2 succeeded and deflateEnd is due
  bool finished_ = false;   // the trailer is written; nothing may follow
  bool unflushed_ = false;  // input taken since the last flush
};

// br via BrotliEncoderCompressStream. Not copyable or movable.
class BrotliEncoder final : public BodyEncoder {
 public:
  static constexpr int kDefaultQuality = 4;
  static constexpr int kMaxQuality = 9;
  static constexpr int kWindowBits = 16;  // 64 KiB: see the memory notes above

  // An encoder at `quality` (0-9) for a body of `content_length` bytes (-1:
  // unknown). nullptr when brotli cannot start (out of memory).
  static std::unique_ptr<BrotliEncoder> create(int quality, int64_t content_length);

  BrotliEncoder(const BrotliEncoder&) = delete;
  BrotliEncoder& operator=(const BrotliEncoder&) = delete;
  ~BrotliEncoder() override;

  bool encode(std::string_view in, Mode mode, std::string& out) override;

  const MemoryMeter& memory() const { return meter_; }

 private:
  BrotliEncoder() = default;
  void release();

  BrotliEncoderState* state_ = nullptr;
  MemoryMeter meter_;
  bool finished_ = false;
  bool unflushed_ = false;
};

}  // namespace ward::filters
