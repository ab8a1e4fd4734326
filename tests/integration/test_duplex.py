"""Full duplex on the proxied request path: ward reads the upstream's
response while the request body is still going up. An upstream that streams
its answer as it reads (an echo) streams through ward at any size; one that
answers early (413 before reading an upload) is heard, whether it then
closes or keeps reading; a client that fails its body while the response is
already streaming ends the exchange within body_timeout. HTTP/1.1 and
HTTP/2 (h2c) downstream; the TLS upstream leg is in test_upstream_tls."""

import hashlib
import json
import os
import signal
import socket
import struct
import time

import pytest

from h2_client import H2Client
from harness import base_config, curl, pattern_bytes, sha256_hex, slack, wait_for

BIG = 32 * 1024 * 1024
# The echoes must finish in a fraction of body_timeout: before full duplex
# they stalled until it (on the sockets' buffers) instead.
ECHO_BOUND = 20


def duplex_config(app, **limits):
    lim = {"max_body_size": "64MiB"}
    lim.update(limits)
    return base_config({"app": [app]}, limits=lim,
                       logging={"access_log": {"path": "stdout", "format": "json"}})


@pytest.fixture(scope="module")
def app(module_group):
    return module_group.whoami("duplex-app", threads=4)


@pytest.fixture(scope="module")
def ward(module_group, app):
    return module_group.ward(duplex_config(app))


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("duplex") / "big.bin"
    data = os.urandom(BIG)
    path.write_bytes(data)
    return path, sha256_hex(data)


def curl_echo(url, src, out, *extra):
    """POSTs `src` to `url` with curl (which reads while it sends) into `out`;
    returns (status, seconds)."""
    start = time.monotonic()
    r = curl(*extra, "--data-binary", f"@{src}", "-H", "Content-Type: application/octet-stream",
             "-o", str(out), "-w", "%{http_code}", url, timeout=slack(ECHO_BOUND))
    elapsed = time.monotonic() - start
    assert r.returncode == 0, r.stderr
    return int(r.stdout), elapsed


def log_entry(ward, path):
    """The access log line of the request to `path`, once it is written."""
    return wait_for(lambda: next((e for e in ward.json_log_entries() if e.get("path") == path),
                                 None), slack(5), f"the access log line of {path}")


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- echoes

@pytest.mark.slow
def test_http1_echo_of_32_mib_streams_both_ways(ward, big_file, tmp_path):
    src, digest = big_file
    out = tmp_path / "echo.bin"
    status, elapsed = curl_echo(ward.url("/echo?echo=1"), src, out)
    assert status == 200
    assert out.stat().st_size == BIG
    assert file_sha256(out) == digest
    assert elapsed < slack(ECHO_BOUND), elapsed


@pytest.mark.slow
def test_http1_chunked_echo_streams_both_ways(ward, big_file, tmp_path):
    # No Content-Length: chunked up to the upstream, chunked back.
    src, digest = big_file
    out = tmp_path / "echo.bin"
    status, _ = curl_echo(ward.url("/echo?echo=1"), src, out, "-H", "Transfer-Encoding: chunked")
    assert status == 200
    assert file_sha256(out) == digest


@pytest.mark.slow
def test_http2_echo_of_32_mib_streams_both_ways(ward, big_file, tmp_path):
    src, digest = big_file
    out = tmp_path / "echo.bin"
    status, elapsed = curl_echo(ward.url("/echo?echo=1"), src, out, "--http2-prior-knowledge")
    assert status == 200
    assert file_sha256(out) == digest
    assert elapsed < slack(ECHO_BOUND), elapsed


def test_echo_keeps_the_client_connection(ward):
    # A body that ends before its echoed response does is a whole request:
    # the connection carries the next one.
    body = pattern_bytes(300000)
    with ward.conn(timeout=slack(10)) as c:
        for _ in range(2):
            c.send(f"POST /e?echo=1 HTTP/1.1\r\nHost: h\r\nContent-Length: {len(body)}\r\n\r\n"
                   .encode() + body)
            r = c.read_response()
            assert r.status == 200
            assert r.body == body
            assert (r.header("Connection") or "").lower() != "close"


# ---------------------------------------------------------------- early answers

def fresh(group, **limits):
    """A ward with an upstream of its own: its pool starts empty."""
    app = group.whoami("early-app")
    return group.ward(duplex_config(app, **limits)), app


def upstream_connections(ward):
    m = ward.metrics()
    return (m.value("ward_upstream_connections_created_total", upstream="app"),
            m.value("ward_upstream_connections_reused_total", upstream="app"))


