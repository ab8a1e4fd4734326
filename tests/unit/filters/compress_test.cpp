#include "filters/compress.h"

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

#include "filters/body_encoders.h"

namespace ward::filters {
namespace {

using Mode = BodyEncoder::Mode;
using ::testing::ElementsAre;
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

// --- The filter ---

class CompressFilterTest : public ::testing::Test {
 protected:
  std::unique_ptr<Filter> build(const std::string& yaml = "{}") {
    spec_.name = "compress";
    spec_.options = YAML::Load(yaml);
    BuildContext ctx{spec_, reader_, metrics_, runtime_, "api", "api.compress"};
    return make_compress_filter(ctx);
  }

  std::vector<std::string> errors() {
    std::vector<std::string> out;
    for (const auto& e : reader_.take_errors()) {
      out.push_back(e.to_string());
    }
    return out;
  }

  // The errors of a configuration that must not build.
  std::vector<std::string> rejected(const std::string& yaml) {
    EXPECT_EQ(build(yaml), nullptr) << yaml;
    return errors();
  }

  // A fresh request (with these Accept-Encoding fields) and a compressible
  // 200 response: text/html, 4 KiB.
  void start(std::vector<std::string_view> accept_encoding = {"gzip, br"}) {
    ctx_.reset();
    request_.clear();
    response_.clear();
    state_ = FilterState{};
    for (auto v : accept_encoding) {
      request_.add("Accept-Encoding", v);
    }
    response_.add("Content-Type", "text/html; charset=utf-8");
    response_.add("Content-Length", "4096");
    ctx_.method = "GET";
    ctx_.status = 200;
  }

  // Both phases, as the chain runs them.
  void run(Filter& f) {
    ctx_.request_headers = &request_;
    ctx_.state = &state_;
    ASSERT_EQ(f.on_request(ctx_), FilterStatus::next);
    ctx_.response_headers = &response_;
    f.on_response(ctx_);
    ctx_.state = nullptr;
  }

  std::string head() const {
    std::string s;
    response_.serialize_to(s);
    return s;
  }

  std::string field(std::string_view name) const {
    return std::string(response_.get(name).value_or("<none>"));
  }

  // The Content-Encoding the standard response gets for these Accept-Encoding
  // fields; "" when it goes out as is.
  std::string coding_for(std::vector<std::string_view> accept_encoding,
                         const std::string& yaml = "{}") {
    auto f = build(yaml);
    EXPECT_NE(f, nullptr);
    if (!f) {
      return "<no filter>";
    }
    start(std::move(accept_encoding));
    run(*f);
    const bool installed = ctx_.response_encoder != nullptr;
    std::string coding(response_.get("Content-Encoding").value_or(""));
    EXPECT_EQ(installed, !coding.empty());
    return coding;
  }

  // Whether the standard request gets its response compressed once `edit`
  // has shaped the response.
  template <typename Edit>
  bool compressed(Filter& f, Edit&& edit) {
    start();
    edit();
    run(f);
    return ctx_.response_encoder != nullptr;
  }

  uint64_t responses(std::string_view encoding) {
    return metrics_.counter("ward_compress_responses_total", "", {"filter", "encoding"})
        .value({"api.compress", encoding});
  }

