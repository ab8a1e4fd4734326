#include "filters/body_encoders.h"

#include <brotli/decode.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace ward::filters {
namespace {

using Mode = BodyEncoder::Mode;
using ::testing::StartsWith;

constexpr size_t kKiB = 1024;
constexpr size_t kMiB = 1024 * kKiB;

// --- The client's side: real decoders ---

// Inflates a gzip stream. `complete`: the stream must end exactly at the end
// of `data`; otherwise what is decodable so far is returned (a flushed
// prefix). nullopt on corrupt data.
std::optional<std::string> gunzip(std::string_view data, bool complete = true) {
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 16) != Z_OK) {
    return std::nullopt;
  }
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  std::string out;
  std::vector<char> buf(64 * kKiB);
  int rc = Z_OK;
  do {
    zs.next_out = reinterpret_cast<Bytef*>(buf.data());
    zs.avail_out = static_cast<uInt>(buf.size());
    rc = inflate(&zs, Z_SYNC_FLUSH);
    out.append(buf.data(), buf.size() - zs.avail_out);
  } while (rc == Z_OK && (zs.avail_in != 0 || zs.avail_out == 0));
  const bool ended = rc == Z_STREAM_END && zs.avail_in == 0;
  const bool waiting = rc == Z_OK || rc == Z_BUF_ERROR;  // needs more input
  inflateEnd(&zs);
  if (complete ? !ended : !(ended || waiting)) {
    return std::nullopt;
  }
  return out;
}

// The same for a br stream, with libbrotlidec.
std::optional<std::string> unbrotli(std::string_view data, bool complete = true) {
  BrotliDecoderState* s = BrotliDecoderCreateInstance(nullptr, nullptr, nullptr);
  size_t avail_in = data.size();
  const auto* next_in = reinterpret_cast<const uint8_t*>(data.data());
  std::string out;
  std::vector<uint8_t> buf(64 * kKiB);
  BrotliDecoderResult r;
  do {
    size_t avail_out = buf.size();
    uint8_t* next_out = buf.data();
    r = BrotliDecoderDecompressStream(s, &avail_in, &next_in, &avail_out, &next_out, nullptr);
    out.append(reinterpret_cast<const char*>(buf.data()), buf.size() - avail_out);
  } while (r == BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT);
  BrotliDecoderDestroyInstance(s);
  if (r == BROTLI_DECODER_RESULT_SUCCESS && avail_in == 0) {
    return out;
  }
  if (!complete && r == BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT) {
    return out;
  }
  return std::nullopt;
}

// --- Bodies ---

// Text of the kind that gets compressed (markup, JSON, prose), compressing to
// roughly a fifth, deterministic for a seed.
std::string text_body(size_t n, uint32_t seed = 1) {
  // Markup, JSON and words, separated by '|'.
  constexpr std::string_view kVocabulary =
      "<div class=\"item\">|</div>|{\"id\": |\"name\": \"|\", |upstream|request|the|proxy|"
      "response|header|value|compress|\n|stream|client|cache|1234";
  std::vector<std::string_view> words;
  for (std::string_view rest = kVocabulary; !rest.empty();) {
    size_t bar = rest.find('|');
    words.push_back(rest.substr(0, bar));
    rest.remove_prefix(bar == std::string_view::npos ? rest.size() : bar + 1);
  }
  std::mt19937 rng(seed);
  std::string out;
  out.reserve(n + 32);
  while (out.size() < n) {
    out += words[rng() % words.size()];
    out += ' ';
  }
  out.resize(n);
  return out;
}

std::string random_body(size_t n, uint32_t seed = 7) {
  std::mt19937 rng(seed);
  std::string out(n, '\0');
  for (auto& c : out) {
    c = static_cast<char>(rng());
  }
  return out;
}

// --- The encoders, each checked against its decoder ---

class BodyEncoderTest : public ::testing::TestWithParam<std::string> {
 protected:
  bool is_gzip() const { return GetParam() == "gzip"; }

  // The default encoder of the parameter's coding; meter_ watches it.
  std::unique_ptr<BodyEncoder> make(int64_t content_length = -1) {
    if (is_gzip()) {
      auto e = GzipEncoder::create(GzipEncoder::kDefaultLevel, content_length);
      meter_ = &e->memory();
      return e;
    }
    auto e = BrotliEncoder::create(BrotliEncoder::kDefaultQuality, content_length);
    meter_ = &e->memory();
    return e;
  }

  std::optional<std::string> decode(std::string_view data, bool complete = true) const {
    return is_gzip() ? gunzip(data, complete) : unbrotli(data, complete);
  }

