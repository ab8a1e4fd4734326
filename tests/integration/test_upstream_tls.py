"""Upstream TLS (`tls: true`, `tls_ca`, `tls_server_name`): ward talks HTTPS
to a ward-whoami started with a certificate from a throwaway CA, verifies
it (the CA, the name: the server's IP or tls_server_name), reuses pooled
TLS connections, streams large bodies both ways, tunnels WebSocket, and a
server it cannot verify is a connect failure (502, counted, logged).
`ward check` reports a tls_ca that cannot be used with file:line:column."""

import http.client
import json
import os
import re
import ssl
import subprocess

import pytest

from harness import (HOST, base_config, curl, free_port, pattern_bytes, port_accepts,
                     run_ward, sha256_hex, slack, wait_for)
from test_tls import Pki
from test_websocket import WsClient

UPSTREAM_NAME = "upstream.test"  # a DNS SAN of the upstream's certificate


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    p = Pki(tmp_path_factory.mktemp("upki"))
    p.server = p.leaf(UPSTREAM_NAME, [f"DNS:{UPSTREAM_NAME}", "IP:127.0.0.1"])
    # The same name signed by an unrelated CA: what "wrong CA" means.
    p.other = Pki(tmp_path_factory.mktemp("other-ca"))
    return p


@pytest.fixture(scope="module")
def app(module_group, pki):
    return module_group.whoami("tls-app", tls=pki.server)


def upstream(app, **keys):
    u = {"servers": [app.address], "tls": True}
    u.update(keys)
    return u


def https_count(app, pki):
    """whoami's /__count over HTTPS, straight to the upstream."""
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    conn = http.client.HTTPSConnection(HOST, app.port, context=ctx, timeout=10)
    try:
        conn.request("GET", "/__count")
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


@pytest.fixture(scope="module")
def ward(module_group, app, pki):
    return module_group.ward(base_config({"secure": upstream(app, tls_ca=str(pki.ca))},
                                         limits={"max_body_size": "64MiB"}))


def seen_headers(r):
    return {n.lower(): v for n, v in r.json()["headers"]}


def test_request_through_a_verified_tls_upstream(ward, app):
    r = ward.get("/hello?x=1", headers={"Host": "site.test", "X-Forwarded-For": "203.0.113.9"})
    assert r.status == 200, r
    body = r.json()
    assert body["name"] == "tls-app"
    assert body["target"] == "/hello?x=1"
    seen = seen_headers(r)
    # The forwarding headers are the same as over plain TCP.
    assert seen["host"] == "site.test"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-for"] == f"203.0.113.9, {HOST}"
    assert seen["x-real-ip"] == HOST
    assert seen["x-forwarded-host"] == "site.test"


