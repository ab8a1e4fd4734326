"""HTTP/2 through the real binary: TLS with ALPN h2 and h2c with prior
knowledge, driven by curl --http2, nghttp, h2load and a python-h2 client that
can misbehave on purpose (rapid reset, CONTINUATION flood, oversized heads).
The upstream is ward-whoami over HTTP/1.1: streams are multiplexed onto the
same pools, routes and filters as HTTP/1.1 requests."""

import hashlib
import json
import re
import signal
import socket
import subprocess
import time

import pytest
from hpack import Encoder

from h2_client import H2Client, closed_within, frame, raw_h2c
from harness import (HOST, base_config, curl, pattern_bytes, self_signed_cert, sha256_hex,
                     wait_for)



@pytest.fixture(scope="module")
def app(module_group):
    return module_group.whoami("app", threads=4)


def h2_config(app, crt, key, **limits):
    routes = [{"name": "main", "match": {"path_prefix": "/", "methods": ["GET", "POST", "PUT",
                                                                          "HEAD"]},
               "upstream": "backend"}]
    cfg = base_config({"backend": [app]}, routes=routes, limits=limits or None,
                      filters=[{"security_headers": {}}])
    cfg["listeners"] = [{"name": "web"},
                        {"name": "secure",
                         "tls": {"certificates": [{"cert": str(crt), "key": str(key)}]}}]
    return cfg


@pytest.fixture(scope="module")
def ward(module_group, app, tmp_path_factory):
    crt, key = self_signed_cert(tmp_path_factory.mktemp("h2cert"))
    return module_group.ward(h2_config(app, crt, key, max_concurrent_streams=128))


def upstream_view(resp):
    return json.loads(bytes(resp["body"]))