  // The bound documented in body_encoders.h for the default settings.
  size_t memory_bound() const { return is_gzip() ? 268 * kKiB : 2 * kMiB; }

  const MemoryMeter* meter_ = nullptr;
};

INSTANTIATE_TEST_SUITE_P(Codings, BodyEncoderTest, ::testing::Values("gzip", "br"),
                         [](const auto& info) { return info.param; });

TEST_P(BodyEncoderTest, SmallBodyRoundTrips) {
  auto e = make();
  const std::string body = "<html><body>Hello, world. Hello, world. Hello!</body></html>\n";
  std::string out;
  ASSERT_TRUE(e->encode(body, Mode::finish, out));
  EXPECT_EQ(decode(out), body);
}

TEST_P(BodyEncoderTest, EmptyBodyIsAValidEmptyStream) {
  auto e = make();
  std::string out;
  ASSERT_TRUE(e->encode("", Mode::finish, out));
  EXPECT_FALSE(out.empty());  // a header and a trailer, or br's one empty last block
  EXPECT_EQ(decode(out), "");
}

TEST_P(BodyEncoderTest, LargeBodyStreamsOutAsItGoesNotAtTheEnd) {
  auto e = make();
  const std::string body = text_body(6 * kMiB);
  constexpr size_t kPiece = 64 * kKiB;
  std::string out;
  size_t fed_since_output = 0;
  size_t longest_silence = 0;  // input bytes taken without any output
  for (size_t off = 0; off < body.size(); off += kPiece) {
    const size_t before = out.size();
    ASSERT_TRUE(e->encode(std::string_view(body).substr(off, kPiece), Mode::none, out));
    fed_since_output += std::min(kPiece, body.size() - off);
    if (out.size() != before) {
      fed_since_output = 0;
    }
    longest_silence = std::max(longest_silence, fed_since_output);
  }
  const size_t before_finish = out.size();
  ASSERT_TRUE(e->encode("", Mode::finish, out));
  // br holds one meta-block, 128 KiB of input at most; gzip one block of 16K
  // symbols, which is 100-200 KiB of this text.
  EXPECT_LE(longest_silence, (is_gzip() ? 256 : 128) * kKiB);
  EXPECT_GE(before_finish, out.size() * 9 / 10);
  EXPECT_LT(out.size(), body.size() / 3);
  EXPECT_EQ(decode(out), body);
}

TEST_P(BodyEncoderTest, IncompressibleBodyGrowsOnlyByFraming) {
  auto e = make();
  const std::string body = random_body(2 * kMiB);
  std::string out;
  for (size_t off = 0; off < body.size(); off += 64 * kKiB) {
    ASSERT_TRUE(e->encode(std::string_view(body).substr(off, 64 * kKiB), Mode::none, out));
  }
  ASSERT_TRUE(e->encode("", Mode::finish, out));
  EXPECT_LE(out.size(), body.size() + body.size() / 500 + 64);
  EXPECT_EQ(decode(out), body);
}

TEST_P(BodyEncoderTest, FlushMakesEveryByteSoFarDecodable) {
  auto e = make();
  std::string out;
  std::string sent;
  for (int i = 0; i < 5; ++i) {
    const std::string event = "event: tick\ndata: {\"n\": " + std::to_string(i) + "}\n\n";
    sent += event;
    ASSERT_TRUE(e->encode(event, Mode::flush, out));
    EXPECT_EQ(decode(out, /*complete=*/false), sent) << "after event " << i;
  }
  // Input taken without a flush may wait; a flush with no new input sends it.
  sent += "data: held\n\n";
  ASSERT_TRUE(e->encode("data: held\n\n", Mode::none, out));
  ASSERT_TRUE(e->encode("", Mode::flush, out));
  EXPECT_EQ(decode(out, false), sent);
  ASSERT_TRUE(e->encode("", Mode::finish, out));
  EXPECT_EQ(decode(out), sent);
}

TEST_P(BodyEncoderTest, RepeatedFlushAddsNothing) {
  auto e = make();
  std::string out;
  ASSERT_TRUE(e->encode("data: 1\n\n", Mode::flush, out));
  const size_t flushed = out.size();
  ASSERT_TRUE(e->encode("", Mode::flush, out));
  ASSERT_TRUE(e->encode("", Mode::none, out));
  EXPECT_EQ(out.size(), flushed);
}

TEST_P(BodyEncoderTest, NothingMayFollowTheEndOfTheStream) {
  auto e = make();
  std::string out;
  ASSERT_TRUE(e->encode("last words", Mode::finish, out));
  const std::string finished = out;
  EXPECT_TRUE(e->encode("", Mode::finish, out));  // a repeated finish is harmless
  EXPECT_FALSE(e->encode("more", Mode::none, out));
  EXPECT_EQ(out, finished);
  EXPECT_EQ(decode(out), "last words");
}

