#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "proxy/http/h1_parser.h"

namespace ward::http {
namespace {

struct Decoded {
  std::string body;
  bool done = false;
  ParseStatus status = ParseStatus::ok;
  size_t consumed = 0;  // input bytes used in all
  size_t spans = 0;     // non-empty data spans handed out
};

class BodyDecoderTest : public ::testing::Test {
 protected:
  // Feeds `input` in pieces of at most `piece` bytes, the way a connection
  // would: unconsumed bytes stay buffered and are offered again with the
  // next piece. Stops at done or at the first error.
  static Decoded decode(BodyDecoder decoder, std::string_view input, size_t piece) {
    Decoded out;
    std::string buffered;
    size_t offered = 0;
    while (true) {
      if (offered < input.size()) {
        size_t n = std::min(piece, input.size() - offered);
        buffered.append(input.substr(offered, n));
        offered += n;
      }
      bool progressed = false;
      while (true) {
        BodyDecoder::Step s = decoder.feed(buffered);
        EXPECT_LE(s.consumed, buffered.size());
        if (!s.data.empty()) {
          // The span lies within the consumed input.
          EXPECT_GE(s.data.data(), buffered.data());
          EXPECT_LE(s.data.data() + s.data.size(), buffered.data() + s.consumed);
          out.body.append(s.data);
          ++out.spans;
        }
        out.consumed += s.consumed;
        buffered.erase(0, s.consumed);
        if (s.error.status != ParseStatus::ok) {
          out.status = s.error.status;
          return out;
        }
        if (s.done) {
          out.done = true;
          return out;
        }
        if (s.consumed == 0) {
          break;
        }
        progressed = true;
      }
      if (offered >= input.size() && !progressed) {
        return out;
      }
    }
  }

  static Decoded chunked(std::string_view input, size_t piece = 1 << 20) {
    return decode(BodyDecoder::for_kind(BodyKind::chunked, 0), input, piece);
  }

