"""Every limit of `limits:` with the status CONFIG.md names for it."""

import time

import pytest

from harness import base_config, exchange_until_close, slack, wait_for

LIMITS = {
    "max_uri_size": "1KiB",
    "max_header_size": "4KiB",
    "max_body_size": "1KiB",
    "header_timeout": "1s",
    "idle_timeout": "1s",
    "request_timeout": "1s",
    "body_timeout": "1s",
}
SLACK = slack(2.0)  # seconds allowed past a timeout on a loaded CI machine


@pytest.fixture(scope="module")
def app(module_group):
    return module_group.whoami("app")


@pytest.fixture(scope="module")
def ward(module_group, app):
    return module_group.ward(base_config({"app": [app]}, limits=LIMITS))


def only_response(ward, raw):
    responses, data = exchange_until_close(ward.port, raw, timeout=5)
    assert len(responses) == 1, f"expected one answer then close, got {data[:300]!r}"
    return responses[0]


def test_uri_over_max_uri_size_is_414(ward, app):
    before = app.count()
    r = only_response(ward, f"GET /{'a' * 2000} HTTP/1.1\r\nHost: h\r\n\r\n")
    assert r.status == 414
    assert r.json() == {"error": "uri_too_long", "status": 414}
    assert app.count() == before


def test_request_line_over_header_limit_is_414_not_431(ward):
    r = only_response(ward, f"GET /{'a' * 6000} HTTP/1.1\r\nHost: h\r\n\r\n")
    assert r.status == 414


def test_uri_just_under_the_limit_passes(ward):
    path = "/" + "a" * 900
    assert ward.get(path).json()["target"] == path


def test_headers_over_max_header_size_are_431(ward, app):
    before = app.count()
    headers = "".join(f"X-Filler-{i}: {'v' * 100}\r\n" for i in range(60))  # ~7 KiB
    r = only_response(ward, f"GET / HTTP/1.1\r\nHost: h\r\n{headers}\r\n")
    assert r.status == 431
    assert r.json() == {"error": "header_too_large", "status": 431}
    assert app.count() == before


def test_headers_under_max_header_size_pass(ward):
    headers = {f"X-Filler-{i}": "v" * 100 for i in range(20)}  # ~2.4 KiB
    assert ward.get("/", headers=headers).status == 200


def test_body_over_max_body_size_content_length_is_413(ward, app):
    before = app.count()
    with ward.conn() as c:
        c.send("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2048\r\n\r\n")
        if c.nothing_within(1.0):  # ward may answer at once or read the body first
            c.send("x" * 2048)
        r = c.read_response()
    assert r.status == 413
    assert r.json() == {"error": "payload_too_large", "status": 413}
    assert app.count() == before


def test_body_over_max_body_size_chunked_is_413(ward, app):
    before = app.count()
    chunk = b"400\r\n" + b"x" * 1024 + b"\r\n"
    with ward.conn() as c:
        c.send(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            c.send(chunk * 2 + b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # ward may stop reading as soon as the limit is crossed
        r = c.read_response()
    assert r.status == 413
    assert app.count() == before


def test_body_at_max_body_size_passes(ward):
    r = ward.request("POST", "/", body=b"x" * 1024)
    assert r.status == 200
    assert r.json()["body_bytes"] == 1024


@pytest.mark.slow
def test_header_timeout_closes_a_slowloris(ward, app):
    before = app.count()
    with ward.conn(timeout=10) as c:
        c.send("GET / HTTP/1.1\r\nHost: h\r\n")  # half a head, then silence
        start = time.monotonic()
        data = c.read_until_close(1 + SLACK + 1)
        elapsed = time.monotonic() - start
    assert 0.5 <= elapsed <= 1 + SLACK, elapsed
    assert b" 200 " not in data.split(b"\r\n", 1)[0]
    assert app.count() == before


@pytest.mark.slow
def test_header_timeout_is_for_the_whole_head(ward):
    # A byte every 200 ms keeps the connection busy but the head never ends:
    # the deadline is for the whole head, not between bytes.
    with ward.conn(timeout=10) as c:
        c.send("GET / HTTP/1.1\r\nHost: h\r\n")
        start = time.monotonic()

        def trickle_then_closed():
            try:
                c.send("X")
            except (BrokenPipeError, ConnectionResetError):
                return True
            return c.closed_within(0.05)

        wait_for(trickle_then_closed, 1 + SLACK + 1, "ward to close a trickling head", 0.2)
        assert time.monotonic() - start <= 1 + SLACK + 0.5


@pytest.mark.slow
def test_idle_timeout_closes_idle_keep_alive(ward):
    with ward.conn(timeout=10) as c:
        c.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert c.read_response().status == 200
        start = time.monotonic()
        c.read_until_close(1 + SLACK + 1)
        elapsed = time.monotonic() - start
    assert 0.5 <= elapsed <= 1 + SLACK, elapsed


@pytest.mark.slow
def test_request_timeout_answers_504(ward):
    start = time.monotonic()
    r = ward.get("/?delay=4000", timeout=10)
    elapsed = time.monotonic() - start
    assert r.status == 504
    assert r.json() == {"error": "gateway_timeout", "status": 504}
    assert 0.9 <= elapsed <= 1 + SLACK, elapsed


@pytest.mark.slow
def test_body_timeout_on_a_stalled_upload(ward, app):
    before = app.count()
    with ward.conn(timeout=10) as c:
        c.send("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n0123456789")
        start = time.monotonic()
        data = c.read_until_close(1 + SLACK + 1)
        elapsed = time.monotonic() - start
    assert elapsed <= 1 + SLACK, elapsed
    first_line = data.split(b"\r\n", 1)[0]
    assert b" 200 " not in first_line  # a 408 or a plain close, never success
    assert app.count() == before


@pytest.mark.slow
def test_body_timeout_on_a_stalled_download(ward):
    # whoami sends 16 KiB, then waits 5 s before the next piece.
    with ward.conn(timeout=10) as c:
        c.send("GET /?size=65536&drip=5000 HTTP/1.1\r\nHost: h\r\n\r\n")
        head = c.read_head()
        assert head.status == 200
        start = time.monotonic()
        body = c.read_until_close(1 + SLACK + 2)
        elapsed = time.monotonic() - start
    assert len(body) < 65536
    assert elapsed <= 1 + SLACK + 1, elapsed


def test_max_connections_holds_extra_connections_in_the_backlog(group):
    app = group.whoami("app")
    ward = group.ward(base_config({"app": [app]}, limits={"max_connections": 2}))
    first, second = ward.conn(), ward.conn()
    try:
        for c in (first, second):
            c.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            assert c.read_response().status == 200
        with ward.conn(timeout=10) as third:
            third.send("GET /third HTTP/1.1\r\nHost: h\r\n\r\n")
            assert third.nothing_within(0.5), "a connection over max_connections was served"
            first.close()
            r = third.read_response()
            assert r.json()["target"] == "/third"
    finally:
        first.close()
        second.close()


def test_unlimited_body_size_zero(group):
    app = group.whoami("app")
    ward = group.ward(base_config({"app": [app]}, limits={"max_body_size": 0}))
    r = ward.request("POST", "/", body=b"y" * (11 << 20))  # over the 10MiB default
    assert r.json()["body_bytes"] == 11 << 20
