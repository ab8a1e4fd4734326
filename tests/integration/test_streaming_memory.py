"""Bodies stream through ward with bounded buffers: a 1 GiB upload and a
1 GiB download grow ward's peak memory (VmHWM) by only a few MiB."""

import hashlib
import time

import pytest

from h2_client import H2Client
from harness import base_config, pattern_bytes, sha256_hex, wait_for

GIB = 1 << 30
MAX_GROWTH_KIB = 16 * 1024
BLOCK = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture(scope="module")
def app(module_group):
    return module_group.whoami("app")


@pytest.fixture(scope="module")
def ward(module_group, app):
    cfg = base_config({"app": [app]}, limits={"max_body_size": "2GiB"})
    w = module_group.ward(cfg)
    for _ in range(3):  # warm up pools and buffers before measuring
        assert w.request("POST", "/", body=BLOCK).status == 200
        assert w.get("/?size=1048576").status == 200
    return w


def assert_memory_bounded(ward, before_kib):
    growth = ward.hwm_kib() - before_kib
    if ward.sanitized():
        pytest.skip(f"memory bound not checked under a sanitizer (grew {growth} KiB)")
    assert growth < MAX_GROWTH_KIB, f"VmHWM grew by {growth} KiB"


@pytest.mark.slow
def test_one_gib_upload_streams(ward):
    before = ward.hwm_kib()
    digest = hashlib.sha256()
    with ward.conn(timeout=60) as c:
        c.send(f"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: {GIB}\r\n\r\n")
        for _ in range(GIB // len(BLOCK)):
            c.send(BLOCK)
            digest.update(BLOCK)
        j = c.read_response().json()
    assert j["body_bytes"] == GIB
    assert j["body_sha256"] == digest.hexdigest()
    assert_memory_bounded(ward, before)


@pytest.mark.slow
def test_chunked_upload_streams(ward):
    before = ward.hwm_kib()
    chunk = f"{len(BLOCK):x}\r\n".encode() + BLOCK + b"\r\n"
    n = 256  # 256 MiB is enough to see buffering; keeps the run short
    with ward.conn(timeout=60) as c:
        c.send("POST /chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(n):
            c.send(chunk)
        c.send("0\r\n\r\n")
        j = c.read_response().json()
    assert j["body_bytes"] == n * len(BLOCK)
    assert_memory_bounded(ward, before)


@pytest.mark.slow
def test_one_gib_download_streams(ward):
    before = ward.hwm_kib()
    expected_piece = pattern_bytes(1 << 16)
    received = 0
    deadline = time.monotonic() + 120
    with ward.conn(timeout=60) as c:
        c.send(f"GET /?size={GIB} HTTP/1.1\r\nHost: h\r\n\r\n")
        head = c.read_head()
        assert head.status == 200
        assert head.header("Content-Length") == str(GIB)
        while len(c.buf) < len(expected_piece):
            c._fill()
        assert c.buf[:len(expected_piece)] == expected_piece
        received = len(c.buf)
        c.buf = b""
        buf = bytearray(1 << 20)
        while received < GIB:
            assert time.monotonic() < deadline, f"download too slow: {received} bytes"
            n = c.sock.recv_into(buf)
            assert n > 0, f"connection closed after {received} bytes"
            received += n
    assert received == GIB
    assert_memory_bounded(ward, before)


@pytest.mark.slow
def test_slow_reader_does_not_make_ward_buffer(ward):
    # Backpressure: a client that reads nothing for a while must not make
    # ward pull the whole upstream body into memory.
    before = ward.hwm_kib()
    with ward.conn(timeout=60) as c:
        c.send(f"GET /?size={256 << 20} HTTP/1.1\r\nHost: h\r\n\r\n")
        head = c.read_head()
        assert head.status == 200
        # Stay silent until ward has filled the socket buffers and stalls.
        samples = []

        def stalled():
            samples.append(ward.hwm_kib())
            return len(samples) > 5 and samples[-1] == samples[-5]

        wait_for(stalled, 10, "ward's memory to stop growing", interval=0.1)
        assert_memory_bounded(ward, before)
        received = len(c.buf)
        buf = bytearray(1 << 20)
        while received < 256 << 20:
            n = c.sock.recv_into(buf)
            assert n > 0
            received += n


@pytest.mark.slow
def test_http2_upload_streams(ward):
    # HTTP/2 (h2c): the stream window opens only as ward forwards, so a fast
    # client cannot make ward hold more than the windows.
    before = ward.hwm_kib()
    size = 64 << 20
    c = H2Client(ward.port, timeout=60)
    try:
        sid = c.request("/h2-upload", method="POST", headers=[("content-length", str(size))],
                        more=True)
        c.send_body(sid, BLOCK * (size // len(BLOCK)), deadline=120)
        resp = c.response(sid, timeout=60)
    finally:
        c.close()
    assert resp["status"] == 200
    j = __import__("json").loads(bytes(resp["body"]))
    assert j["body_bytes"] == size
    assert j["body_sha256"] == sha256_hex(BLOCK * (size // len(BLOCK)))
    assert_memory_bounded(ward, before)


@pytest.mark.slow
def test_http2_slow_reader_does_not_make_ward_buffer(ward):
    # The client acknowledges nothing: ward may send one window, then the
    # response waits in a bounded buffer and the upstream is not read.
    before = ward.hwm_kib()
    size = 64 << 20
    c = H2Client(ward.port, timeout=60, auto_ack=False)
    try:
        sid = c.request(f"/h2-slow?size={size}")
        samples = []

        def stalled():
            c.pump(0.05)
            samples.append(ward.hwm_kib())
            return len(samples) > 10 and samples[-1] == samples[-10]

        wait_for(stalled, 15, "ward's memory to stop growing", interval=0.05)
        assert len(c.responses[sid]["body"]) <= 128 * 1024  # about one window, no more
        assert_memory_bounded(ward, before)
        c.ack_all()
        resp = c.response(sid, timeout=60)
        assert resp["status"] == 200 and len(resp["body"]) == size
    finally:
        c.close()


def test_idle_keepalive_connections_hold_no_read_buffer(ward):
    """An idle keep-alive connection gives its 32 KiB read buffer back, so
    thousands of idle clients cost little (nginx and HAProxy do the same)."""
    import socket

    count = 1000
    conns = []
    try:
        first = socket.create_connection(("127.0.0.1", ward.port), timeout=10)
        conns.append(first)
        first.sendall(b"GET / HTTP/1.1\r\nHost: idle\r\n\r\n")
        assert first.recv(65536).startswith(b"HTTP/1.1 200")
        before = ward.rss_kib()
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", ward.port), timeout=10)
            conns.append(s)
            s.sendall(b"GET / HTTP/1.1\r\nHost: idle\r\n\r\n")
        for s in conns[1:]:
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
        # Every connection has answered and is now idle in keep-alive.
        per_conn = (ward.rss_kib() - before) / count
    finally:
        for s in conns:
            s.close()
    if ward.sanitized():
        pytest.skip(f"memory bound not checked under a sanitizer ({per_conn:.1f} KiB/conn)")
    assert per_conn < 12, f"{per_conn:.1f} KiB per idle connection"


def test_idle_http2_connections_hold_no_buffers(ward):
    """An idle HTTP/2 connection keeps nghttp2's session state (its 16 KiB
    frame buffer and the two HPACK tables: about 30 KiB measured), but no
    read or write buffer of ward's and no stream."""
    count = 300
    clients = []
    try:
        first = H2Client(ward.port)
        clients.append(first)
        assert first.get("/")["status"] == 200
        before = ward.rss_kib()
        for _ in range(count):
            c = H2Client(ward.port)
            clients.append(c)
            c.request("/")
        for c in clients[1:]:
            assert c.response(1)["status"] == 200
        per_conn = (ward.rss_kib() - before) / count
    finally:
        for c in clients:
            c.close()
    if ward.sanitized():
        pytest.skip(f"memory bound not checked under a sanitizer ({per_conn:.1f} KiB/conn)")
    assert per_conn < 40, f"{per_conn:.1f} KiB per idle HTTP/2 connection"