TEST_P(BodyEncoderTest, AppendsToWhatTheOutputAlreadyHolds) {
  auto e = make();
  std::string out = "already here";
  ASSERT_TRUE(e->encode("body", Mode::finish, out));
  ASSERT_THAT(out, StartsWith("already here"));
  EXPECT_EQ(decode(std::string_view(out).substr(12)), "body");
}

TEST_P(BodyEncoderTest, MemoryStaysWithinTheStatedBoundAndIsFreedAtTheEnd) {
  for (const std::string& body : {text_body(4 * kMiB), random_body(kMiB)}) {
    auto e = make();
    std::string out;
    for (size_t off = 0; off < body.size(); off += 64 * kKiB) {
      ASSERT_TRUE(e->encode(std::string_view(body).substr(off, 64 * kKiB), Mode::none, out));
      out.clear();  // as the codec does once it has written the output
    }
    ASSERT_TRUE(e->encode("", Mode::finish, out));
    EXPECT_GT(meter_->peak(), 0u);  // the meter does see the codec's allocations
    EXPECT_LE(meter_->peak(), memory_bound());
    EXPECT_EQ(meter_->current(), 0u);  // released at finish, not when destroyed
  }
}

TEST_P(BodyEncoderTest, ContentLengthHintSmallerThanTheBodyStillRoundTrips) {
  auto e = make(/*content_length=*/100);
  const std::string body = text_body(300 * kKiB);
  std::string out;
  ASSERT_TRUE(e->encode(body, Mode::finish, out));
  EXPECT_EQ(decode(out), body);
}

class GzipEncoderTest : public ::testing::Test {};

TEST_F(GzipEncoderTest, SmallKnownLengthGetsASmallWindowAndCompressesTheSame) {
  const std::string body = text_body(2000);
  auto small = GzipEncoder::create(GzipEncoder::kDefaultLevel, body.size());
  auto full = GzipEncoder::create(GzipEncoder::kDefaultLevel, -1);
  EXPECT_EQ(small->window_bits(), 12);  // 4 KiB: the body fits in half of it
  EXPECT_EQ(full->window_bits(), 15);
  std::string a;
  std::string b;
  ASSERT_TRUE(small->encode(body, Mode::finish, a));
  ASSERT_TRUE(full->encode(body, Mode::finish, b));
  EXPECT_LT(small->memory().peak(), 64 * kKiB);
  EXPECT_GT(full->memory().peak(), 256 * kKiB);
  EXPECT_LE(a.size(), b.size() + b.size() / 50);
  EXPECT_EQ(gunzip(a), body);
}

TEST_F(GzipEncoderTest, LevelTradesSpeedForSize) {
  const std::string body = text_body(kMiB);
  auto fast = GzipEncoder::create(1, -1);
  auto best = GzipEncoder::create(9, -1);
  std::string a;
  std::string b;
  ASSERT_TRUE(fast->encode(body, Mode::finish, a));
  ASSERT_TRUE(best->encode(body, Mode::finish, b));
  EXPECT_LT(b.size(), a.size());
  EXPECT_EQ(gunzip(b), body);
}

class BrotliEncoderTest : public ::testing::Test {};

TEST_F(BrotliEncoderTest, QualityTradesSpeedForSize) {
  const std::string body = text_body(kMiB);
  auto fast = BrotliEncoder::create(0, -1);
  auto best = BrotliEncoder::create(BrotliEncoder::kMaxQuality, -1);
  std::string a;
  std::string b;
  ASSERT_TRUE(fast->encode(body, Mode::finish, a));
  ASSERT_TRUE(best->encode(body, Mode::finish, b));
  EXPECT_LT(b.size(), a.size());
  EXPECT_EQ(unbrotli(b), body);
}

TEST_F(BrotliEncoderTest, HighestQualityStaysUnderThreeMiB) {
  auto e = BrotliEncoder::create(BrotliEncoder::kMaxQuality, -1);
  const std::string body = text_body(2 * kMiB);
  std::string out;
  for (size_t off = 0; off < body.size(); off += 64 * kKiB) {
    ASSERT_TRUE(e->encode(std::string_view(body).substr(off, 64 * kKiB), Mode::none, out));
  }
  ASSERT_TRUE(e->encode("", Mode::finish, out));
  EXPECT_LE(e->memory().peak(), 3 * kMiB);
  EXPECT_EQ(unbrotli(out), body);
}

}  // namespace
}  // namespace ward::filters
