"""Keep-alive connections that idle: after a short idle period (100 ms) ward
parks an HTTP/1.1 connection: its coroutines end, its request state goes to
the worker's pool, and the worker's parking lot watches its socket and its
idle deadline, so that an idle connection costs its socket, its TLS state
and a small struct. A parked connection must serve its next
request (plain and TLS, pipelined too), keep its idle_timeout, and close on
drain, exactly as one that never parked.

The sleeps below are the behaviour under test (a client that idles longer
than the park delay), not waits for a condition."""

import signal
import socket
import ssl
import time

import pytest

from harness import ConnectionClosed, base_config, self_signed_cert, slack, wait_for

PARK_IDLE = 0.5  # seconds: well past ward's 100 ms park delay


@pytest.fixture(scope="module")
def app(module_group):
    return module_group.whoami("app")


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return self_signed_cert(tmp_path_factory.mktemp("park-cert"))


def config(app, cert, **limits):
    cfg = base_config({"app": [app]}, limits=limits or None)
    crt, key = cert
    cfg["listeners"].append({
        "name": "tls",
        "tls": {"certificates": [{"cert": str(crt), "key": str(key)}], "alpn": ["http/1.1"]},
    })
    return cfg


@pytest.fixture(scope="module")
def ward(module_group, app, cert):
    return module_group.ward(config(app, cert, idle_timeout="30s"))


def tls_conn(ward, timeout=5.0):
    c = ward.conn(timeout=timeout, listener="tls")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c.sock = ctx.wrap_socket(c.sock, server_hostname="localhost")
    return c


def get(c, path):
    c.send(f"GET {path} HTTP/1.1\r\nHost: h\r\n\r\n")
    r = c.read_response()
    assert r.status == 200, r
    return r.json()["target"]


@pytest.mark.parametrize("kind", ["plain", "tls"])
def test_parked_connection_serves_its_next_requests(ward, kind):
    c = tls_conn(ward) if kind == "tls" else ward.conn()
    with c:
        assert get(c, "/first") == "/first"
        for i in range(3):
            time.sleep(PARK_IDLE)
            assert get(c, f"/after-idle-{i}") == f"/after-idle-{i}"


@pytest.mark.parametrize("kind", ["plain", "tls"])
def test_parked_connection_answers_pipelined_requests_in_order(ward, kind):
    c = tls_conn(ward) if kind == "tls" else ward.conn()
    with c:
        assert get(c, "/first") == "/first"
        time.sleep(PARK_IDLE)
        c.send("".join(f"GET /p{i} HTTP/1.1\r\nHost: h\r\n\r\n" for i in range(3)))
        for i in range(3):
            r = c.read_response()
            assert r.status == 200 and r.json()["target"] == f"/p{i}"


def test_parked_connection_that_sends_a_partial_head_gets_its_answer(ward):
    with ward.conn() as c:
        assert get(c, "/first") == "/first"
        time.sleep(PARK_IDLE)
        c.send("GET /split HT")  # wakes the connection with half a head
        time.sleep(PARK_IDLE)  # idles again, mid-head
        c.send("TP/1.1\r\nHost: h\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.json()["target"] == "/split"


def test_many_parked_connections_each_serve_again(ward):
    conns = [ward.conn() for _ in range(50)]
    try:
        for i, c in enumerate(conns):
            assert get(c, f"/a{i}") == f"/a{i}"
        time.sleep(PARK_IDLE)
        for i, c in enumerate(conns):
            c.send(f"GET /b{i} HTTP/1.1\r\nHost: h\r\n\r\n")
        for i, c in enumerate(conns):
            r = c.read_response()
            assert r.status == 200 and r.json()["target"] == f"/b{i}"
    finally:
        for c in conns:
            c.close()


def test_request_state_handed_between_parked_connections_carries_nothing_over(ward):
    # A parked connection gives its request state (heads, filter context,
    # upstream head) to the worker's pool and takes one back when it wakes,
    # usually the one another connection used last: nothing of that other
    # connection's requests may reach the upstream in this one's.
    with ward.conn() as a, ward.conn() as b:
        assert get(a, "/a0") == "/a0"
        time.sleep(PARK_IDLE)  # a parks: its state goes to the pool
        b.send("GET /b-secret?x=1 HTTP/1.1\r\nHost: b.example\r\nX-From-B: yes\r\n"
               "Authorization: Bearer b-token\r\nCookie: b=1\r\n\r\n")
        rb = b.read_response()
        assert rb.status == 200
        time.sleep(PARK_IDLE)  # b parks too: its state, just used, is on top
        a.send("GET /a1 HTTP/1.1\r\nHost: a.example\r\n\r\n")
        ra = a.read_response()
        assert ra.status == 200
        seen = ra.json()
        assert seen["target"] == "/a1"
        headers = {n.lower(): v for n, v in seen["headers"]}
        assert headers["host"] == "a.example"
        for name in ("x-from-b", "authorization", "cookie"):
            assert name not in headers, (name, headers)
        assert "b-token" not in ra.body.decode() and "b.example" not in ra.body.decode()


@pytest.mark.parametrize("kind", ["plain", "tls"])
def test_parked_connection_whose_client_leaves_is_closed_at_once(module_group, app, cert, kind):
    # Its own ward: the connection gauge counts this test's connection alone.
    w = module_group.ward(config(app, cert, idle_timeout="60s"))
    listener = "tls" if kind == "tls" else "web"

    def active():
        return w.metrics().value("ward_connections_active", listener=listener)

    c = tls_conn(w) if kind == "tls" else w.conn()
    with c:
        assert get(c, "/") == "/"
        time.sleep(PARK_IDLE)
        assert active() == 1
    # Closed by ward when the client's FIN wakes it, not at idle_timeout.
    wait_for(lambda: active() == 0, slack(3), "ward to close a parked connection its client left")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["plain", "tls"])
def test_parked_connection_keeps_its_idle_timeout(module_group, app, cert, kind):
    short = module_group.ward(config(app, cert, idle_timeout="1s"))
    c = tls_conn(short, timeout=10) if kind == "tls" else short.conn(timeout=10)
    with c:
        assert get(c, "/") == "/"
        start = time.monotonic()
        try:
            c.read_until_close(1 + slack(2) + 1)
        except (ConnectionClosed, ssl.SSLError, ConnectionResetError):
            pass
        elapsed = time.monotonic() - start
    # Closed on idle_timeout, not at park time and not left open.
    assert 0.8 <= elapsed <= 1 + slack(2), elapsed


@pytest.mark.slow
def test_drain_closes_a_parked_connection(module_group, app, cert):
    w = module_group.ward(config(app, cert, idle_timeout="30s", drain_timeout="20s"))
    with w.conn(timeout=10) as idle, tls_conn(w, timeout=10) as idle_tls:
        assert get(idle, "/") == "/"
        assert get(idle_tls, "/") == "/"
        time.sleep(PARK_IDLE)
        start = time.monotonic()
        w.signal(signal.SIGTERM)
        assert idle.closed_within(slack(3)), "a parked connection stayed open"
        idle_tls.sock.settimeout(slack(3))
        try:
            assert idle_tls.sock.recv(100) == b""  # close_notify, then EOF
        except (ssl.SSLError, ConnectionResetError, socket.timeout) as e:
            if isinstance(e, socket.timeout):
                raise AssertionError("a parked TLS connection stayed open") from None
    assert w.wait_exit(slack(5)) == 0
    assert time.monotonic() - start < slack(5)  # did not wait out drain_timeout
