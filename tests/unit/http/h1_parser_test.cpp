#include "proxy/http/h1_parser.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/unit/http/alloc_counter.h"

namespace ward::http {
namespace {

// ---------------------------------------------------------------------------
// find_head_end

class FindHeadEndTest : public ::testing::Test {
 protected:
  // One call with the whole buffer.
  ParseError at_once(std::string_view buf, bool is_request = true) {
    size_t scanned = 0;
    head_size_ = 0;
    return find_head_end(buf, limits_, is_request, scanned, head_size_);
  }

  // The buffer grows one byte per call, as from a slow client; stops at the
  // first result other than incomplete.
  ParseError bytewise(std::string_view buf, bool is_request = true) {
    size_t scanned = 0;
    head_size_ = 0;
    ParseError e{ParseStatus::incomplete, ""};
    for (size_t n = 1; n <= buf.size(); ++n) {
      e = find_head_end(buf.substr(0, n), limits_, is_request, scanned, head_size_);
      if (e.status != ParseStatus::incomplete) {
        return e;
      }
    }
    return e;
  }

  HeadLimits limits_;
  size_t head_size_ = 0;
};

TEST_F(FindHeadEndTest, FindsEndOfCompleteHead) {
  std::string req = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  EXPECT_EQ(at_once(req).status, ParseStatus::ok);
  EXPECT_EQ(head_size_, req.size());
}

TEST_F(FindHeadEndTest, HeadSizeExcludesBodyAndPipelinedBytes) {
  std::string head = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n";
  EXPECT_EQ(at_once(head + "bodyGET / HTTP/1.1\r\n\r\n").status, ParseStatus::ok);
  EXPECT_EQ(head_size_, head.size());
}

TEST_F(FindHeadEndTest, IncompleteHeadAsksForMore) {
  EXPECT_EQ(at_once("GET / HTTP/1.1\r\nHost: a\r\n").status, ParseStatus::incomplete);
  EXPECT_EQ(at_once("GET / HTTP/1.1\r\nHost: a\r\n\r").status, ParseStatus::incomplete);
  EXPECT_EQ(at_once("").status, ParseStatus::incomplete);
}

TEST_F(FindHeadEndTest, ByteAtATimeGivesTheSameResultAsAllAtOnce) {
  std::vector<std::string> inputs = {
      "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
      "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nrest",
      "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n\r\n",
      "GET / HTTP/1.1\nHost: a\n\n",
      "GET / HTTP/1.1\r\nHost: a\n\r\n",
      "GET /" + std::string(9000, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n",
      "GET /" + std::string(20000, 'a'),
      "GET / HTTP/1.1\r\nX: " + std::string(20000, 'a') + "\r\n\r\n",
      "GET / HTTP/1.1\r\n" + std::string(20000, '\r'),
  };
  for (const auto& in : inputs) {
    ParseError whole = at_once(in);
    size_t whole_size = head_size_;
    ParseError pieces = bytewise(in);
    EXPECT_EQ(whole.status, pieces.status) << in.substr(0, 60);
    EXPECT_EQ(whole_size, head_size_) << in.substr(0, 60);
  }
}

TEST_F(FindHeadEndTest, UnterminatedLongRequestLineIsUriTooLong) {
  std::string req = "GET /" + std::string(limits_.max_uri_size + 100, 'a');
  EXPECT_EQ(at_once(req).status, ParseStatus::uri_too_long);
  EXPECT_EQ(bytewise(req).status, ParseStatus::uri_too_long);
}

TEST_F(FindHeadEndTest, LongRequestLineIsUriTooLongBeforeHeaderTooLarge) {
  // Over both limits: the request line alone is the problem, so 414.
  std::string req = "GET /" + std::string(limits_.max_header_size + 10, 'a') + " HTTP/1.1\r\n";
  EXPECT_EQ(at_once(req).status, ParseStatus::uri_too_long);
  limits_.max_header_size = 1024;
  limits_.max_uri_size = 4096;
  // Head limit smaller than the URI limit: a 2000-byte target is within the
  // URI limit, so it is the head that is too large.
  EXPECT_EQ(at_once("GET /" + std::string(2000, 'a')).status, ParseStatus::header_too_large);
  EXPECT_EQ(at_once("GET /" + std::string(5000, 'a')).status, ParseStatus::uri_too_long);
}

TEST_F(FindHeadEndTest, CompleteHeadOverTheLimitWithLongTargetIsUriTooLong) {
  limits_.max_uri_size = 100;
  limits_.max_header_size = 1000;
  std::string req =
      "GET /" + std::string(150, 'a') + " HTTP/1.1\r\nX: " + std::string(1000, 'b') + "\r\n\r\n";
  EXPECT_EQ(at_once(req).status, ParseStatus::uri_too_long);
}

TEST_F(FindHeadEndTest, TooManyHeaderBytesIsHeaderTooLarge) {
  std::string req = "GET / HTTP/1.1\r\nX: " + std::string(limits_.max_header_size, 'a');
  EXPECT_EQ(at_once(req).status, ParseStatus::header_too_large);
  EXPECT_EQ(bytewise(req).status, ParseStatus::header_too_large);
  // A complete head over the limit is too large as well.
  EXPECT_EQ(at_once(req + "\r\n\r\n").status, ParseStatus::header_too_large);
}

TEST_F(FindHeadEndTest, HeadExactlyAtTheLimitIsAccepted) {
  std::string start = "GET / HTTP/1.1\r\nX: ";
  std::string req =
      start + std::string(limits_.max_header_size - start.size() - 4, 'a') + "\r\n\r\n";
  ASSERT_EQ(req.size(), limits_.max_header_size);
  EXPECT_EQ(at_once(req).status, ParseStatus::ok);
  EXPECT_EQ(at_once(req.substr(0, req.size() - 4) + "a\r\n\r\n").status,
            ParseStatus::header_too_large);
}

TEST_F(FindHeadEndTest, ResponsesHaveNoUriLimit) {
  std::string resp = "HTTP/1.1 200 " + std::string(limits_.max_uri_size + 100, 'a');
  EXPECT_EQ(at_once(resp, false).status, ParseStatus::incomplete);
  EXPECT_EQ(at_once(resp + std::string(limits_.max_header_size, 'a'), false).status,
            ParseStatus::header_too_large);
}

TEST_F(FindHeadEndTest, BareLfHeadEndsSoTheParserCanRejectIt) {
  EXPECT_EQ(at_once("GET / HTTP/1.1\nHost: a\n\n").status, ParseStatus::ok);
  RequestHead head;
  EXPECT_EQ(parse_request_head("GET / HTTP/1.1\nHost: a\n\n", limits_, head).status,
            ParseStatus::bad_request);
}

// ---------------------------------------------------------------------------
// parse_request_head

class H1ParserTest : public ::testing::Test {
 protected:
  ParseStatus parse(std::string_view head) {
    last_ = parse_request_head(head, limits_, head_);
    return last_.status;
  }
  // Request line + "Host: a" + extra field lines + the empty line.
  ParseStatus parse_with(std::string_view fields, std::string_view start = "GET / HTTP/1.1") {
    std::string head(start);
    head += "\r\nHost: a\r\n";
    head += fields;
    head += "\r\n";
    return parse(head);
  }

  HeadLimits limits_;
  RequestHead head_;
  ParseError last_;
};

TEST_F(H1ParserTest, SimpleGetIsParsed) {
  ASSERT_EQ(parse("GET /index.html HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"),
            ParseStatus::ok);
  EXPECT_EQ(head_.method, Method::get);
  EXPECT_EQ(head_.method_text, "GET");
  EXPECT_EQ(head_.target, "/index.html");
  EXPECT_EQ(head_.version_minor, 1);
  EXPECT_EQ(head_.headers.get("host"), "example.com");
  EXPECT_EQ(head_.headers.get("accept"), "*/*");
  EXPECT_EQ(head_.headers.size(), 2u);
  EXPECT_EQ(head_.body, BodyKind::none);
  EXPECT_TRUE(head_.keep_alive);
  EXPECT_FALSE(head_.expect_continue);
  EXPECT_FALSE(head_.upgrade_websocket);
}

TEST_F(H1ParserTest, MethodsAreRecognisedCaseSensitively) {
  struct Case {
    const char* text;
    Method method;
  };
  for (auto c :
       {Case{"GET", Method::get}, Case{"HEAD", Method::head}, Case{"POST", Method::post},
        Case{"PUT", Method::put}, Case{"DELETE", Method::del}, Case{"OPTIONS", Method::options},
        Case{"PATCH", Method::patch}, Case{"TRACE", Method::trace}, Case{"PURGE", Method::other},
        Case{"get", Method::other}}) {
    ASSERT_EQ(parse_with("", std::string(c.text) + " / HTTP/1.1"), ParseStatus::ok) << c.text;
    EXPECT_EQ(head_.method, c.method) << c.text;
    EXPECT_EQ(head_.method_text, c.text);
  }
}

TEST_F(H1ParserTest, IdempotentFollowsRfc9110) {
  for (const char* m : {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}) {
    ASSERT_EQ(parse_with("", std::string(m) + " / HTTP/1.1"), ParseStatus::ok);
    EXPECT_TRUE(head_.idempotent()) << m;
  }
  for (const char* m : {"POST", "PATCH", "PURGE"}) {
    ASSERT_EQ(parse_with("", std::string(m) + " / HTTP/1.1"), ParseStatus::ok);
    EXPECT_FALSE(head_.idempotent()) << m;
  }
}

TEST_F(H1ParserTest, PathAndQuerySplitAtTheFirstQuestionMark) {
  ASSERT_EQ(parse_with("", "GET /a/b?x=1&y=?2 HTTP/1.1"), ParseStatus::ok);
  EXPECT_EQ(head_.path(), "/a/b");
  EXPECT_EQ(head_.query(), "x=1&y=?2");
  ASSERT_EQ(parse_with("", "GET /a/b HTTP/1.1"), ParseStatus::ok);
  EXPECT_EQ(head_.path(), "/a/b");
  EXPECT_EQ(head_.query(), "");
  ASSERT_EQ(parse_with("", "GET /? HTTP/1.1"), ParseStatus::ok);
  EXPECT_EQ(head_.path(), "/");
  EXPECT_EQ(head_.query(), "");
}

TEST_F(H1ParserTest, AsteriskFormIsOnlyForOptions) {
  ASSERT_EQ(parse_with("", "OPTIONS * HTTP/1.1"), ParseStatus::ok);
  EXPECT_EQ(head_.target, "*");
  EXPECT_EQ(head_.path(), "/");
  EXPECT_EQ(parse_with("", "GET * HTTP/1.1"), ParseStatus::bad_request);
}

TEST_F(H1ParserTest, AbsoluteFormTargetReplacesHost) {
  ASSERT_EQ(parse("GET http://Real.Example:8080/p/q?x=1 HTTP/1.1\r\nHost: other\r\n\r\n"),
            ParseStatus::ok);
  EXPECT_EQ(head_.headers.get("host"), "Real.Example:8080");
  EXPECT_EQ(head_.headers.count("host"), 1u);
  EXPECT_EQ(head_.path(), "/p/q");
  EXPECT_EQ(head_.query(), "x=1");
  ASSERT_EQ(parse("GET https://h.example HTTP/1.1\r\nHost: h.example\r\n\r\n"), ParseStatus::ok);
  EXPECT_EQ(head_.path(), "/");
  ASSERT_EQ(parse("GET http://h.example?q HTTP/1.1\r\nHost: h.example\r\n\r\n"), ParseStatus::ok);
  EXPECT_EQ(head_.path(), "/");
  EXPECT_EQ(head_.query(), "q");
}

TEST_F(H1ParserTest, MalformedAbsoluteFormIsRejected) {
  EXPECT_EQ(parse_with("", "GET http://user@h.example/ HTTP/1.1"), ParseStatus::bad_request);
  EXPECT_EQ(parse_with("", "GET http:///x HTTP/1.1"), ParseStatus::bad_request);
  EXPECT_EQ(parse_with("", "GET ftp://h.example/ HTTP/1.1"), ParseStatus::bad_request);
  EXPECT_EQ(parse_with("", "GET index.html HTTP/1.1"), ParseStatus::bad_request);
}

TEST_F(H1ParserTest, ConnectNeedsAuthorityForm) {
  ASSERT_EQ(parse_with("", "CONNECT h.example:443 HTTP/1.1"), ParseStatus::ok);
  EXPECT_EQ(head_.method, Method::connect);
  EXPECT_EQ(head_.path(), "/");
  EXPECT_EQ(parse_with("", "CONNECT /x HTTP/1.1"), ParseStatus::bad_request);
}

TEST_F(H1ParserTest, OneLeadingEmptyLineIsIgnored) {
  ASSERT_EQ(parse("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), ParseStatus::ok);
  EXPECT_EQ(head_.target, "/");
  EXPECT_EQ(parse("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), ParseStatus::bad_request);
  EXPECT_EQ(parse("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), ParseStatus::bad_request);
}

TEST_F(H1ParserTest, FieldValuesAreTrimmedAndMayHoldHtabAndObsText) {
  ASSERT_EQ(parse_with("X-A: \t v1\tv2 \t\r\nX-B:\xc3\xa9t\xc3\xa9\r\nX-C:\r\nX-D:   \r\n"),
            ParseStatus::ok);
  EXPECT_EQ(head_.headers.get("x-a"), "v1\tv2");
  EXPECT_EQ(head_.headers.get("x-b"), "\xc3\xa9t\xc3\xa9");
  EXPECT_EQ(head_.headers.get("x-c"), "");
  EXPECT_EQ(head_.headers.get("x-d"), "");
}

TEST_F(H1ParserTest, TargetMayHoldObsText) {
  ASSERT_EQ(parse_with("", "GET /caf\xc3\xa9 HTTP/1.1"), ParseStatus::ok);
  EXPECT_EQ(head_.path(), "/caf\xc3\xa9");
}

// --- keep-alive, Expect, Upgrade -------------------------------------------

TEST_F(H1ParserTest, Http11IsKeepAliveUnlessConnectionClose) {
  ASSERT_EQ(parse_with(""), ParseStatus::ok);
  EXPECT_TRUE(head_.keep_alive);
  ASSERT_EQ(parse_with("Connection: close\r\n"), ParseStatus::ok);
  EXPECT_FALSE(head_.keep_alive);
  ASSERT_EQ(parse_with("Connection: TE, Close\r\n"), ParseStatus::ok);
  EXPECT_FALSE(head_.keep_alive);
  ASSERT_EQ(parse_with("Connection: keep-alive\r\nConnection: close\r\n"), ParseStatus::ok);
  EXPECT_FALSE(head_.keep_alive);
}

TEST_F(H1ParserTest, Http10NeedsConnectionKeepAlive) {
  ASSERT_EQ(parse("GET / HTTP/1.0\r\n\r\n"), ParseStatus::ok);
  EXPECT_EQ(head_.version_minor, 0);
  EXPECT_FALSE(head_.keep_alive);
  ASSERT_EQ(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), ParseStatus::ok);
  EXPECT_TRUE(head_.keep_alive);
  ASSERT_EQ(parse("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"), ParseStatus::ok);
  EXPECT_FALSE(head_.keep_alive);
}

TEST_F(H1ParserTest, Http10WithoutHostIsAccepted) {
  EXPECT_EQ(parse("GET / HTTP/1.0\r\nAccept: */*\r\n\r\n"), ParseStatus::ok);
}

TEST_F(H1ParserTest, ExpectContinueIsCaseInsensitive) {
  ASSERT_EQ(parse_with("Expect: 100-Continue\r\nContent-Length: 3\r\n", "POST / HTTP/1.1"),
            ParseStatus::ok);
  EXPECT_TRUE(head_.expect_continue);
  ASSERT_EQ(parse_with("Expect: 100-continue\r\n"), ParseStatus::ok);
  EXPECT_TRUE(head_.expect_continue);
  ASSERT_EQ(parse_with("Expect: something-else\r\n"), ParseStatus::ok);
  EXPECT_FALSE(head_.expect_continue);
}

TEST_F(H1ParserTest, ExpectContinueInHttp10IsIgnored) {
  ASSERT_EQ(parse("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"),
            ParseStatus::ok);
  EXPECT_FALSE(head_.expect_continue);
}

TEST_F(H1ParserTest, WebSocketUpgradeNeedsGetUpgradeAndConnectionUpgrade) {
  ASSERT_EQ(parse_with("Upgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n"),
            ParseStatus::ok);
  EXPECT_TRUE(head_.upgrade_websocket);
  ASSERT_EQ(parse_with("Upgrade: websocket\r\n"), ParseStatus::ok);
  EXPECT_FALSE(head_.upgrade_websocket);
  ASSERT_EQ(parse_with("Connection: upgrade\r\n"), ParseStatus::ok);
  EXPECT_FALSE(head_.upgrade_websocket);
  ASSERT_EQ(parse_with("Upgrade: h2c\r\nConnection: upgrade\r\n"), ParseStatus::ok);
  EXPECT_FALSE(head_.upgrade_websocket);
  ASSERT_EQ(parse_with("Upgrade: websocket\r\nConnection: upgrade\r\n", "POST / HTTP/1.1"),
            ParseStatus::ok);
  EXPECT_FALSE(head_.upgrade_websocket);
  ASSERT_EQ(parse("GET / HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"),
            ParseStatus::ok);
  EXPECT_FALSE(head_.upgrade_websocket);
}

// --- framing: accepted ---------------------------------------------------

TEST_F(H1ParserTest, ContentLengthGivesALengthBody) {
  ASSERT_EQ(parse_with("Content-Length: 42\r\n", "POST / HTTP/1.1"), ParseStatus::ok);
  EXPECT_EQ(head_.body, BodyKind::content_length);
  EXPECT_EQ(head_.content_length, 42u);
  ASSERT_EQ(parse_with("Content-Length: 0\r\n", "POST / HTTP/1.1"), ParseStatus::ok);
  EXPECT_EQ(head_.body, BodyKind::content_length);
  EXPECT_EQ(head_.content_length, 0u);
  ASSERT_EQ(parse_with("Content-Length: 18446744073709551615\r\n", "POST / HTTP/1.1"),
            ParseStatus::ok);
  EXPECT_EQ(head_.content_length, 18446744073709551615u);
}

TEST_F(H1ParserTest, IdenticalDuplicateContentLengthIsAcceptedAsOne) {
  ASSERT_EQ(parse_with("Content-Length: 5\r\nContent-Length: 5\r\n"), ParseStatus::ok);
  EXPECT_EQ(head_.body, BodyKind::content_length);
  EXPECT_EQ(head_.content_length, 5u);
  // Forwarded as one plain field.
  EXPECT_EQ(head_.headers.count("content-length"), 1u);
  EXPECT_EQ(head_.headers.get("content-length"), "5");

  ASSERT_EQ(parse_with("Content-Length: 5, 5\r\n"), ParseStatus::ok);
  EXPECT_EQ(head_.content_length, 5u);
  EXPECT_EQ(head_.headers.get("content-length"), "5");

  ASSERT_EQ(parse_with("Content-Length: 5,5 ,  5\r\nContent-Length: 5\r\n"), ParseStatus::ok);
  EXPECT_EQ(head_.content_length, 5u);
}

TEST_F(H1ParserTest, ChunkedGivesAChunkedBody) {
  ASSERT_EQ(parse_with("Transfer-Encoding: chunked\r\n", "POST / HTTP/1.1"), ParseStatus::ok);
  EXPECT_EQ(head_.body, BodyKind::chunked);
  ASSERT_EQ(parse_with("Transfer-Encoding: CHUNKED \r\n", "POST / HTTP/1.1"), ParseStatus::ok);
  EXPECT_EQ(head_.body, BodyKind::chunked);
}

// --- framing: rejected ---------------------------------------------------

TEST_F(H1ParserTest, ContentLengthWithTransferEncodingIsRejected) {
  EXPECT_EQ(parse_with("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"),
            ParseStatus::bad_request);
  EXPECT_EQ(parse_with("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"),
            ParseStatus::bad_request);
  EXPECT_STREQ(last_.reason, "content-length and transfer-encoding");
}

TEST_F(H1ParserTest, DifferingDuplicateContentLengthIsRejected) {
  EXPECT_EQ(parse_with("Content-Length: 5\r\nContent-Length: 6\r\n"), ParseStatus::bad_request);
  EXPECT_EQ(parse_with("Content-Length: 5, 6\r\n"), ParseStatus::bad_request);
}

TEST_F(H1ParserTest, MalformedContentLengthIsRejected) {
  for (const char* v : {"+5", "-5", "5 5", "5a", "0x5", "", "5,", ",5", "5,,5", "1.0", "\"5\"",
                        "18446744073709551616", "99999999999999999999999"}) {
    EXPECT_EQ(parse_with(std::string("Content-Length: ") + v + "\r\n"), ParseStatus::bad_request)
        << v;
  }
}

TEST_F(H1ParserTest, TransferEncodingNotEndingInChunkedIsRejected) {
  EXPECT_EQ(parse_with("Transfer-Encoding: gzip\r\n"), ParseStatus::bad_request);
  EXPECT_EQ(parse_with("Transfer-Encoding: chunked, gzip\r\n"), ParseStatus::bad_request);
  EXPECT_EQ(parse_with("Transfer-Encoding: identity\r\n"), ParseStatus::bad_request);
  EXPECT_EQ(parse_with("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n"),
            ParseStatus::bad_request);
}

TEST_F(H1ParserTest, ChunkedAppliedTwiceIsRejected) {
  EXPECT_EQ(parse_with("Transfer-Encoding: chunked, chunked\r\n"), ParseStatus::bad_request);
  EXPECT_EQ(parse_with("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
            ParseStatus::bad_request);
}

TEST_F(H1ParserTest, MalformedTransferEncodingIsRejected) {
  for (const char* v :
       {"", ",chunked", "chunked,", "gzip, , chunked", "chunked;x=1", "g@zip, chunked",
        "\"chunked\"", "gzip;, chunked", "gzip;q, chunked", "gzip;q=\"1, chunked", "chunked x"}) {
    EXPECT_EQ(parse_with(std::string("Transfer-Encoding: ") + v + "\r\n"), ParseStatus::bad_request)
        << v;
  }
}

TEST_F(H1ParserTest, UnknownTransferCodingIsNotImplemented) {
  EXPECT_EQ(parse_with("Transfer-Encoding: gzip, chunked\r\n"), ParseStatus::not_implemented);
  EXPECT_EQ(parse_with("Transfer-Encoding: deflate, chunked\r\n"), ParseStatus::not_implemented);
  EXPECT_EQ(parse_with("Transfer-Encoding: identity, chunked\r\n"), ParseStatus::not_implemented);
  EXPECT_EQ(parse_with("Transfer-Encoding: compress\r\nTransfer-Encoding: chunked\r\n"),
            ParseStatus::not_implemented);
  EXPECT_EQ(parse_with("Transfer-Encoding: x-custom;level=\"9, a\";b=c, chunked\r\n"),
            ParseStatus::bad_request);  // a comma inside a quoted parameter splits the list
  EXPECT_EQ(parse_with("Transfer-Encoding: x-custom ; level = 9, chunked\r\n"),
            ParseStatus::not_implemented);
}

TEST_F(H1ParserTest, TransferEncodingInHttp10IsRejected) {
  EXPECT_EQ(parse("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ParseStatus::bad_request);
}

// --- field syntax --------------------------------------------------------

TEST_F(H1ParserTest, ObsFoldIsRejected) {
  EXPECT_EQ(parse_with("X-A: one\r\n two\r\n"), ParseStatus::bad_request);
  EXPECT_EQ(parse_with("X-A: one\r\n\ttwo\r\n"), ParseStatus::bad_request);
  EXPECT_STREQ(last_.reason, "obsolete line folding");
  // Whitespace before the first field line (RFC 9112 2.2).
  EXPECT_EQ(parse("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), ParseStatus::bad_request);
}

TEST_F(H1ParserTest, WhitespaceBetweenFieldNameAndColonIsRejected) {
  EXPECT_EQ(parse_with("Content-Length : 5\r\n"), ParseStatus::bad_request);
  EXPECT_STREQ(last_.reason, "whitespace before colon");
  EXPECT_EQ(parse_with("Transfer-Encoding\t: chunked\r\n"), ParseStatus::bad_request);
}

TEST_F(H1ParserTest, BareLfLineEndingIsRejected) {
  EXPECT_EQ(parse("GET / HTTP/1.1\nHost: a\r\n\r\n"), ParseStatus::bad_request);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n"), ParseStatus::bad_request);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\n\n"), ParseStatus::bad_request);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nX\n: b\r\n\r\n"), ParseStatus::bad_request);
}

TEST_F(H1ParserTest, BareCrIsRejected) {
  EXPECT_EQ(parse("GET / HTTP/1.1\rHost: a\r\n\r\n"), ParseStatus::bad_request);
  EXPECT_EQ(parse_with("X-A: a\rb\r\n"), ParseStatus::bad_request);
  EXPECT_EQ(parse_with("X-A: ab\r\r\n"), ParseStatus::bad_request);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\n\rX\r\n\r\n"), ParseStatus::bad_request);
}

TEST_F(H1ParserTest, NulAndControlBytesInValuesAreRejected) {
  for (char c : {'\0', '\x01', '\x0b', '\x0c', '\x1f', '\x7f'}) {
    std::string field = "X-A: a";
    field += c;
    field += "b\r\n";
    EXPECT_EQ(parse_with(field), ParseStatus::bad_request) << static_cast<int>(c);
  }
  EXPECT_EQ(parse_with(std::string("X-A: \0\r\n", 8)), ParseStatus::bad_request);
}

TEST_F(H1ParserTest, EveryByteAtEveryPositionOfALongValueIsJudgedAlike) {
  // Long values are scanned a word at a time; a bad byte must be caught at
  // any offset, and a good one accepted at any offset.
  for (int c = 0; c < 256; ++c) {
    bool allowed = c == '\t' || (c >= 0x20 && c != 0x7f);
    for (size_t pos = 0; pos < 40; ++pos) {
      std::string value(40, 'v');
      value[pos] = static_cast<char>(c);
      if ((c == ' ' || c == '\t') && (pos == 0 || pos == 39)) {
        continue;  // trimmed as OWS
      }
      ParseStatus st = parse_with("X-Long: " + value + "\r\n");
      if (c == '\r' && pos == 39) {
        continue;  // "\r\r\n": bare CR, rejected either way
      }
      EXPECT_EQ(st, allowed ? ParseStatus::ok : ParseStatus::bad_request) << c << " at " << pos;
      if (allowed && st == ParseStatus::ok) {
        EXPECT_EQ(head_.headers.get("x-long"), value);
      }
    }
  }
}

TEST_F(H1ParserTest, EveryByteAtEveryPositionOfALongTargetIsJudgedAlike) {
  for (int c = 0; c < 256; ++c) {
    bool allowed = c > 0x20 && c != 0x7f;
    for (size_t pos = 1; pos < 40; ++pos) {
      std::string target = "/" + std::string(39, 't');
      target[pos] = static_cast<char>(c);
      ParseStatus st = parse_with("", "GET " + target + " HTTP/1.1");
      if (allowed) {
        EXPECT_EQ(st, ParseStatus::ok) << c << " at " << pos;
        EXPECT_EQ(head_.target, target);
      } else {
        EXPECT_NE(st, ParseStatus::ok) << c << " at " << pos;
      }
    }
  }
}

TEST_F(H1ParserTest, NonTokenFieldNamesAreRejected) {
  for (const char* line : {"X@A: v\r\n", "X(A): v\r\n", "X/A: v\r\n", "\"X\": v\r\n",
                           "X\xc3\xa9: v\r\n", ": v\r\n", "NoColon\r\n"}) {
    EXPECT_EQ(parse_with(line), ParseStatus::bad_request) << line;
  }
  EXPECT_EQ(parse_with(std::string("X\0A: v\r\n", 8)), ParseStatus::bad_request);
}

TEST_F(H1ParserTest, EmptyFieldNameIsRejected) {
  EXPECT_EQ(parse_with(": value\r\n"), ParseStatus::bad_request);
  EXPECT_STREQ(last_.reason, "empty field name");
}

// --- request line --------------------------------------------------------

TEST_F(H1ParserTest, MalformedRequestLineIsRejected) {
  for (const char* line :
       {"GET  / HTTP/1.1", "GET /  HTTP/1.1", " GET / HTTP/1.1", "GET / HTTP/1.1 ", "GET /", "GET",
        "GET HTTP/1.1", "/ HTTP/1.1", "GET\t/ HTTP/1.1", "GET /\tHTTP/1.1", "GET /a b HTTP/1.1"}) {
    EXPECT_EQ(parse_with("", line), ParseStatus::bad_request) << line;
  }
}

TEST_F(H1ParserTest, InvalidMethodTokenIsRejected) {
  for (const char* line :
       {"GE(T / HTTP/1.1", "G:ET / HTTP/1.1", "GE\xc3\xa9T / HTTP/1.1", "[GET] / HTTP/1.1"}) {
    EXPECT_EQ(parse_with("", line), ParseStatus::bad_request) << line;
  }
  EXPECT_STREQ(last_.reason, "invalid method");
}

TEST_F(H1ParserTest, ControlBytesInTargetAreRejected) {
  EXPECT_EQ(parse_with("", std::string("GET /a\0b HTTP/1.1", 17)), ParseStatus::bad_request);
  EXPECT_EQ(parse_with("", "GET /a\x7f HTTP/1.1"), ParseStatus::bad_request);
}

TEST_F(H1ParserTest, WellFormedOtherVersionIsVersionUnsupported) {
  for (const char* v : {"HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "HTTP/3.0"}) {
    EXPECT_EQ(parse_with("", std::string("GET / ") + v), ParseStatus::version_unsupported) << v;
  }
}

TEST_F(H1ParserTest, MalformedVersionIsBadRequest) {
  for (const char* v : {"HTTP/1", "HTTP/11.1", "http/1.1", "HTTPS/1.1", "HTTP/1.1x", "HTTP/a.b",
                        "HTTP 1.1", "HTTP/1,1", "HTTP/2"}) {
    EXPECT_EQ(parse_with("", std::string("GET / ") + v), ParseStatus::bad_request) << v;
  }
}

TEST_F(H1ParserTest, TooManyConnectionOptionsAreRejected) {
  std::string options = "close";
  for (int i = 1; i < 64; ++i) {
    options += ", x" + std::to_string(i);
  }
  EXPECT_EQ(parse_with("Connection: " + options + "\r\n"), ParseStatus::ok);
  EXPECT_EQ(parse_with("Connection: " + options + "\r\nConnection: one-more\r\n"),
            ParseStatus::bad_request);
  EXPECT_STREQ(last_.reason, "too many connection options");
}

// --- Host ----------------------------------------------------------------

TEST_F(H1ParserTest, Http11WithoutHostIsRejected) {
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"), ParseStatus::bad_request);
  EXPECT_STREQ(last_.reason, "missing host");
}

TEST_F(H1ParserTest, TwoHostFieldsAreRejected) {
  EXPECT_EQ(parse_with("Host: b\r\n"), ParseStatus::bad_request);
  EXPECT_EQ(parse_with("host: a\r\n"), ParseStatus::bad_request);
  EXPECT_EQ(parse("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"), ParseStatus::bad_request);
}

TEST_F(H1ParserTest, InvalidHostValueIsRejected) {
  for (const char* h : {"a b", "a/b", "a@b", "a\\b", "a?b", "a#b", "a\"b"}) {
    EXPECT_EQ(parse(std::string("GET / HTTP/1.1\r\nHost: ") + h + "\r\n\r\n"),
              ParseStatus::bad_request)
        << h;
  }
  for (const char* h : {"", "a.example", "a.example:8080", "[::1]:8080", "xn--bcher-kva.example"}) {
    EXPECT_EQ(parse(std::string("GET / HTTP/1.1\r\nHost: ") + h + "\r\n\r\n"), ParseStatus::ok)
        << h;
  }
}

// --- limits --------------------------------------------------------------

TEST_F(H1ParserTest, TargetOverMaxUriSizeIsUriTooLong) {
  limits_.max_uri_size = 100;
  EXPECT_EQ(parse_with("", "GET /" + std::string(99, 'a') + " HTTP/1.1"), ParseStatus::ok);
  EXPECT_EQ(parse_with("", "GET /" + std::string(100, 'a') + " HTTP/1.1"),
            ParseStatus::uri_too_long);
}

TEST_F(H1ParserTest, HeadOverMaxHeaderSizeIsHeaderTooLarge) {
  limits_.max_header_size = 100;
  EXPECT_EQ(parse_with("X: " + std::string(100, 'a') + "\r\n"), ParseStatus::header_too_large);
  limits_.max_uri_size = 50;
  EXPECT_EQ(parse_with("X: " + std::string(100, 'a') + "\r\n",
                       "GET /" + std::string(60, 'a') + " HTTP/1.1"),
            ParseStatus::uri_too_long);
}

TEST_F(H1ParserTest, TruncatedHeadIsIncomplete) {
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\n"), ParseStatus::incomplete);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\n\r"), ParseStatus::incomplete);
  EXPECT_EQ(parse("GET / HTTP/1.1\r"), ParseStatus::incomplete);
  EXPECT_EQ(parse(""), ParseStatus::incomplete);
}

TEST_F(H1ParserTest, ReusedHeadIsClearedBetweenParses) {
  ASSERT_EQ(parse_with("Content-Length: 5\r\nConnection: close\r\nExpect: 100-continue\r\n",
                       "POST /a?b HTTP/1.1"),
            ParseStatus::ok);
  ASSERT_EQ(parse("GET /c HTTP/1.1\r\nHost: z\r\n\r\n"), ParseStatus::ok);
  EXPECT_EQ(head_.method, Method::get);
  EXPECT_EQ(head_.target, "/c");
  EXPECT_EQ(head_.body, BodyKind::none);
  EXPECT_EQ(head_.content_length, 0u);
  EXPECT_TRUE(head_.keep_alive);
  EXPECT_FALSE(head_.expect_continue);
  EXPECT_EQ(head_.headers.size(), 1u);
  EXPECT_EQ(head_.query(), "");
}

TEST_F(H1ParserTest, ParsingAgainIntoAReusedHeadAllocatesNothing) {
  std::string req =
      "POST /api/v1/items?limit=10 HTTP/1.1\r\nHost: api.example.com\r\n"
      "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)\r\n"
      "Accept: application/json\r\nContent-Length: 5, 5\r\nConnection: keep-alive\r\n"
      "Cookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\n\r\n";
  ASSERT_EQ(parse(req), ParseStatus::ok);
  testing::AllocationScope scope;
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(parse(req), ParseStatus::ok);
  }
  EXPECT_EQ(scope.allocations(), 0u);
}

// ---------------------------------------------------------------------------
// parse_response_head

class H1ResponseParserTest : public ::testing::Test {
 protected:
  ParseStatus parse(std::string_view head, Method method = Method::get) {
    last_ = parse_response_head(head, method, head_);
    return last_.status;
  }
  ParseStatus parse_with(std::string_view status_line, std::string_view fields,
                         Method method = Method::get) {
    std::string head(status_line);
    head += "\r\n";
    head += fields;
    head += "\r\n";
    return parse(head, method);
  }

  ResponseHead head_;
  ParseError last_;
};

TEST_F(H1ResponseParserTest, ContentLengthResponseIsParsed) {
  ASSERT_EQ(parse_with("HTTP/1.1 200 OK", "Content-Length: 12\r\nServer: x\r\n"), ParseStatus::ok);
  EXPECT_EQ(head_.status, 200);
  EXPECT_EQ(head_.reason, "OK");
  EXPECT_EQ(head_.version_minor, 1);
  EXPECT_EQ(head_.body, BodyKind::content_length);
  EXPECT_EQ(head_.content_length, 12u);
  EXPECT_TRUE(head_.keep_alive);
  EXPECT_EQ(head_.headers.get("server"), "x");
}

TEST_F(H1ResponseParserTest, StatusLineMayOmitTheReason) {
  ASSERT_EQ(parse_with("HTTP/1.1 200", "Content-Length: 0\r\n"), ParseStatus::ok);
  EXPECT_EQ(head_.status, 200);
  EXPECT_EQ(head_.reason, "");
  ASSERT_EQ(parse_with("HTTP/1.1 404 ", "Content-Length: 0\r\n"), ParseStatus::ok);
  EXPECT_EQ(head_.reason, "");
  ASSERT_EQ(parse_with("HTTP/1.1 404 Not  Found\t!", "Content-Length: 0\r\n"), ParseStatus::ok);
  EXPECT_EQ(head_.reason, "Not  Found\t!");
}

TEST_F(H1ResponseParserTest, ChunkedResponse) {
  ASSERT_EQ(parse_with("HTTP/1.1 200 OK", "Transfer-Encoding: chunked\r\n"), ParseStatus::ok);
  EXPECT_EQ(head_.body, BodyKind::chunked);
  EXPECT_TRUE(head_.keep_alive);
  // RFC 9112 6.3: chunked last means chunked framing.
  ASSERT_EQ(parse_with("HTTP/1.1 200 OK", "Transfer-Encoding: gzip, chunked\r\n"), ParseStatus::ok);
  EXPECT_EQ(head_.body, BodyKind::chunked);
}

TEST_F(H1ResponseParserTest, TransferEncodingNotEndingInChunkedReadsUntilClose) {
  ASSERT_EQ(parse_with("HTTP/1.1 200 OK", "Transfer-Encoding: gzip\r\n"), ParseStatus::ok);
  EXPECT_EQ(head_.body, BodyKind::until_close);
  EXPECT_FALSE(head_.keep_alive);
}

TEST_F(H1ResponseParserTest, NoLengthReadsUntilCloseAndIsNotReused) {
  ASSERT_EQ(parse_with("HTTP/1.1 200 OK", "Server: x\r\n"), ParseStatus::ok);
  EXPECT_EQ(head_.body, BodyKind::until_close);
  EXPECT_FALSE(head_.keep_alive);
}

TEST_F(H1ResponseParserTest, ResponseToHeadHasNoBody) {
  ASSERT_EQ(parse_with("HTTP/1.1 200 OK", "Content-Length: 1000\r\n", Method::head),
            ParseStatus::ok);
  EXPECT_EQ(head_.body, BodyKind::none);
  EXPECT_TRUE(head_.keep_alive);
  EXPECT_EQ(head_.headers.get("content-length"), "1000");
  ASSERT_EQ(parse_with("HTTP/1.1 200 OK", "Transfer-Encoding: chunked\r\n", Method::head),
            ParseStatus::ok);
  EXPECT_EQ(head_.body, BodyKind::none);
  ASSERT_EQ(parse_with("HTTP/1.1 200 OK", "", Method::head), ParseStatus::ok);
  EXPECT_EQ(head_.body, BodyKind::none);
  EXPECT_TRUE(head_.keep_alive);
}

TEST_F(H1ResponseParserTest, NoContentAndNotModifiedHaveNoBody) {
  ASSERT_EQ(parse_with("HTTP/1.1 204 No Content", "Content-Length: 10\r\n"), ParseStatus::ok);
  EXPECT_EQ(head_.body, BodyKind::none);
  EXPECT_TRUE(head_.keep_alive);
  ASSERT_EQ(parse_with("HTTP/1.1 304 Not Modified", "Content-Length: 10\r\n"), ParseStatus::ok);
  EXPECT_EQ(head_.body, BodyKind::none);
  EXPECT_TRUE(head_.keep_alive);
  ASSERT_EQ(parse_with("HTTP/1.1 304 Not Modified", ""), ParseStatus::ok);
  EXPECT_EQ(head_.body, BodyKind::none);
  EXPECT_TRUE(head_.keep_alive);
}

TEST_F(H1ResponseParserTest, InformationalResponsesHaveNoBody) {
  ASSERT_EQ(parse_with("HTTP/1.1 100 Continue", ""), ParseStatus::ok);
  EXPECT_EQ(head_.body, BodyKind::none);
  EXPECT_TRUE(head_.keep_alive);
  ASSERT_EQ(parse_with("HTTP/1.1 101 Switching Protocols",
                       "Upgrade: websocket\r\nConnection: Upgrade\r\n"),
            ParseStatus::ok);
  EXPECT_EQ(head_.body, BodyKind::none);
  EXPECT_FALSE(head_.keep_alive);  // the connection now speaks another protocol
}

TEST_F(H1ResponseParserTest, SuccessfulConnectBecomesATunnel) {
  ASSERT_EQ(parse_with("HTTP/1.1 200 Connection Established", "", Method::connect),
            ParseStatus::ok);
  EXPECT_EQ(head_.body, BodyKind::none);
  EXPECT_FALSE(head_.keep_alive);
  ASSERT_EQ(parse_with("HTTP/1.1 407 Auth", "Content-Length: 3\r\n", Method::connect),
            ParseStatus::ok);
  EXPECT_EQ(head_.body, BodyKind::content_length);
}

TEST_F(H1ResponseParserTest, KeepAliveFollowsVersionAndConnection) {
  ASSERT_EQ(parse_with("HTTP/1.1 200 OK", "Content-Length: 0\r\nConnection: close\r\n"),
            ParseStatus::ok);
  EXPECT_FALSE(head_.keep_alive);
  ASSERT_EQ(parse_with("HTTP/1.0 200 OK", "Content-Length: 0\r\n"), ParseStatus::ok);
  EXPECT_FALSE(head_.keep_alive);
  ASSERT_EQ(parse_with("HTTP/1.0 200 OK", "Content-Length: 0\r\nConnection: keep-alive\r\n"),
            ParseStatus::ok);
  EXPECT_TRUE(head_.keep_alive);
}

TEST_F(H1ResponseParserTest, IdenticalDuplicateContentLengthIsAccepted) {
  ASSERT_EQ(parse_with("HTTP/1.1 200 OK", "Content-Length: 7, 7\r\n"), ParseStatus::ok);
  EXPECT_EQ(head_.content_length, 7u);
  EXPECT_EQ(head_.headers.get("content-length"), "7");
}

TEST_F(H1ResponseParserTest, AmbiguousFramingIsBadResponse) {
  EXPECT_EQ(parse_with("HTTP/1.1 200 OK", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"),
            ParseStatus::bad_response);
  EXPECT_EQ(parse_with("HTTP/1.1 200 OK", "Content-Length: 5\r\nContent-Length: 6\r\n"),
            ParseStatus::bad_response);
  EXPECT_EQ(parse_with("HTTP/1.1 200 OK", "Content-Length: -1\r\n"), ParseStatus::bad_response);
  EXPECT_EQ(parse_with("HTTP/1.1 200 OK", "Transfer-Encoding: chunked, chunked\r\n"),
            ParseStatus::bad_response);
  EXPECT_EQ(parse_with("HTTP/1.1 200 OK", "Transfer-Encoding: ,\r\n"), ParseStatus::bad_response);
  EXPECT_EQ(parse_with("HTTP/1.0 200 OK", "Transfer-Encoding: chunked\r\n"),
            ParseStatus::bad_response);
  EXPECT_EQ(parse_with("HTTP/1.1 304 OK", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"),
            ParseStatus::bad_response);
}

TEST_F(H1ResponseParserTest, TooManyConnectionOptionsAreBadResponse) {
  std::string options(200, ',');
  EXPECT_EQ(parse_with("HTTP/1.1 200 OK", "Content-Length: 0\r\nConnection: " + options + "\r\n"),
            ParseStatus::bad_response);
}

TEST_F(H1ResponseParserTest, MalformedStatusLineIsBadResponse) {
  for (const char* line : {"HTTP/2.0 200 OK", "HTTP/1.1 20 OK", "HTTP/1.1 2000 OK",
                           "HTTP/1.1  200 OK", "HTTP/1.1 099 Low", "http/1.1 200 OK",
                           "HTTP/1.1 200 O\x01K", "ICY 200 OK", "HTTP/1.1 abc OK"}) {
    EXPECT_EQ(parse_with(line, "Content-Length: 0\r\n"), ParseStatus::bad_response) << line;
  }
}

TEST_F(H1ResponseParserTest, MalformedFieldLinesAreBadResponse) {
  EXPECT_EQ(parse_with("HTTP/1.1 200 OK", "X: a\r\n b\r\n"), ParseStatus::bad_response);
  EXPECT_EQ(parse_with("HTTP/1.1 200 OK", "X : a\r\n"), ParseStatus::bad_response);
  EXPECT_EQ(parse("HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"), ParseStatus::bad_response);
  EXPECT_EQ(parse("HTTP/1.1 200 OK\r\nContent-Length: 0\n\n"), ParseStatus::bad_response);
  EXPECT_EQ(parse_with("HTTP/1.1 200 OK", std::string("X: a\0b\r\n", 8)),
            ParseStatus::bad_response);
}

// first_final_response: what a health check reads of a server's answer.
TEST(FirstFinalResponse, SkipsInterimHeadsAndStopsAtTheFinalOne) {
  std::string interim =
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n";
  std::string final_head = "HTTP/1.1 204 No Content\r\nServer: s\r\n\r\n";
  ResponseHead head;
  size_t consumed = 0;
  ASSERT_EQ(first_final_response(interim + final_head + "body", 1024, head, consumed).status,
            ParseStatus::ok);
  EXPECT_EQ(head.status, 204);
  EXPECT_EQ(head.headers.get("server"), "s");
  EXPECT_EQ(consumed, interim.size() + final_head.size());
}

TEST(FirstFinalResponse, IsIncompleteUntilAFinalHeadEnds) {
  ResponseHead head;
  size_t consumed = 0;
  EXPECT_EQ(first_final_response("HTTP/1.1 100 Continue\r\n\r\n", 1024, head, consumed).status,
            ParseStatus::incomplete);
  EXPECT_EQ(first_final_response("HTTP/1.1 200 OK\r\n", 1024, head, consumed).status,
            ParseStatus::incomplete);
}

TEST(FirstFinalResponse, A101IsFinalAndBadHeadsOrHugeOnesAreRefused) {
  ResponseHead head;
  size_t consumed = 0;
  ASSERT_EQ(first_final_response("HTTP/1.1 101 Switching\r\n\r\n", 1024, head, consumed).status,
            ParseStatus::ok);
  EXPECT_EQ(head.status, 101);
  EXPECT_EQ(first_final_response("HELLO\r\n\r\n", 1024, head, consumed).status,
            ParseStatus::bad_response);
  std::string huge = "HTTP/1.1 200 OK\r\nX: " + std::string(2000, 'a') + "\r\n\r\n";
  EXPECT_EQ(first_final_response(huge, 1024, head, consumed).status, ParseStatus::header_too_large);
}

}  // namespace
}  // namespace ward::http