def test_pooled_tls_connections_are_reused(ward, app, pki):
    before = https_count(app, pki)["connections"] - 1  # minus the count's own
    before_reused = ward.metrics().value("ward_upstream_connections_reused_total",
                                         upstream="secure")
    with ward.conn() as c:
        for i in range(20):
            c.send(f"GET /r{i} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
            r = c.read_response()
            assert r.status == 200, r
    for i in range(5):  # new client connections, same upstream pool
        assert ward.get(f"/n{i}").status == 200
    opened = https_count(app, pki)["connections"] - 1 - before
    assert opened <= 2, f"25 requests opened {opened} TLS connections upstream"
    reused = ward.metrics().value("ward_upstream_connections_reused_total",
                                  upstream="secure") - before_reused
    assert reused >= 23


def test_large_bodies_both_ways(ward):
    size = 8 * 1024 * 1024
    data = os.urandom(size)
    r = ward.request("POST", "/upload", body=data, headers={"Content-Type": "x/y"}, timeout=60)
    assert r.status == 200, r
    assert r.json()["body_bytes"] == size
    assert r.json()["body_sha256"] == sha256_hex(data)
    r = ward.get(f"/download?size={size}", timeout=60)
    assert r.status == 200
    assert len(r.body) == size
    assert sha256_hex(r.body) == sha256_hex(pattern_bytes(size))


@pytest.mark.slow
def test_echo_of_32_mib_streams_through_the_tls_upstream(ward, tmp_path):
    # Full duplex through the upstream TLS leg: the echo comes back while
    # the upload still goes up, well within body_timeout (before full
    # duplex it stalled on the sockets' buffers until then). curl reads
    # while it sends; http.client would not.
    size = 32 * 1024 * 1024
    data = os.urandom(size)
    src = tmp_path / "up.bin"
    src.write_bytes(data)
    out = tmp_path / "echo.bin"
    r = curl("--data-binary", f"@{src}", "-H", "Content-Type: application/octet-stream",
             "-o", str(out), "-w", "%{http_code}", f"http://{HOST}:{ward.port}/echo?echo=1",
             timeout=slack(20))
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"200"
    assert sha256_hex(out.read_bytes()) == sha256_hex(data)


def test_chunked_response_and_an_http10_client(ward):
    r = ward.get("/c?size=300000&chunked=1", timeout=30)
    assert r.status == 200 and r.body == pattern_bytes(300000)
    with ward.conn() as c:
        c.send(b"GET /old?size=100000 HTTP/1.0\r\nHost: a\r\n\r\n")
        data = c.read_until_close(slack(10))
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200"), head
    assert body == pattern_bytes(100000)


def test_websocket_through_a_tls_upstream(ward):
    ws = WsClient(ward.port)
    try:
        assert ws.status_line.startswith("HTTP/1.1 101"), ws.status_line
        ws.send(b"hello")
        assert ws.recv() == (0x1, b"tls-app:hello")
        big = os.urandom(200_000)
        ws.send(big, opcode=0x2)
        assert ws.recv() == (0x2, b"tls-app:" + big)
        ws.send(b"\x03\xe8", opcode=0x8)
        opcode, _ = ws.recv()
        assert opcode == 0x8
        assert ws.closed_within(slack(5))
    finally:
        ws.close()
    assert ward.get("/after-ws").status == 200


def test_wrong_ca_is_a_connect_failure(group, app, pki):
    ward = group.ward(base_config({"secure": upstream(app, tls_ca=str(pki.other.ca),
                                                      retries=0)}))
    r = ward.get("/")
    assert r.status == 502, r
    m = ward.metrics()
    assert m.value("ward_upstream_connect_failures_total", upstream="secure") >= 1
    wait_for(lambda: "certificate verify failed" in ward.stderr_text(), slack(5),
             "the verification failure in the error log")


def test_system_cas_do_not_trust_a_private_ca(group, app):
    ward = group.ward(base_config({"secure": upstream(app, retries=0)}))
    assert ward.get("/").status == 502
    assert ward.metrics().value("ward_upstream_connect_failures_total", upstream="secure") >= 1


def test_tls_server_name_not_in_the_certificate_is_refused(group, app, pki):
    ward = group.ward(base_config({"secure": upstream(app, tls_ca=str(pki.ca),
                                                      tls_server_name="other.test",
                                                      retries=0)}))
    assert ward.get("/").status == 502
    assert ward.metrics().value("ward_upstream_connect_failures_total", upstream="secure") >= 1
    wait_for(lambda: re.search(r"verify failed.*other\.test", ward.stderr_text()), slack(5),
             "the name mismatch in the error log")


def test_tls_server_name_matching_the_certificate_by_ip(group, app, pki):
    ward = group.ward(base_config({"secure": upstream(app, tls_ca=str(pki.ca),
                                                      tls_server_name=UPSTREAM_NAME)}))
    r = ward.get("/named")
    assert r.status == 200, r
    assert r.json()["name"] == "tls-app"


def test_plain_upstream_behind_tls_true_fails_cleanly(group, pki):
    plain = group.whoami("plain")
    ward = group.ward(base_config({"secure": upstream(plain, tls_ca=str(pki.ca), retries=0)}))
    assert ward.get("/").status == 502
    assert ward.running()


def test_failed_server_is_retried_on_the_next(group, app, pki):
    # The first server does not verify (a plain one); the retry goes to the
    # TLS one and the client never sees the failure.
    plain = group.whoami("plain")
    ward = group.ward(base_config({"secure": {"servers": [plain.address, app.address],
                                              "tls": True, "tls_ca": str(pki.ca),
                                              "retries": 1}}))
    for _ in range(4):
        r = ward.get("/")
        assert r.status == 200, r
        assert r.json()["name"] == "tls-app"


def test_new_connections_resume_the_tls_session(group, pki):
    # openssl s_server -www answers with a page saying whether the
    # connection's session was "New" or "Reused" (and ends the body by
    # closing: a close-delimited body over TLS).
    port = free_port()
    group.track(subprocess.Popen(
        ["openssl", "s_server", "-accept", f"{HOST}:{port}", "-cert", str(pki.server[0]),
         "-key", str(pki.server[1]), "-www"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    wait_for(lambda: port_accepts(port), slack(5), "openssl s_server to listen")
    ward = group.ward(base_config({"secure": {"servers": [f"{HOST}:{port}"], "tls": True,
                                              "tls_ca": str(pki.ca), "keepalive": 0}}))
    seen = []
    for _ in range(3):
        r = ward.get("/")
        assert r.status == 200, r
        m = re.search(rb"(New|Reused), (TLSv1\.[23])", r.body)
        assert m, r.body[:500]
        seen.append(m.group(1).decode())
    assert seen[0] == "New"
    assert seen[1:] == ["Reused", "Reused"], seen


CHECK = """\
workers: 1
listeners:
  - name: web
    address: 127.0.0.1:1
routes:
  - match: {{ path_prefix: / }}
    upstream: app
upstreams:
  app:
    servers: [127.0.0.1:2]
    tls: true
    tls_ca: {ca}
"""


def test_check_reports_an_unusable_tls_ca(tmp_path, pki):
    path = tmp_path / "ward.yaml"
    missing = tmp_path / "no-such-ca.pem"
    path.write_text(CHECK.format(ca=missing))
    res = run_ward("check", "-c", str(path))
    assert res.returncode == 1
    assert re.search(re.escape(str(path)) + r":12:\d+: upstreams\.app\.tls_ca: cannot read .*No such file", res.stderr), \
        res.stderr
    # Readable, but not a CA certificate: reported at the upstream.
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    path.write_text(CHECK.format(ca=garbage))
    res = run_ward("check", "-c", str(path))
    assert res.returncode == 1
    assert re.search(re.escape(str(path)) + r":9:\d+: .*tls_ca.*garbage\.pem", res.stderr), \
        res.stderr
    path.write_text(CHECK.format(ca=pki.ca))
    res = run_ward("check", "-c", str(path))
    assert res.returncode == 0, res.stderr
    assert "configuration ok" in res.stdout