def test_curl_http2_over_tls_and_h2c(ward):
    tls_port = ward.listener_ports["secure"]
    r = curl("--http2", "-k", "-sS", "-D", "-", f"https://localhost:{tls_port}/hello?x=1",
             "--resolve", f"localhost:{tls_port}:{HOST}")
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/2 200"), head
    assert b"x-content-type-options: nosniff" in head  # the global filter ran
    seen = json.loads(body)
    assert seen["target"] == "/hello?x=1"
    assert seen["version"] in ("1.1", "HTTP/1.1", 11)
    r = curl("--http2-prior-knowledge", "-sS", "-D", "-", ward.url("/plain"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"HTTP/2 200"), r.stdout[:200]
    wait_for(lambda: '"protocol":"HTTP/2.0"' in ward.stdout_path.read_text(), 5,
             "an access log line with protocol HTTP/2.0")


def test_request_head_is_forwarded_as_http11(ward):
    c = H2Client(ward.listener_ports["secure"], tls=True)
    try:
        resp = c.get("/fwd?q=1", authority="api.example:8443",
                     headers=[("cookie", "a=1"), ("cookie", "b=2"), ("x-custom", "yes")])
        assert resp["status"] == 200
        seen = upstream_view(resp)
        headers = {n.lower(): v for n, v in seen["headers"]}
        assert headers["host"] == "api.example:8443"  # :authority becomes Host
        assert headers["cookie"] == "a=1; b=2"       # RFC 9113 8.2.3
        assert headers["x-custom"] == "yes"
        assert headers["x-forwarded-proto"] == "https"
        assert headers["x-forwarded-for"] == "127.0.0.1"
        assert seen["method"] == "GET" and seen["target"] == "/fwd?q=1"
    finally:
        c.close()


def test_local_replies_over_http2(ward):
    c = H2Client(ward.port)
    try:
        resp = c.get("/x", method="DELETE")  # no route takes DELETE
        assert resp["status"] == 404
        headers = dict(resp["headers"])
        assert headers["content-length"] == str(len(resp["body"]))
        assert json.loads(bytes(resp["body"]))["status"] == 404
        assert headers["x-content-type-options"] == "nosniff"
        # The connection serves on after a local reply.
        assert c.get("/after")["status"] == 200
    finally:
        c.close()


def test_settings_advertise_the_stream_limit(ward):
    c = H2Client(ward.port)
    try:
        c.wait(lambda: c.conn.remote_settings.max_concurrent_streams == 128, 5,
               "the server's SETTINGS")
        assert c.conn.remote_settings.initial_window_size >= 65535
    finally:
        c.close()


def test_nghttp_fetches_several_streams(ward):
    port = ward.listener_ports["secure"]
    urls = [f"https://127.0.0.1:{port}/n{i}" for i in range(10)]
    r = subprocess.run(["nghttp", "-n", "-s", "-t", "20", *urls], capture_output=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr + r.stdout
    # -s prints one statistics row per finished stream with its status code.
    assert len(re.findall(rb"\b200\b", r.stdout)) >= 10, r.stdout


def h2load(*args, timeout=120):
    r = subprocess.run(["h2load", *args], capture_output=True, timeout=timeout)
    out = r.stdout.decode()
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored", out)
    assert m, out + r.stderr.decode()
    total, _, done, ok, failed, errored = map(int, m.groups())
    return out, total, done, ok, failed, errored


def test_h2load_without_failures(ward):
    port = ward.listener_ports["secure"]
    out, total, done, ok, failed, errored = h2load(
        "-n", "2000", "-c", "4", "-m", "16", f"https://127.0.0.1:{port}/load")
    assert (done, ok, failed, errored) == (2000, 2000, 0, 0), out
    assert re.search(r"status codes: 2000 2xx", out), out
    # h2c with prior knowledge, many streams on one connection, with bodies.
    out, total, done, ok, failed, errored = h2load(
        "-n", "500", "-c", "1", "-m", "50", ward.url("/load?size=20000"))
    assert (done, ok, failed, errored) == (500, 500, 0, 0), out


def test_hundred_concurrent_streams_on_one_connection(ward):
    c = H2Client(ward.port)
    try:
        started = time.monotonic()
        sids = [c.request(f"/slow?delay=400&i={i}") for i in range(100)]
        for sid in sids:
            resp = c.response(sid, timeout=20)
            assert resp["status"] == 200, resp
        elapsed = time.monotonic() - started
        # One after another they would take 40 s; multiplexed, about one delay.
        assert elapsed < 15, f"100 streams took {elapsed:.1f}s: not concurrent"
    finally:
        c.close()


def test_large_bodies_with_flow_control(ward, tmp_path):
    port = ward.listener_ports["secure"]
    size = 8 * 1024 * 1024
    body = pattern_bytes(size)
    src = tmp_path / "up.bin"
    src.write_bytes(body)
    # Upload streamed through the 64 KiB stream window.
    r = curl("--http2", "-k", "-sS", "--data-binary", f"@{src}", "-H",
             "Content-Type: application/octet-stream", "-o", str(tmp_path / "up.json"),
             "-w", "%{http_code} %{http_version}", f"https://127.0.0.1:{port}/up",
             timeout=120)
    assert r.stdout == b"200 2", r.stdout + r.stderr
    seen = json.loads((tmp_path / "up.json").read_bytes())
    assert seen["body_bytes"] == size and seen["body_sha256"] == sha256_hex(body)
    # Echoed back as it is sent (full duplex: the response streams while the
    # upload still comes), well within body_timeout.
    r = curl("--http2", "-k", "-sS", "--data-binary", f"@{src}", "-H",
             "Content-Type: application/octet-stream", "-o", str(tmp_path / "echo.bin"),
             "-w", "%{http_code} %{http_version}", f"https://127.0.0.1:{port}/up?echo=1",
             timeout=30)
    assert r.stdout == b"200 2", r.stdout + r.stderr
    assert sha256_hex((tmp_path / "echo.bin").read_bytes()) == sha256_hex(body)
    # A body of unknown length (no content-length): chunked upstream.
    c = H2Client(port, tls=True)
    try:
        sid = c.request("/chunky", method="POST", body=body[: 3 * 1024 * 1024])
        resp = c.response(sid, timeout=60)
        assert resp["status"] == 200
        seen = upstream_view(resp)
        assert seen["body_bytes"] == 3 * 1024 * 1024
        assert seen["body_sha256"] == sha256_hex(body[: 3 * 1024 * 1024])
        # A large download on the same connection.
        resp = c.get(f"/down?size={size}")
        assert resp["status"] == 200 and len(resp["body"]) == size
        assert hashlib.sha256(resp["body"]).hexdigest() == sha256_hex(pattern_bytes(size))
    finally:
        c.close()


def test_expect_100_continue_is_answered_by_ward(ward, app):
    c = H2Client(ward.port)
    try:
        body = pattern_bytes(100000)
        sid = c.request("/expect", method="PUT", more=True,
                        headers=[("expect", "100-continue"), ("content-length", str(len(body)))])
        c.wait(lambda: c.responses[sid]["interim"] == [100], 5, "a 100 Continue")
        c.send_body(sid, body)
        resp = c.response(sid)
        assert resp["status"] == 200
        seen = upstream_view(resp)
        assert seen["body_sha256"] == sha256_hex(body)
        # ward answered the Expect itself; the upstream never sees it.
        assert "expect" not in {n.lower() for n, _ in seen["headers"]}
    finally:
        c.close()


def test_oversized_head_gets_431(ward):
    c = H2Client(ward.port)
    try:
        resp = c.get("/big", headers=[("x-big", "v" * 20000)])
        assert resp["status"] == 431, resp
        assert c.get("/small")["status"] == 200
    finally:
        c.close()


def test_rapid_reset_closes_the_attacker_and_serves_others(ward, app):
    bystander = H2Client(ward.port)
    try:
        assert bystander.get("/before")["status"] == 200
        enc = Encoder()
        block = enc.encode([(":method", "GET"), (":scheme", "http"), (":path", "/rr?delay=200"),
                            (":authority", "localhost")])
        before = app.count()
        s = raw_h2c(ward.port)
        sent = 0
        try:
            batch = bytearray()
            for i in range(4000):
                sid = 1 + 2 * i
                batch += frame(1, 0x4 | 0x1, sid, block)           # HEADERS, END_HEADERS|END_STREAM
                batch += frame(3, 0, sid, (8).to_bytes(4, "big"))  # RST_STREAM CANCEL
                if len(batch) > 32768:
                    s.sendall(batch)
                    sent += 1
                    batch.clear()
            s.sendall(batch)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed on us mid-attack: what we want
        assert closed_within(s, 10), "the rapid-reset connection stayed open"
        s.close()
        # The attack did not turn into upstream work.
        started = app.count() - before
        assert started < 100, f"{started} reset streams reached the upstream"
        assert bystander.get("/during")["status"] == 200
    finally:
        bystander.close()
    r = curl("--http2-prior-knowledge", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
             ward.url("/after"))
    assert r.stdout == b"200"


def test_continuation_flood_closes_the_connection(ward):
    enc = Encoder()
    block = enc.encode([(":method", "GET"), (":scheme", "http"), (":path", "/cont"),
                        (":authority", "localhost")] + [(f"x-h{i}", "v") for i in range(40)])
    s = raw_h2c(ward.port)
    try:
        pieces = [block[i:i + 4] for i in range(0, len(block), 4)]
        data = frame(1, 0, 1, pieces[0])  # HEADERS without END_HEADERS
        for p in pieces[1:-1]:
            data += frame(9, 0, 1, p)  # CONTINUATION
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert len(pieces) > 20
        assert closed_within(s, 10), "a flood of CONTINUATION frames was accepted"
    finally:
        s.close()
    assert ward.get("/still-serving").status == 200


def test_ping_flood_from_a_client_that_does_not_read_is_cut_off(ward):
    # Every PING needs an ACK; a client that never reads them makes the
    # answers pile up. Past nghttp2's bound on queued answers (1000) the
    # connection is closed instead of buffering without end.
    s = raw_h2c(ward.port)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ping = frame(6, 0, 0, b"12345678")
    batch = ping * 4096
    end = time.monotonic() + 20
    cut = False
    try:
        while time.monotonic() < end:
            s.sendall(batch)
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        cut = True
    s.close()
    assert cut, "20 s of unread PINGs were all answered"
    assert ward.get("/after-flood").status == 200


def test_client_reset_cancels_the_upstream_request(ward, app):
    c = H2Client(ward.port)
    try:
        before = app.requests()
        sid = c.request("/slow-cancel?delay=3000")
        # The request has reached the upstream: ward's stream is waiting on
        # it. (Accepted connections would not say so: the count includes the
        # test's own, and a reset before the stream starts logs nothing.)
        wait_for(lambda: app.requests() > before, 5, "the request at the upstream")
        c.conn.reset_stream(sid, error_code=8)
        c.flush()
        # The connection stays usable and ward logs the stream as 499.
        assert c.get("/after-reset")["status"] == 200
        wait_for(lambda: '"path":"/slow-cancel","query":"delay=3000","protocol":"HTTP/2.0",'
                 '"status":499' in ward.stdout_path.read_text(), 5,
                 "the reset stream logged as 499")
    finally:
        c.close()


def test_drain_sends_goaway_and_finishes_streams_in_flight(group, app, tmp_path):
    crt, key = self_signed_cert(tmp_path)
    w = group.ward(h2_config(app, crt, key, drain_timeout="10s"))
    before = app.count()
    # nghttp (python-h2 drops a connection on GOAWAY, streams in flight too).
    client = subprocess.Popen(["nghttp", "-v", "-t", "20", w.url("/inflight?delay=1500")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        # The request reached the upstream (counted once its head arrived).
        wait_for(lambda: app.count() > before, 5, "the request upstream")
        w.proc.send_signal(signal.SIGTERM)
        out, _ = client.communicate(timeout=20)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    text = out.decode(errors="replace")
    assert client.returncode == 0, text
    assert re.search(r"recv GOAWAY frame .*\n.*error_code=NO_ERROR", text), text
    assert ":status: 200" in text, text
    assert w.proc.wait(timeout=15) == 0


def test_idle_connection_gets_goaway(group, app, tmp_path):
    crt, key = self_signed_cert(tmp_path)
    w = group.ward(h2_config(app, crt, key, idle_timeout="1s"))
    c = H2Client(w.listener_ports["secure"], tls=True)
    try:
        assert c.get("/one")["status"] == 200
        started = time.monotonic()
        c.wait(lambda: c.closed, 10, "the idle connection to close")
        assert time.monotonic() - started < 5
        assert c.terminated is not None and c.terminated.error_code == 0
    finally:
        c.close()


def test_streams_share_upstream_keepalive_connections(ward, app):
    before = app.connections()
    out, total, done, ok, failed, errored = h2load(
        "-n", "300", "-c", "1", "-m", "10", ward.url("/pool"))
    assert ok == 300, out
    # Multiplexed streams reuse the pool rather than one connection each.
    assert app.connections() - before <= 20