@pytest.mark.parametrize("early", [1, 2], ids=["then-closes", "then-reads"])
def test_http1_early_413_reaches_the_client(group, big_file, tmp_path, early):
    ward, _ = fresh(group)
    src, _ = big_file
    status, elapsed = curl_echo(ward.url(f"/up?early={early}&status=413"), src,
                                tmp_path / "out.json")
    assert status == 413
    assert elapsed < slack(ECHO_BOUND), elapsed
    # The upstream connection was mid-request: closed, not pooled. The next
    # request needs a new one, and works.
    r = ward.get("/after")
    assert r.status == 200
    assert upstream_connections(ward) == (2, 0)
    assert log_entry(ward, "/up")["status"] == 413


def test_http1_early_answer_closes_the_client_connection(group):
    # The client is still sending a body nobody will read: after the
    # response its connection closes (said in the head when ward knows in
    # time), and the close is not a reset that could eat the response.
    ward, _ = fresh(group)
    size = 8 * 1024 * 1024
    with ward.conn(timeout=slack(10)) as c:
        c.send(f"POST /up?early=1&status=413 HTTP/1.1\r\nHost: h\r\n"
               f"Content-Length: {size}\r\n\r\n".encode() + pattern_bytes(256 * 1024))
        r = c.read_response()
        assert r.status == 413
        assert r.json()["name"] == "early-app"
        assert c.closed_within(slack(5))


def send_some(c, sid, n):
    """Sends n body bytes on stream sid in frames the peer accepts."""
    for at in range(0, n, 16 * 1024):
        c.conn.send_data(sid, pattern_bytes(min(16 * 1024, n - at)))
    c.flush()


def upload_until_answered(c, sid, total, timeout):
    """Sends up to `total` body bytes as the windows allow, pumping the
    connection, until the response is complete or the stream is reset;
    returns the bytes sent. (curl 7.88 cannot be used here: it discards a
    response followed by RST_STREAM(NO_ERROR), against RFC 9113 8.1.)"""
    sent = 0
    end = time.monotonic() + timeout
    while sent < total and not c.responses[sid]["done"] and not c.closed:
        assert time.monotonic() < end, "no answer while uploading"
        window = min(c.conn.local_flow_control_window(sid), c.conn.max_outbound_frame_size,
                     total - sent)
        if window <= 0:
            c.pump(0.2)
            continue
        try:
            c.conn.send_data(sid, pattern_bytes(window))
            c.flush()
        except Exception:  # noqa: BLE001 - the stream was closed under us: answered
            break
        sent += window
        c.pump(0.001)
    return sent


@pytest.mark.parametrize("early", [1, 2], ids=["then-closes", "then-reads"])
def test_http2_early_413_ends_the_stream_and_resets_the_upload(group, early):
    # RFC 9113 8.1: the complete response, then RST_STREAM(NO_ERROR) while
    # the client still sends; the connection serves on, the upstream
    # connection is not reused.
    ward, _ = fresh(group)
    total = 32 * 1024 * 1024
    c = H2Client(ward.port, timeout=slack(10))
    try:
        sid = c.request(f"/up?early={early}&status=413", method="POST", more=True,
                        headers=[("content-length", str(total))])
        sent = upload_until_answered(c, sid, total, slack(ECHO_BOUND))
        assert sent < total
        resp = c.response(sid, timeout=slack(10))
        assert resp["status"] == 413
        assert json.loads(bytes(resp["body"]))["name"] == "early-app"
        c.wait(lambda: c.responses[sid]["reset"] is not None, slack(5), "RST_STREAM")
        assert c.responses[sid]["reset"] == 0  # NO_ERROR
        again = c.response(c.request("/after"), timeout=slack(10))
        assert again["status"] == 200
    finally:
        c.close()
    assert upstream_connections(ward) == (2, 0)
    assert log_entry(ward, "/up")["status"] == 413


# ---------------------------------------------------------------- request_timeout

@pytest.mark.slow
def test_request_timeout_counts_from_the_end_of_the_body(group):
    # request_timeout is the time to the response head once the request is
    # sent: an upload slower than it is fine (each wait is body_timeout's),
    # and an upstream silent for request_timeout after the body gets a 504.
    ward, _ = fresh(group, request_timeout="1s", body_timeout="5s")
    piece = pattern_bytes(1000)
    with ward.conn(timeout=slack(10)) as c:
        c.send(f"POST /slow-upload HTTP/1.1\r\nHost: h\r\nContent-Length: {4 * len(piece)}\r\n\r\n"
               .encode() + piece)
        for _ in range(3):  # 3 x 0.6 s: the upload outlasts request_timeout
            assert c.nothing_within(0.6), c.sock.recv(200)
            c.send(piece)
        r = c.read_response()
        assert r.status == 200
        assert r.json()["body_bytes"] == 4 * len(piece)
    with ward.conn(timeout=slack(10)) as c:
        c.send(f"POST /late?delay=5000 HTTP/1.1\r\nHost: h\r\nContent-Length: {len(piece)}\r\n\r\n"
               .encode() + piece)
        start = time.monotonic()
        r = c.read_response()
        elapsed = time.monotonic() - start
    assert r.status == 504
    assert 0.9 <= elapsed <= slack(1) + 1, elapsed