  // The whole input at once and one byte at a time must agree.
  static Decoded chunked_both_ways(std::string_view input) {
    Decoded whole = chunked(input);
    Decoded bytes = chunked(input, 1);
    EXPECT_EQ(whole.body, bytes.body) << input;
    EXPECT_EQ(whole.done, bytes.done) << input;
    EXPECT_EQ(whole.status, bytes.status) << input;
    EXPECT_EQ(whole.consumed, bytes.consumed) << input;
    return whole;
  }
};

TEST_F(BodyDecoderTest, NoneIsDoneAtOnce) {
  BodyDecoder d = BodyDecoder::for_kind(BodyKind::none, 0);
  EXPECT_TRUE(d.done());
  BodyDecoder::Step s = d.feed("GET / HTTP/1.1\r\n");
  EXPECT_TRUE(s.done);
  EXPECT_EQ(s.consumed, 0u);
  EXPECT_TRUE(s.data.empty());
  EXPECT_FALSE(d.eof_completes());
  EXPECT_TRUE(BodyDecoder().done());
}

TEST_F(BodyDecoderTest, ContentLengthStopsAtTheLength) {
  BodyDecoder d = BodyDecoder::for_kind(BodyKind::content_length, 5);
  EXPECT_FALSE(d.done());
  BodyDecoder::Step s = d.feed("hel");
  EXPECT_EQ(s.data, "hel");
  EXPECT_EQ(s.consumed, 3u);
  EXPECT_FALSE(s.done);
  EXPECT_EQ(d.remaining_length(), 2u);
  s = d.feed("loGET / HTTP/1.1\r\n");  // the next pipelined request follows
  EXPECT_EQ(s.data, "lo");
  EXPECT_EQ(s.consumed, 2u);
  EXPECT_TRUE(s.done);
  EXPECT_TRUE(d.done());
  EXPECT_EQ(d.body_bytes(), 5u);
  EXPECT_FALSE(d.eof_completes());
  s = d.feed("more");
  EXPECT_TRUE(s.done);
  EXPECT_EQ(s.consumed, 0u);
}

TEST_F(BodyDecoderTest, ContentLengthZeroIsDoneAtOnce) {
  BodyDecoder d = BodyDecoder::for_kind(BodyKind::content_length, 0);
  EXPECT_TRUE(d.done());
  EXPECT_TRUE(d.feed("x").done);
}

TEST_F(BodyDecoderTest, ContentLengthByteAtATimeMatchesAllAtOnce) {
  std::string body(1000, 'x');
  auto whole = decode(BodyDecoder::for_kind(BodyKind::content_length, 1000), body + "tail", 5000);
  auto bytes = decode(BodyDecoder::for_kind(BodyKind::content_length, 1000), body + "tail", 1);
  EXPECT_EQ(whole.body, body);
  EXPECT_EQ(bytes.body, body);
  EXPECT_TRUE(whole.done);
  EXPECT_TRUE(bytes.done);
  EXPECT_EQ(whole.consumed, 1000u);
  EXPECT_EQ(bytes.consumed, 1000u);
}

TEST_F(BodyDecoderTest, UntilCloseTakesEverythingAndEndsAtEof) {
  BodyDecoder d = BodyDecoder::for_kind(BodyKind::until_close, 0);
  EXPECT_TRUE(d.eof_completes());
  BodyDecoder::Step s = d.feed("abc");
  EXPECT_EQ(s.data, "abc");
  EXPECT_EQ(s.consumed, 3u);
  EXPECT_FALSE(s.done);
  s = d.feed("\r\n0\r\n\r\n");
  EXPECT_EQ(s.data, "\r\n0\r\n\r\n");
  EXPECT_FALSE(d.done());
  EXPECT_EQ(d.body_bytes(), 10u);
}

TEST_F(BodyDecoderTest, ChunkedBodyIsDecoded) {
  Decoded d = chunked_both_ways("5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n");
  EXPECT_EQ(d.body, "hello, world");
  EXPECT_TRUE(d.done);
  EXPECT_EQ(d.status, ParseStatus::ok);
}

TEST_F(BodyDecoderTest, ChunkedStopsAtTheEndOfTheMessage) {
  std::string body = "3\r\nabc\r\n0\r\n\r\n";
  Decoded d = chunked_both_ways(body + "GET / HTTP/1.1\r\n\r\n");
  EXPECT_TRUE(d.done);
  EXPECT_EQ(d.consumed, body.size());
}

TEST_F(BodyDecoderTest, ChunkedHandsOutOneSpanPerCall) {
  BodyDecoder d = BodyDecoder::for_kind(BodyKind::chunked, 0);
  std::string_view in = "2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n";
  BodyDecoder::Step s = d.feed(in);
  EXPECT_EQ(s.data, "ab");
  in.remove_prefix(s.consumed);
  s = d.feed(in);
  EXPECT_EQ(s.data, "cd");
  in.remove_prefix(s.consumed);
  s = d.feed(in);
  EXPECT_TRUE(s.data.empty());
  EXPECT_TRUE(s.done);
  EXPECT_EQ(s.consumed, in.size());
  EXPECT_EQ(d.body_bytes(), 4u);
}

TEST_F(BodyDecoderTest, ChunkSizeIsHexInEitherCaseWithLeadingZeros) {
  std::string data(0x1aF, 'z');
  Decoded d = chunked_both_ways("001aF\r\n" + data + "\r\n0000\r\n\r\n");
  EXPECT_EQ(d.body, data);
  EXPECT_TRUE(d.done);
}

TEST_F(BodyDecoderTest, ChunkExtensionsAreSkipped) {
  Decoded d = chunked_both_ways(
      "5;name=value\r\nhello\r\n"
      "6 ; a=\"quoted; \\\"x\" ;b\r\n world\r\n"
      "0;last\r\n\r\n");
  EXPECT_EQ(d.body, "hello world");
  EXPECT_TRUE(d.done);
}

TEST_F(BodyDecoderTest, TrailersAreReadAndDropped) {
  Decoded d = chunked_both_ways(
      "4\r\nwiki\r\n0\r\nExpires: Wed, 21 Oct 2015 07:28:00 GMT\r\nX-Checksum: abc\t1\r\n"
      "X-Empty:\r\n\r\n");
  EXPECT_EQ(d.body, "wiki");
  EXPECT_TRUE(d.done);
}

TEST_F(BodyDecoderTest, ByteAtATimeMatchesAllAtOnceForValidAndInvalidBodies) {
  std::vector<std::string> inputs = {
      "5\r\nhello\r\n0\r\n\r\n",
      "a;x=y\r\n0123456789\r\n0\r\nT: v\r\n\r\n",
      "5\r\nhelloX\r\n",
      "5\r\nhello\n0\r\n\r\n",
      "fffffffffffffffff\r\n",
      "5\nhello\r\n",
      "5 \r\nhello\r\n",
      "0\r\n folded\r\n\r\n",
      "3\r\nab",
      "0\r\nT: v\r\n",
  };
  for (const auto& in : inputs) {
    chunked_both_ways(in);
  }
}

TEST_F(BodyDecoderTest, IncompleteChunkedBodyWaitsForMore) {
  Decoded d = chunked("5\r\nhel");
  EXPECT_EQ(d.body, "hel");
  EXPECT_FALSE(d.done);
  EXPECT_EQ(d.status, ParseStatus::ok);
  d = chunked("5\r\nhello\r\n0\r\n");
  EXPECT_FALSE(d.done);
  EXPECT_EQ(d.status, ParseStatus::ok);
}

TEST_F(BodyDecoderTest, HugeChunkSizeOverflowIsRejected) {
  // 17 hex digits: more than 64 bits. Wrapping would make it a small size.
  EXPECT_EQ(chunked_both_ways("10000000000000005\r\nhello\r\n0\r\n\r\n").status,
            ParseStatus::bad_request);
  EXPECT_EQ(chunked_both_ways("fffffffffffffffff\r\n").status, ParseStatus::bad_request);
  // 16 digits fit: accepted, and then waits for that much data.
  Decoded d = chunked_both_ways("ffffffffffffffff\r\nabc");
  EXPECT_EQ(d.status, ParseStatus::ok);
  EXPECT_EQ(d.body, "abc");
  EXPECT_FALSE(d.done);
}

TEST_F(BodyDecoderTest, MalformedChunkSizeIsRejected) {
  for (const char* in :
       {"\r\n", "g\r\n", "-5\r\nhello\r\n", "+5\r\n", " 5\r\n", "0x5\r\n", "5 \r\nhello\r\n",
        "5 x\r\n", "5\tx\r\n", "5\nhello\r\n", "5\rhello\r\n", "5,6\r\n", "5 5\r\n"}) {
    EXPECT_EQ(chunked_both_ways(in).status, ParseStatus::bad_request) << in;
  }
}

TEST_F(BodyDecoderTest, ChunkDataMustBeFollowedByExactlyCrlf) {
  for (const char* in :
       {"5\r\nhelloX\r\n0\r\n\r\n", "5\r\nhello\n0\r\n\r\n", "5\r\nhello\r0\r\n\r\n",
        "5\r\nhello \r\n0\r\n\r\n", "5\r\nhello\r\r\n0\r\n\r\n"}) {
    EXPECT_EQ(chunked_both_ways(in).status, ParseStatus::bad_request) << in;
  }
}

TEST_F(BodyDecoderTest, ControlBytesInChunkExtensionAreRejected) {
  EXPECT_EQ(chunked_both_ways(std::string("5;a\0b\r\nhello\r\n", 14)).status,
            ParseStatus::bad_request);
  EXPECT_EQ(chunked_both_ways("5;a\nb\r\nhello\r\n").status, ParseStatus::bad_request);
  EXPECT_EQ(chunked_both_ways("5;a\rb\r\nhello\r\n").status, ParseStatus::bad_request);
}

TEST_F(BodyDecoderTest, OverlongChunkSizeLineIsRejected) {
  std::string ext(BodyDecoder::kMaxLine, 'e');
  EXPECT_EQ(chunked_both_ways("5;" + ext + "\r\nhello\r\n0\r\n\r\n").status,
            ParseStatus::bad_request);
  std::string zeros(BodyDecoder::kMaxLine + 1, '0');
  EXPECT_EQ(chunked_both_ways(zeros + "5\r\nhello\r\n").status, ParseStatus::bad_request);
  // Just under the bound is fine.
  std::string short_ext(BodyDecoder::kMaxLine - 4, 'e');
  EXPECT_TRUE(chunked_both_ways("5;" + short_ext + "\r\nhello\r\n0\r\n\r\n").done);
}

TEST_F(BodyDecoderTest, MalformedTrailersAreRejected) {
  for (const std::string& in : std::vector<std::string>{
           "0\r\n folded: x\r\n\r\n", "0\r\nT : v\r\n\r\n", "0\r\nNoColon\r\n\r\n",
           "0\r\n: v\r\n\r\n", "0\r\nT: v\n\r\n", "0\r\nT: v\r\n\n", "0\r\nT: a\rb\r\n\r\n",
           std::string("0\r\nT: a\0b\r\n\r\n", 13), "0\r\n\rx"}) {
    EXPECT_EQ(chunked_both_ways(in).status, ParseStatus::bad_request) << in;
  }
}

TEST_F(BodyDecoderTest, OverlongTrailerLineIsRejected) {
  std::string line = "X: " + std::string(BodyDecoder::kMaxLine, 'v');
  EXPECT_EQ(chunked_both_ways("0\r\n" + line + "\r\n\r\n").status, ParseStatus::bad_request);
}

TEST_F(BodyDecoderTest, TrailerSectionOverTheBoundIsRejected) {
  std::string trailers;
  while (trailers.size() <= BodyDecoder::kMaxTrailerSize) {
    trailers += "X-T: " + std::string(100, 'v') + "\r\n";
  }
  EXPECT_EQ(chunked_both_ways("0\r\n" + trailers + "\r\n").status, ParseStatus::bad_request);
}

TEST_F(BodyDecoderTest, ErrorIsSticky) {
  BodyDecoder d = BodyDecoder::for_kind(BodyKind::chunked, 0);
  BodyDecoder::Step s = d.feed("zz");
  ASSERT_EQ(s.error.status, ParseStatus::bad_request);
  EXPECT_STRNE(s.error.reason, "");
  s = d.feed("5\r\nhello\r\n0\r\n\r\n");
  EXPECT_EQ(s.error.status, ParseStatus::bad_request);
  EXPECT_TRUE(s.data.empty());
  EXPECT_FALSE(d.done());
}

TEST_F(BodyDecoderTest, EmptyInputConsumesNothing) {
  BodyDecoder d = BodyDecoder::for_kind(BodyKind::chunked, 0);
  BodyDecoder::Step s = d.feed("");
  EXPECT_EQ(s.consumed, 0u);
  EXPECT_FALSE(s.done);
  EXPECT_EQ(s.error.status, ParseStatus::ok);
}

}  // namespace
}  // namespace ward::http
