#include "filters/body_encoders.h"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <new>

namespace ward::filters {

namespace {

// Output is appended to the caller's buffer at most this many bytes per codec
// call, so one call never asks for more than this at once, however much
// output the codec has ready.
constexpr size_t kOutStep = 16 * 1024;

// zlib counts input in uInt; a larger piece (never in practice: the codec
// feeds its buffer size) is fed in slices.
constexpr size_t kMaxZlibSlice = size_t{1} << 30;

// A size header in front of each block keeps the alignment malloc gives.
constexpr size_t kHeader = alignof(std::max_align_t);

// zlib's allocator signature: items * size, with the overflow check zlib
// leaves to the allocator.
voidpf zlib_alloc(voidpf meter, uInt items, uInt size) {
  if (size != 0 && items > SIZE_MAX / size) {
    return Z_NULL;
  }
  return MemoryMeter::allocate(meter, size_t{items} * size);
}

void zlib_free(voidpf meter, voidpf block) {
  MemoryMeter::release(meter, block);
}

}  // namespace

void* MemoryMeter::allocate(void* meter, size_t bytes) noexcept {
  if (bytes > SIZE_MAX - kHeader) {
    return nullptr;
  }
  auto* raw = static_cast<unsigned char*>(std::malloc(bytes + kHeader));
  if (raw == nullptr) {
    return nullptr;
  }
  *reinterpret_cast<size_t*>(raw) = bytes;
  auto* m = static_cast<MemoryMeter*>(meter);
  m->current_ += bytes;
  m->peak_ = std::max(m->peak_, m->current_);
  return raw + kHeader;
}

void MemoryMeter::release(void* meter, void* block) noexcept {
  if (block == nullptr) {
    return;
  }
  auto* raw = static_cast<unsigned char*>(block) - kHeader;
  static_cast<MemoryMeter*>(meter)->current_ -= *reinterpret_cast<size_t*>(raw);
  std::free(raw);
}

// --- gzip ---

std::unique_ptr<GzipEncoder> GzipEncoder::create(int level, int64_t content_length) {
  // A body known to be small needs no 32 KiB window: halve the window (and
  // the hash table with it, via memLevel) while the whole body still fits
  // in half of it with deflate's 262-byte lookahead, so the output is the
  // same and the state is a fraction (nginx's ngx_http_gzip_filter does
  // the same). zlib takes windowBits 9-15; memLevel 1-9.
  int window_bits = kMaxWindowBits;
  int mem_level = kMaxMemLevel;
  if (content_length > 0) {
    while (window_bits > 9 && content_length < (int64_t{1} << (window_bits - 1)) - 262) {
      --window_bits;
      --mem_level;
    }
    mem_level = std::max(mem_level, 1);
  }
  std::unique_ptr<GzipEncoder> e(new (std::nothrow) GzipEncoder(window_bits, mem_level));
  if (!e) {
    return nullptr;
  }
  e->zs_.zalloc = zlib_alloc;
  e->zs_.zfree = zlib_free;
  e->zs_.opaque = &e->meter_;
  // windowBits + 16: a gzip header and trailer (CRC-32, length) instead of
  // zlib's; the content coding "gzip" is exactly that (RFC 9110 8.4.1.3).
  if (deflateInit2(&e->zs_, std::clamp(level, 1, 9), Z_DEFLATED, window_bits + 16, mem_level,
                   Z_DEFAULT_STRATEGY) != Z_OK) {
    return nullptr;
  }
  e->started_ = true;
  return e;
}

GzipEncoder::~GzipEncoder() {
  release();
}

void GzipEncoder::release() {
  if (started_) {
    deflateEnd(&zs_);
    started_ = false;
  }
}

bool GzipEncoder::encode(std::string_view in, Mode mode, std::string& out) {
  if (finished_ || !started_) {
    return finished_ && in.empty();  // nothing may follow the trailer
  }
  try {
    while (in.size() > kMaxZlibSlice) {
      if (!deflate_all(in.substr(0, kMaxZlibSlice), Z_NO_FLUSH, out)) {
        return false;
      }
      in.remove_prefix(kMaxZlibSlice);
    }
    int flush = Z_NO_FLUSH;
    if (mode == Mode::finish) {
      flush = Z_FINISH;
    } else if (mode == Mode::flush && (unflushed_ || !in.empty())) {
      flush = Z_SYNC_FLUSH;
    } else if (in.empty()) {
      return true;  // nothing new: a repeated flush adds no empty blocks
    }
    if (!deflate_all(in, flush, out)) {
      return false;
    }
  } catch (const std::bad_alloc&) {
    return false;  // growing `out` failed; the codec cuts the response short
  }
  if (finished_) {
    release();  // the state is 260 KiB: free it now, not at the next request
  }
  return true;
}

bool GzipEncoder::deflate_all(std::string_view in, int flush, std::string& out) {
  zs_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs_.avail_in = static_cast<uInt>(in.size());
  for (;;) {
    const size_t used = out.size();
    out.resize(used + kOutStep);
    zs_.next_out = reinterpret_cast<Bytef*>(out.data() + used);
    zs_.avail_out = static_cast<uInt>(kOutStep);
    int rc = deflate(&zs_, flush);
    const bool room_left = zs_.avail_out != 0;
    out.resize(used + kOutStep - zs_.avail_out);
    if (rc == Z_STREAM_END) {
      finished_ = true;
      unflushed_ = false;
      return true;
    }
    // Z_BUF_ERROR only says "no progress was possible", which a flush with
    // nothing new gives; anything else (Z_STREAM_ERROR) is a broken state.
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      return false;
    }
    if (flush == Z_FINISH) {
      if (rc == Z_BUF_ERROR && room_left) {
        return false;  // cannot happen with output room; do not spin
      }
      continue;
    }
    // zlib's contract: with output room left, all input is taken and,
    // for Z_SYNC_FLUSH, the flush is complete.
    if (room_left) {
      unflushed_ = flush == Z_NO_FLUSH && (unflushed_ || !in.empty());
      return zs_.avail_in == 0;
    }
  }
}