  config::FilterSpec spec_;
  config::Reader reader_{"test.yaml"};
  observe::Registry metrics_{1};
  RuntimeState runtime_;
  http::HeaderList request_;
  http::HeaderList response_;
  FilterState state_;
  RequestContext ctx_;  // last: its encoder reports to metrics_ when destroyed
};

// Negotiation (RFC 9110 12.5.3)

TEST_F(CompressFilterTest, ServerOrderBreaksATieBetweenAcceptedCodings) {
  EXPECT_EQ(coding_for({"gzip, br"}), "br");  // default algorithms: [br, gzip]
  EXPECT_EQ(coding_for({"br, gzip"}, "{algorithms: [gzip, br]}"), "gzip");
  EXPECT_EQ(coding_for({"gzip;q=0.5, br;q=0.5"}), "br");
}

TEST_F(CompressFilterTest, HigherQValueWins) {
  EXPECT_EQ(coding_for({"br;q=0.5, gzip;q=0.8"}), "gzip");
  EXPECT_EQ(coding_for({"br;q=0.001, gzip;q=0"}), "br");
  EXPECT_EQ(coding_for({"gzip;q=1.0, br;q=0.999"}), "gzip");
}

TEST_F(CompressFilterTest, QZeroExcludesACoding) {
  EXPECT_EQ(coding_for({"br;q=0, gzip"}), "gzip");
  EXPECT_EQ(coding_for({"br;q=0, gzip;q=0.000"}), "");
  EXPECT_EQ(coding_for({"gzip"}, "{algorithms: [br]}"), "");
}

TEST_F(CompressFilterTest, OnlyOfferedAlgorithmsAreUsed) {
  EXPECT_EQ(coding_for({"br"}), "br");
  EXPECT_EQ(coding_for({"gzip"}), "gzip");
  EXPECT_EQ(coding_for({"br"}, "{algorithms: [gzip]}"), "");
  EXPECT_EQ(coding_for({"deflate, zstd, compress"}), "");
  EXPECT_EQ(coding_for({"zstd, gzip;q=0.1"}), "gzip");
}

TEST_F(CompressFilterTest, StarStandsForEveryCodingNotNamed) {
  EXPECT_EQ(coding_for({"*"}), "br");
  EXPECT_EQ(coding_for({"br;q=0, *"}), "gzip");
  EXPECT_EQ(coding_for({"*;q=0.2, gzip;q=0.5"}), "gzip");
  EXPECT_EQ(coding_for({"*;q=0"}), "");
}

TEST_F(CompressFilterTest, IdentityIsUsedOnlyWhenTheClientPrefersIt) {
  EXPECT_EQ(coding_for({"identity;q=0, gzip"}), "gzip");  // refuses identity, takes gzip
  EXPECT_EQ(coding_for({"identity, gzip"}), "gzip");      // a tie: compress
  EXPECT_EQ(coding_for({"identity, gzip;q=0.5"}), "");    // prefers uncompressed
  EXPECT_EQ(coding_for({"identity"}), "");
}

TEST_F(CompressFilterTest, CodingsAndWeightsAreCaseInsensitive) {
  EXPECT_EQ(coding_for({"GZIP;Q=1"}), "gzip");
  EXPECT_EQ(coding_for({"Br ; q=0.9 , GZip;q=0.1"}), "br");
  EXPECT_EQ(coding_for({"x-gzip"}), "gzip");  // gzip's old name (RFC 9110 8.4.1.3)
}

TEST_F(CompressFilterTest, NoOrEmptyAcceptEncodingMeansUncompressed) {
  EXPECT_EQ(coding_for({}), "");
  EXPECT_EQ(coding_for({""}), "");
  EXPECT_EQ(coding_for({" , ,"}), "");
}

TEST_F(CompressFilterTest, SeveralAcceptEncodingFieldsAreOneList) {
  EXPECT_EQ(coding_for({"br;q=0", "gzip"}), "gzip");
  EXPECT_EQ(coding_for({"gzip;q=0.1", "br;q=0.2"}), "br");
}

TEST_F(CompressFilterTest, ACodingNamedTwiceKeepsItsLowestWeight) {
  EXPECT_EQ(coding_for({"br, br;q=0, gzip;q=0.5"}), "gzip");
  EXPECT_EQ(coding_for({"br;q=0, br, gzip;q=0.5"}), "gzip");
}

TEST_F(CompressFilterTest, MalformedWeightExcludesItsCoding) {
  EXPECT_EQ(coding_for({"br;q=high, gzip;q=0.1"}), "gzip");
  EXPECT_EQ(coding_for({"br;q=1.5, gzip;q=0.1"}), "gzip");
  EXPECT_EQ(coding_for({"br;q=0.1234, gzip;q=0.1"}), "gzip");
  EXPECT_EQ(coding_for({"br;q=, gzip;q=0.1"}), "gzip");
  EXPECT_EQ(coding_for({"br;q=-1, gzip;q=.5"}), "");
  // Parameters other than the weight are ignored.
  EXPECT_EQ(coding_for({"gzip;level=9"}), "gzip");
}

TEST_F(CompressFilterTest, GarbageIsToleratedWithoutCompressing) {
  const std::string long_list(16 * kKiB, ',');
  const std::string binary("\x00\xff\x01gzip\x7f", 8);
  for (std::string_view garbage :
       {std::string_view(";;;"), std::string_view("q=1"), std::string_view("=,=;=;q"),
        std::string_view(";q=1"), std::string_view("\"gzip\""), std::string_view("gzip br"),
        std::string_view(long_list), std::string_view(binary)}) {
    EXPECT_EQ(coding_for({garbage}), "") << garbage.substr(0, 20);
  }
  EXPECT_EQ(coding_for({";;, gzip ,,;q=1"}), "gzip");  // good elements still count
}

TEST_F(CompressFilterTest, TheChoiceIsMadeInTheRequestPhase) {
  auto f = build();
  start({"gzip"});
  ctx_.request_headers = &request_;
  ctx_.state = &state_;
  f->on_request(ctx_);
  request_.set("Accept-Encoding", "identity");  // too late to matter
  ctx_.response_headers = &response_;
  f->on_response(ctx_);
  EXPECT_EQ(field("Content-Encoding"), "gzip");
}

// The response head when compressing

TEST_F(CompressFilterTest, CompressingSetsContentEncodingDropsLengthAndInstallsTheEncoder) {
  auto f = build();
  start({"gzip"});
  response_.add("Accept-Ranges", "bytes");
  run(*f);
  EXPECT_EQ(field("Content-Encoding"), "gzip");
  EXPECT_EQ(field("Content-Length"), "<none>");
  EXPECT_EQ(field("Accept-Ranges"), "<none>");
  EXPECT_EQ(field("Vary"), "Accept-Encoding");
  EXPECT_EQ(field("Content-Type"), "text/html; charset=utf-8");
  ASSERT_NE(ctx_.response_encoder, nullptr);
}

TEST_F(CompressFilterTest, InstalledEncoderWritesWhatTheClientDecodes) {
  auto f = build();
  const std::string body = text_body(100 * kKiB);
  for (auto coding : {"gzip", "br"}) {
    start({coding});
    run(*f);
    ASSERT_NE(ctx_.response_encoder, nullptr) << coding;
    std::string out;
    ASSERT_TRUE(ctx_.response_encoder->encode(body, Mode::none, out));
    ASSERT_TRUE(ctx_.response_encoder->encode("", Mode::finish, out));
    EXPECT_EQ(std::string_view(coding) == "gzip" ? gunzip(out) : unbrotli(out), body) << coding;
  }
}

TEST_F(CompressFilterTest, IdentityContentEncodingIsReplaced) {
  auto f = build();
  start({"br"});
  response_.add("Content-Encoding", "identity");
  run(*f);
  EXPECT_EQ(response_.count("Content-Encoding"), 1u);
  EXPECT_EQ(field("Content-Encoding"), "br");
}

TEST_F(CompressFilterTest, VaryIsAppendedToAndNeverDuplicated) {
  auto f = build();
  start();
  response_.add("Vary", "Origin");
  run(*f);
  EXPECT_EQ(field("Vary"), "Origin, Accept-Encoding");

  for (auto existing : {"accept-encoding", "Origin, Accept-Encoding", "*"}) {
    start();
    response_.add("Vary", existing);
    run(*f);
    EXPECT_EQ(response_.count("Vary"), 1u) << existing;
    EXPECT_EQ(field("Vary"), existing);
  }
  start();
  response_.add("Vary", "Origin");
  response_.add("Vary", "Accept-Encoding");
  run(*f);
  EXPECT_EQ(response_.count("Vary"), 2u);
}

TEST_F(CompressFilterTest, VaryIsAddedEvenWhenThisClientGetsItUncompressed) {
  auto f = build();
  start({});
  run(*f);
  EXPECT_EQ(ctx_.response_encoder, nullptr);
  EXPECT_EQ(field("Vary"), "Accept-Encoding");
  EXPECT_EQ(field("Content-Length"), "4096");
  EXPECT_EQ(field("Content-Encoding"), "<none>");
}

TEST_F(CompressFilterTest, StrongETagBecomesWeakWhenCompressing) {
  auto f = build();
  start();
  response_.add("ETag", "\"v1-abc\"");
  run(*f);
  EXPECT_EQ(field("ETag"), "W/\"v1-abc\"");

  start();
  response_.add("ETag", "W/\"already\"");
  run(*f);
  EXPECT_EQ(field("ETag"), "W/\"already\"");

  start();
  response_.add("ETag", "not-quoted");  // not an entity-tag: cannot be made weak
  run(*f);
  EXPECT_EQ(field("ETag"), "<none>");

  start({});  // sent as is: the strong validator stays true
  response_.add("ETag", "\"v1-abc\"");
  run(*f);
  EXPECT_EQ(field("ETag"), "\"v1-abc\"");
}

// Responses left untouched

TEST_F(CompressFilterTest, AlreadyEncodedResponseIsUntouched) {
  auto f = build();
  for (auto encoding : {"gzip", "br", "identity, gzip", "deflate"}) {
    start();
    response_.add("Content-Encoding", encoding);
    response_.add("ETag", "\"x\"");
    const std::string before = head();
    run(*f);
    EXPECT_EQ(head(), before) << encoding;
    EXPECT_EQ(ctx_.response_encoder, nullptr) << encoding;
  }
}

TEST_F(CompressFilterTest, ResponsesWithoutABodyOrWithRangesAreUntouched) {
  auto f = build();
  for (int status : {101, 204, 206, 304}) {
    start();
    ctx_.status = status;
    ctx_.response_has_body = status == 206;  // as the codec sets it
    if (status == 206) {
      response_.add("Content-Range", "bytes 0-4095/10000");
    }
    const std::string before = head();
    run(*f);
    EXPECT_EQ(head(), before) << status;
    EXPECT_EQ(ctx_.response_encoder, nullptr) << status;
  }
  start();
  ctx_.method = "HEAD";
  ctx_.response_has_body = false;
  const std::string before = head();
  run(*f);
  EXPECT_EQ(head(), before);
  EXPECT_EQ(ctx_.response_encoder, nullptr);
}

TEST_F(CompressFilterTest, NoTransformIsRespected) {
  auto f = build();
  for (auto cache_control : {"no-transform", "public, No-Transform, max-age=60"}) {
    start();
    response_.add("Cache-Control", cache_control);
    const std::string before = head();
    run(*f);
    EXPECT_EQ(head(), before) << cache_control;
    EXPECT_EQ(ctx_.response_encoder, nullptr);
  }
  start();
  response_.add("Cache-Control", "max-age=60");
  response_.add("Cache-Control", "no-transform");
  run(*f);
  EXPECT_EQ(ctx_.response_encoder, nullptr);
}

TEST_F(CompressFilterTest, ProxyErrorsAreCompressedByTheSameRules) {
  auto f = build("{min_size: 0}");
  EXPECT_TRUE(compressed(*f, [&] {
    ctx_.status = 502;
    ctx_.local_reply = true;
    response_.set("Content-Type", "application/json");
    response_.set("Content-Length", "40");
  }));
}

// Types

TEST_F(CompressFilterTest, DefaultTypesAreTextJsonJavascriptAndSvg) {
  auto f = build();
  for (auto type : {"text/html", "text/plain", "text/css", "text/event-stream", "application/json",
                    "application/javascript", "image/svg+xml"}) {
    EXPECT_TRUE(compressed(*f, [&] { response_.set("Content-Type", type); })) << type;
  }
  for (auto type : {"image/png", "application/octet-stream", "application/jsonx", "texts/plain",
                    "text", "text/", "application/zip", ""}) {
    EXPECT_FALSE(compressed(*f, [&] { response_.set("Content-Type", type); })) << type;
    EXPECT_EQ(field("Vary"), "<none>") << type;
  }
  EXPECT_FALSE(compressed(*f, [&] { response_.remove("Content-Type"); }));
}

TEST_F(CompressFilterTest, TypeMatchIgnoresCaseAndParameters) {
  auto f = build();
  for (auto type : {"Text/HTML", "APPLICATION/JSON; charset=UTF-8", " application/json ;q=1",
                    "image/SVG+xml;charset=utf-8"}) {
    EXPECT_TRUE(compressed(*f, [&] { response_.set("Content-Type", type); })) << type;
  }
}

TEST_F(CompressFilterTest, TypesOptionReplacesTheDefaultsAndTakesWildcards) {
  auto f = build("{types: [application/*, Text/CSV]}");
  ASSERT_NE(f, nullptr);
  for (auto type : {"application/xml", "application/json; charset=utf-8", "text/csv"}) {
    EXPECT_TRUE(compressed(*f, [&] { response_.set("Content-Type", type); })) << type;
  }
  for (auto type : {"text/html", "text/csvx", "image/svg+xml", "applications/xml"}) {
    EXPECT_FALSE(compressed(*f, [&] { response_.set("Content-Type", type); })) << type;
  }
}

// Size

TEST_F(CompressFilterTest, MinSizeAppliesToAKnownLength) {
  auto f = build();  // 1KiB
  EXPECT_FALSE(compressed(*f, [&] { response_.set("Content-Length", "1023"); }));
  EXPECT_EQ(field("Vary"), "Accept-Encoding");  // the type is compressible
  EXPECT_EQ(field("Content-Length"), "1023");
  EXPECT_TRUE(compressed(*f, [&] { response_.set("Content-Length", "1024"); }));

  auto big = build("{min_size: 10KiB}");
  EXPECT_FALSE(compressed(*big, [&] { response_.set("Content-Length", "10239"); }));
  EXPECT_TRUE(compressed(*big, [&] { response_.set("Content-Length", "10240"); }));
}

TEST_F(CompressFilterTest, UnknownLengthIsCompressed) {
  auto f = build("{min_size: 1MiB}");
  EXPECT_TRUE(compressed(*f, [&] { response_.remove("Content-Length"); }));
}

TEST_F(CompressFilterTest, EmptyBodyIsNeverCompressed) {
  auto f = build("{min_size: 0}");
  EXPECT_TRUE(compressed(*f, [&] { response_.set("Content-Length", "1"); }));
  EXPECT_FALSE(compressed(*f, [&] { response_.set("Content-Length", "0"); }));
}

// Metrics

TEST_F(CompressFilterTest, CountsResponsesAndBytesByEncoding) {
  auto f = build();
  start({"gzip"});
  run(*f);
  const std::string body = text_body(64 * kKiB);
  std::string out;
  ASSERT_TRUE(ctx_.response_encoder->encode(body, Mode::finish, out));
  start({"br"});
  run(*f);
  start({});
  run(*f);
  start({"gzip"});
  response_.set("Content-Type", "image/png");  // not compressible: not counted
  run(*f);
  EXPECT_EQ(responses("gzip"), 1u);
  EXPECT_EQ(responses("br"), 1u);
  EXPECT_EQ(responses("identity"), 1u);
  auto& in = metrics_.counter("ward_compress_input_bytes_total", "", {"filter", "encoding"});
  auto& sent = metrics_.counter("ward_compress_output_bytes_total", "", {"filter", "encoding"});
  EXPECT_EQ(in.value({"api.compress", "gzip"}), body.size());
  EXPECT_EQ(sent.value({"api.compress", "gzip"}), out.size());
}

// Options

TEST_F(CompressFilterTest, EmptyOptionsMeanTheDefaults) {
  EXPECT_NE(build("{}"), nullptr);
  EXPECT_NE(build("~"), nullptr);
  EXPECT_NE(build("{types: [text/*], min_size: 0, algorithms: [gzip], gzip_level: 9, "
                  "br_quality: 0}"),
            nullptr);
  EXPECT_TRUE(errors().empty());
}

TEST_F(CompressFilterTest, UnknownOptionIsAnErrorWithASuggestion) {
  EXPECT_THAT(rejected("{typs: [text/html]}"),
              ElementsAre("test.yaml:1:2: unknown key 'typs' in compress (did you mean 'types'?)"));
}

TEST_F(CompressFilterTest, TypesMustBeAListOfMediaTypes) {
  EXPECT_THAT(rejected("types: text/html"),
              ElementsAre("test.yaml:1:8: compress.types: expected a list, got 'text/html'"));
  EXPECT_THAT(rejected("types: []"),
              ElementsAre("test.yaml:1:8: compress.types: at least one media type is required"));
  EXPECT_THAT(
      rejected("types:\n  - text/html\n  - html\n  - '*/*'\n  - text/ html\n  - {a: b}\n"
               "  - text/html; charset=utf-8\n  - text/**\n"),
      ElementsAre("test.yaml:3:5: compress.types[1]: expected a media type such as text/html or "
                  "text/*, got 'html'",
                  "test.yaml:4:5: compress.types[2]: expected a media type such as text/html or "
                  "text/*, got '*/*'",
                  "test.yaml:5:5: compress.types[3]: expected a media type such as text/html or "
                  "text/*, got 'text/ html'",
                  "test.yaml:6:5: compress.types[4]: expected a string, got a map",
                  "test.yaml:7:5: compress.types[5]: expected a media type such as text/html or "
                  "text/*, got 'text/html; charset=utf-8'",
                  "test.yaml:8:5: compress.types[6]: expected a media type such as text/html or "
                  "text/*, got 'text/**'"));
}

TEST_F(CompressFilterTest, MinSizeMustBeASize) {
  EXPECT_THAT(rejected("min_size: 1KB"),
              ElementsAre("test.yaml:1:11: compress.min_size: expected a size such as 512, "
                          "16KiB, 10MiB or 1GiB, got '1KB'"));
  EXPECT_THAT(rejected("min_size: -1"),
              ElementsAre("test.yaml:1:11: compress.min_size: expected a size such as 512, "
                          "16KiB, 10MiB or 1GiB, got '-1'"));
}

TEST_F(CompressFilterTest, AlgorithmsMustBeKnownAndListedOnce) {
  EXPECT_THAT(rejected("algorithms: [br, deflate, gzp, gzip, br]"),
              ElementsAre("test.yaml:1:18: compress.algorithms[1]: unknown algorithm 'deflate' "
                          "(expected br or gzip)",
                          "test.yaml:1:27: compress.algorithms[2]: unknown algorithm 'gzp' "
                          "(expected br or gzip; did you mean 'gzip'?)",
                          "test.yaml:1:38: compress.algorithms[4]: 'br' is listed twice"));
  EXPECT_THAT(rejected("algorithms: []"),
              ElementsAre("test.yaml:1:13: compress.algorithms: at least one algorithm is "
                          "required"));
  EXPECT_THAT(rejected("algorithms: gzip"),
              ElementsAre("test.yaml:1:13: compress.algorithms: expected a list, got 'gzip'"));
}

TEST_F(CompressFilterTest, LevelsMustBeInRange) {
  EXPECT_THAT(rejected("gzip_level: 0"),
              ElementsAre("test.yaml:1:13: compress.gzip_level: expected a whole number from 1 "
                          "to 9, got '0'"));
  EXPECT_THAT(rejected("gzip_level: fast"),
              ElementsAre("test.yaml:1:13: compress.gzip_level: expected a whole number from 1 "
                          "to 9, got 'fast'"));
  EXPECT_THAT(rejected("br_quality: 11"),
              ElementsAre("test.yaml:1:13: compress.br_quality: expected a whole number from 0 "
                          "to 9, got '11'"));
}

TEST_F(CompressFilterTest, EveryErrorIsReportedAtItsLine) {
  EXPECT_THAT(rejected("types: [text/html]\n"
                       "min_size: big\n"
                       "algorithms: [zstd]\n"
                       "gzip_level: 10\n"
                       "br_qualty: 5\n"),
              ElementsAre(StartsWith("test.yaml:2:11: compress.min_size: "),
                          StartsWith("test.yaml:3:14: compress.algorithms[0]: "),
                          StartsWith("test.yaml:4:13: compress.gzip_level: "),
                          "test.yaml:5:1: unknown key 'br_qualty' in compress (did you mean "
                          "'br_quality'?)"));
}

}  // namespace
}  // namespace ward::filters