# ---------------------------------------------------------------- body failures

@pytest.fixture(scope="module")
def quick(module_group, app):
    """body_timeout 1s: a stalled client body fails fast."""
    return module_group.ward(duplex_config(app, body_timeout="1s"))


def wait_idle(ward):
    """Every downstream connection closed and no request left in flight: the
    exchange that failed left nothing behind."""
    def idle():
        m = ward.metrics()
        return m.value("ward_connections_active") == 0
    wait_for(idle, slack(10), "no connection left open")


# The client stalls while the upstream still streams its answer: the echo
# drips what it has read (16 KiB per 500 ms), so it outlasts body_timeout
# and only the client's silence can end the exchange. (A plain echo would
# stall with the client, and its upstream read would time out at the same
# moment: either side's timeout could end it.)
STALL_ECHO = "echo=1&drip=500"


@pytest.mark.slow
def test_http1_client_stalls_mid_body_while_the_echo_streams(quick):
    size = 4 * 1024 * 1024
    sent = 96 * 1024  # 6 pieces: 2.5 s of echo
    with quick.conn(timeout=slack(10)) as c:
        c.send(f"POST /stall?{STALL_ECHO} HTTP/1.1\r\nHost: h\r\nContent-Length: {size}\r\n\r\n"
               .encode() + pattern_bytes(sent))
        head = c.read_head()
        assert head.status == 200  # the echo is streaming
        start = time.monotonic()
        rest = c.read_until_close(slack(1) + 5)
        elapsed = time.monotonic() - start
    # Cut short within body_timeout (1 s) and some slack, never hung, and
    # before the echo of what was sent could end.
    assert elapsed < slack(1) + 3, elapsed
    assert len(rest) < sent
    assert log_entry(quick, "/stall")["status"] == 408
    wait_idle(quick)


@pytest.mark.slow
def test_http2_client_stalls_mid_body_while_the_echo_streams(quick):
    c = H2Client(quick.port, timeout=slack(10))
    try:
        sid = c.request(f"/stall2?{STALL_ECHO}", method="POST", more=True,
                        headers=[("content-length", str(4 * 1024 * 1024))])
        send_some(c, sid, 60 * 1024)  # within the first window: 2 s of echo
        c.wait(lambda: c.responses[sid]["status"] == 200, slack(5), "the echo's head")
        start = time.monotonic()
        c.wait(lambda: c.responses[sid]["reset"] is not None, slack(1) + 5, "the stream reset")
        elapsed = time.monotonic() - start
        assert elapsed < slack(1) + 3, elapsed
        assert c.responses[sid]["reset"] != 0  # cut short: not NO_ERROR
        assert c.response(c.request("/after"), timeout=slack(10))["status"] == 200
    finally:
        c.close()
    assert log_entry(quick, "/stall2")["status"] == 408


# Whichever of ward's two sides notices first (the body's read or the echo's
# write), a client that left mid-body is logged as 499. A reset makes the
# write the likelier first.
@pytest.mark.parametrize("ending", ["close", "reset"])
def test_client_gone_mid_body_while_the_echo_streams(quick, ending):
    size = 4 * 1024 * 1024
    path = f"/gone-{ending}"
    with quick.conn(timeout=slack(10)) as c:
        c.send(f"POST {path}?echo=1 HTTP/1.1\r\nHost: h\r\nContent-Length: {size}\r\n\r\n"
               .encode() + pattern_bytes(256 * 1024))
        assert c.read_head().status == 200
        if ending == "reset":
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert log_entry(quick, path)["status"] == 499
    wait_idle(quick)


def test_body_over_max_body_size_mid_echo_is_cut_short(group):
    ward, _ = fresh(group, max_body_size="1MiB")
    size = 4 * 1024 * 1024
    chunk = b"10000\r\n" + pattern_bytes(0x10000) + b"\r\n"
    with ward.conn(timeout=slack(10)) as c:
        c.send(f"POST /big?echo=1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
               .encode() + chunk)
        assert c.read_head().status == 200  # the echo has started
        try:
            for _ in range(size // 0x10000):
                c.send(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # ward stopped reading once the limit was crossed
        assert c.closed_within(slack(5))
    assert log_entry(ward, "/big")["status"] == 413


def test_ward_exits_cleanly_after_the_failed_exchanges(quick):
    # Runs after the body-failure tests above (same module ward): a drain
    # finds nothing left in flight, and under the sanitizers LeakSanitizer
    # runs at exit, so a frame or buffer an aborted exchange leaked fails
    # the exit code.
    wait_idle(quick)
    quick.signal(signal.SIGTERM)
    assert quick.wait_exit(slack(10)) == 0, quick.stderr_text()[-3000:]
    err = quick.stderr_text()
    assert "Sanitizer" not in err and "runtime error" not in err, err[-3000:]