// --- br ---

std::unique_ptr<BrotliEncoder> BrotliEncoder::create(int quality, int64_t content_length) {
  std::unique_ptr<BrotliEncoder> e(new (std::nothrow) BrotliEncoder());
  if (!e) {
    return nullptr;
  }
  e->state_ = BrotliEncoderCreateInstance(MemoryMeter::allocate, MemoryMeter::release, &e->meter_);
  if (e->state_ == nullptr) {
    return nullptr;
  }
  BrotliEncoderSetParameter(e->state_, BROTLI_PARAM_QUALITY,
                            static_cast<uint32_t>(std::clamp(quality, 0, kMaxQuality)));
  // The window bounds both memory and the output held back (one meta-block
  // of up to 2^(lgwin+1) bytes). Measured on text and JSON at quality 4,
  // lgwin 16 compresses as well as 18-20 while using half the memory or less.
  BrotliEncoderSetParameter(e->state_, BROTLI_PARAM_LGWIN, kWindowBits);
  if (content_length > 0) {
    BrotliEncoderSetParameter(
        e->state_, BROTLI_PARAM_SIZE_HINT,
        static_cast<uint32_t>(std::min<int64_t>(content_length, int64_t{1} << 30)));
  }
  return e;
}

BrotliEncoder::~BrotliEncoder() {
  release();
}

void BrotliEncoder::release() {
  if (state_ != nullptr) {
    BrotliEncoderDestroyInstance(state_);
    state_ = nullptr;
  }
}

bool BrotliEncoder::encode(std::string_view in, Mode mode, std::string& out) {
  if (finished_ || state_ == nullptr) {
    return finished_ && in.empty();  // nothing may follow the last meta-block
  }
  BrotliEncoderOperation op = BROTLI_OPERATION_PROCESS;
  if (mode == Mode::finish) {
    op = BROTLI_OPERATION_FINISH;
  } else if (mode == Mode::flush && (unflushed_ || !in.empty())) {
    op = BROTLI_OPERATION_FLUSH;
  } else if (in.empty()) {
    return true;  // nothing new: a repeated flush adds nothing
  }
  size_t avail_in = in.size();
  const auto* next_in = reinterpret_cast<const uint8_t*>(in.data());
  try {
    for (;;) {
      // No output buffer: brotli keeps what it made and BrotliEncoderTakeOutput
      // hands it over without a copy, kOutStep bytes at a time.
      size_t avail_out = 0;
      uint8_t* next_out = nullptr;
      const size_t before = avail_in;
      if (!BrotliEncoderCompressStream(state_, op, &avail_in, &next_in, &avail_out, &next_out,
                                       nullptr)) {
        return false;
      }
      bool produced = false;
      while (BrotliEncoderHasMoreOutput(state_)) {
        size_t n = kOutStep;
        const uint8_t* chunk = BrotliEncoderTakeOutput(state_, &n);
        out.append(reinterpret_cast<const char*>(chunk), n);
        produced = produced || n != 0;
      }
      if (op == BROTLI_OPERATION_FINISH && BrotliEncoderIsFinished(state_)) {
        break;
      }
      // Each call takes at most one input block and encodes at most one
      // meta-block (brotli encodes only with its output buffer empty), so
      // call until a call with no input left makes nothing: then a flush
      // is complete too.
      if (!produced && avail_in == before) {
        if (avail_in == 0 && op != BROTLI_OPERATION_FINISH) {
          break;
        }
        return false;  // stuck with unlimited output room: do not spin
      }
    }
  } catch (const std::bad_alloc&) {
    return false;  // growing `out` failed; the codec cuts the response short
  }
  if (op == BROTLI_OPERATION_FINISH) {
    finished_ = true;
    release();  // up to 2 MiB: free it now, not at the next request
  } else {
    unflushed_ = op == BROTLI_OPERATION_PROCESS;
  }
  return true;
}

}  // namespace ward::filters
