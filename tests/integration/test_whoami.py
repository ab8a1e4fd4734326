"""ward-whoami itself: the behaviours the other tests and the demo rely on."""

import time

import pytest

from harness import Conn, exchange_until_close, pattern_bytes, request, sha256_hex


@pytest.fixture(scope="module")
def who(module_group):
    return module_group.whoami("alpha", threads=2)


def test_default_answer_describes_the_request(who):
    r = request(who.port, "POST", "/a/b?x=1", headers={"X-Test": "v1"}, body=b"hello")
    assert r.status == 200
    assert r.header("Content-Type") == "application/json"
    assert r.header("X-Whoami") == "alpha"
    j = r.json()
    assert j["name"] == "alpha"
    assert j["method"] == "POST"
    assert j["target"] == "/a/b?x=1"
    assert j["version"] == "HTTP/1.1"
    assert ["X-Test", "v1"] in j["headers"]
    assert j["body_bytes"] == 5
    assert j["body_sha256"] == sha256_hex(b"hello")


def test_headers_keep_order_duplicates_and_odd_bytes(who):
    with Conn(who.port) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: h\r\nX-Dup: 1\r\nX-Dup: 2\r\nX-Odd: caf\xe9 \"q\"\r\n\r\n")
        j = c.read_response().json()
    names = [h[0] for h in j["headers"]]
    assert names == ["Host", "X-Dup", "X-Dup", "X-Odd"]
    assert j["headers"][3][1] == "caf\u00e9 \"q\""


def test_status_and_extra_headers(who):
    r = request(who.port, "GET", "/?status=418&header=X-A%3A%20one&header=X-B:two")
    assert r.status == 418
    assert r.header("X-A") == "one"
    assert r.header("X-B") == "two"


def test_size_streams_the_pattern(who):
    r = request(who.port, "GET", "/?size=100000")
    assert r.header("Content-Length") == "100000"
    assert r.body == pattern_bytes(100000)


def test_size_chunked(who):
    with Conn(who.port) as c:
        c.send("GET /?size=70000&chunked=1 HTTP/1.1\r\nHost: h\r\n\r\n")
        r = c.read_response()
    assert r.header("Transfer-Encoding") == "chunked"
    assert r.body == pattern_bytes(70000)


def test_json_chunked(who):
    with Conn(who.port) as c:
        c.send("GET /j?chunked=1 HTTP/1.1\r\nHost: h\r\n\r\n")
        r = c.read_response()
    assert r.header("Transfer-Encoding") == "chunked"
    assert r.json()["target"] == "/j?chunked=1"


def test_delay_holds_the_head(who):
    start = time.monotonic()
    r = request(who.port, "GET", "/?delay=300")
    assert r.status == 200
    assert time.monotonic() - start >= 0.3


def test_drip_pauses_between_pieces(who):
    start = time.monotonic()
    r = request(who.port, "GET", "/?size=40000&drip=200")  # 3 pieces, 2 pauses
    assert r.body == pattern_bytes(40000)
    assert time.monotonic() - start >= 0.4


def test_close_answers_nothing(who):
    before = who.count()
    responses, raw = exchange_until_close(who.port, "GET /?close=1 HTTP/1.1\r\nHost: h\r\n\r\n")
    assert raw == b""
    assert who.count() == before + 1


def test_echo_content_length(who):
    body = bytes(range(256)) * 1000
    r = request(who.port, "PUT", "/?echo=1", body=body)
    assert r.status == 200
    assert r.body == body


def test_echo_chunked_request(who):
    with Conn(who.port) as c:
        c.send(b"POST /?echo=1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        r = c.read_response()
    assert r.body == b"hello world"


def test_nobody_204_and_304(who):
    with Conn(who.port) as c:
        c.send("GET /?status=204&nobody=1 HTTP/1.1\r\nHost: h\r\n\r\n"
               "GET /?status=304&nobody=1 HTTP/1.1\r\nHost: h\r\n\r\n"
               "GET /after HTTP/1.1\r\nHost: h\r\n\r\n")
        a, b, after = c.read_response(), c.read_response(), c.read_response()
    assert (a.status, a.body, a.header("Content-Length")) == (204, b"", None)
    assert (b.status, b.body) == (304, b"")
    assert after.json()["target"] == "/after"


def test_head_has_length_but_no_body(who):
    with Conn(who.port) as c:
        c.send("HEAD /?size=5000 HTTP/1.1\r\nHost: h\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n")
        head = c.read_response(head_request=True)
        nxt = c.read_response()
    assert head.header("Content-Length") == "5000"
    assert nxt.json()["target"] == "/next"


def test_keep_alive_and_pipelining(who):
    with Conn(who.port) as c:
        c.send("GET /1?delay=100 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n"
               "GET /3 HTTP/1.1\r\nHost: h\r\n\r\n")
        targets = [c.read_response().json()["target"] for _ in range(3)]
    assert targets == ["/1?delay=100", "/2", "/3"]


def test_expect_100_continue(who):
    with Conn(who.port) as c:
        c.send("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        interim = c.read_head()
        assert interim.status == 100
        c.send("abc")
        assert c.read_response().json()["body_bytes"] == 3


def test_connection_close_is_honoured(who):
    responses, _ = exchange_until_close(
        who.port, "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert [r.status for r in responses] == [200]
    assert responses[0].header("Connection") == "close"


def test_health_follows_the_unhealthy_file(group, tmp_path):
    flag = tmp_path / "sick"
    w = group.whoami("h", unhealthy_file=flag)
    assert (w.get("/health").status, w.get("/health").body) == (200, b"ok\n")
    flag.write_text("")
    assert w.get("/health").status == 503
    flag.unlink()
    assert w.get("/health").status == 200


def test_count_ignores_health_and_count(group):
    w = group.whoami("c")
    w.get("/health")
    w.get("/x")
    w.get("/y")
    j = w.get("/__count").json()
    assert j["requests"] == 2
    assert j["connections"] == 4


def test_incomplete_request_is_not_counted(group):
    w = group.whoami("c")
    with Conn(w.port) as c:
        c.send("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
    assert w.count() == 0


@pytest.mark.slow
def test_large_upload_and_download(who):
    block = b"x" * (1 << 20)
    with Conn(who.port, timeout=30) as c:
        c.send(f"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {64 << 20}\r\n\r\n")
        for _ in range(64):
            c.send(block)
        j = c.read_response().json()
    assert j["body_bytes"] == 64 << 20
    assert j["body_sha256"] == sha256_hex(block * 64)
    r = request(who.port, "GET", f"/?size={64 << 20}", timeout=30)
    assert len(r.body) == 64 << 20
