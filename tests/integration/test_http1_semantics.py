"""HTTP/1.1 downstream behaviour: keep-alive, pipelining, chunked, 100-continue,
bodiless responses."""

import pytest

from harness import base_config, exchange_until_close, pattern_bytes, sha256_hex


@pytest.fixture(scope="module")
def app(module_group):
    return module_group.whoami("app")


@pytest.fixture(scope="module")
def ward(module_group, app):
    return module_group.ward(base_config({"app": [app]}))


def get(path, extra=""):
    return f"GET {path} HTTP/1.1\r\nHost: h\r\n{extra}\r\n"


def test_keep_alive_two_requests_on_one_socket(ward):
    with ward.conn() as c:
        c.send(get("/first"))
        first = c.read_response()
        c.send(get("/second"))
        second = c.read_response()
    assert first.json()["target"] == "/first"
    assert second.json()["target"] == "/second"
    assert (first.header("Connection") or "").lower() != "close"


def test_pipelined_requests_answered_in_order(ward):
    # The first is the slowest: answers must still come back in request order.
    with ward.conn() as c:
        c.send(get("/p1?delay=300") + get("/p2") + get("/p3?delay=100"))
        targets = [c.read_response().json()["target"] for _ in range(3)]
    assert targets == ["/p1?delay=300", "/p2", "/p3?delay=100"]


def test_connection_close_request_closes_after_answer(ward):
    responses, _ = exchange_until_close(ward.port, get("/bye", "Connection: close\r\n"))
    assert [r.status for r in responses] == [200]


def test_http10_request_is_answered_and_closed(ward):
    responses, _ = exchange_until_close(ward.port, "GET /old HTTP/1.0\r\nHost: h\r\n\r\n")
    assert len(responses) == 1
    assert responses[0].status == 200
    assert responses[0].json()["target"] == "/old"


def test_chunked_request_body_reaches_upstream_intact(ward):
    pieces = [b"a" * 1, b"b" * 4095, b"c" * 70000, b"\r\n0\r\n" * 10]
    wire = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces) + b"0\r\n\r\n"
    with ward.conn() as c:
        c.send(b"POST /chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
        c.send(wire)
        j = c.read_response().json()
    body = b"".join(pieces)
    assert j["body_bytes"] == len(body)
    assert j["body_sha256"] == sha256_hex(body)


def test_chunked_request_with_extension_and_trailer(ward):
    with ward.conn() as c:
        c.send(b"POST /ext HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5;name=value\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n")
        j = c.read_response().json()
    assert j["body_sha256"] == sha256_hex(b"hello")


def test_chunked_response_is_relayed(ward):
    with ward.conn(timeout=10) as c:
        c.send(get("/?size=300000&chunked=1"))
        r = c.read_response()
        c.send(get("/after"))
        after = c.read_response()
    assert r.status == 200
    assert r.body == pattern_bytes(300000)
    assert after.json()["target"] == "/after"


def test_chunked_json_response_is_relayed(ward):
    with ward.conn() as c:
        c.send(get("/cj?chunked=1"))
        assert c.read_response().json()["target"] == "/cj?chunked=1"


def test_expect_100_continue_gets_interim_then_answer(ward):
    with ward.conn() as c:
        c.send("POST /expect HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n"
               "Expect: 100-continue\r\n\r\n")
        interim = c.read_head()
        assert interim.status == 100
        c.send("hello world")
        final = c.read_response()
    assert final.status == 200
    assert final.json()["body_sha256"] == sha256_hex(b"hello world")


def test_head_response_has_no_body(ward):
    with ward.conn() as c:
        c.send("HEAD /?size=5000 HTTP/1.1\r\nHost: h\r\n\r\n" + get("/next"))
        head = c.read_response(head_request=True)
        nxt = c.read_response()
    assert head.status == 200
    assert head.header("Content-Length") in (None, "5000")
    assert nxt.json()["target"] == "/next"  # proves no body bytes followed the HEAD


def test_head_of_json_has_no_body(ward):
    with ward.conn() as c:
        c.send("HEAD /j HTTP/1.1\r\nHost: h\r\n\r\n" + get("/next"))
        c.read_response(head_request=True)
        assert c.read_response().json()["target"] == "/next"


@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_status_has_no_body(ward, status):
    with ward.conn() as c:
        c.send(get(f"/?status={status}&nobody=1") + get("/next"))
        r = c.read_response()
        nxt = c.read_response()
    assert r.status == status
    assert r.body == b""
    assert r.header("Transfer-Encoding") is None
    assert nxt.json()["target"] == "/next"


def test_request_without_host_is_rejected(ward):
    responses, _ = exchange_until_close(ward.port, "GET / HTTP/1.1\r\n\r\n")
    assert [r.status for r in responses] == [400]


def test_garbage_request_line_is_rejected(ward):
    responses, _ = exchange_until_close(ward.port, "THIS IS NOT HTTP\r\n\r\n")
    assert [r.status for r in responses] == [400]
