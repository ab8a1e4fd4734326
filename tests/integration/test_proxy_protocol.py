"""`proxy_protocol: true` on listeners, through the real binary: a PROXY v1 or
v2 header before the client's bytes (plain HTTP and TLS) makes its source the
client (X-Forwarded-For, X-Real-IP, access log), bytes sent with the header in
one packet are served, and a missing, malformed, too large or stalled header
closes the connection without a byte and counts in
ward_proxy_protocol_errors_total{listener,reason}. trusted_proxies, when not
empty, must contain the socket peer for the header to be believed."""

import json
import os
import socket
import ssl
import struct
import time

import pytest

from harness import (HOST, Conn, base_config, parse_responses, self_signed_cert, slack,
                     wait_for)

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
METRIC = "ward_proxy_protocol_errors_total"


def v1(source, dest="127.0.0.1", sport=40000, dport=443, proto=None):
    proto = proto or ("TCP6" if ":" in source else "TCP4")
    return f"PROXY {proto} {source} {dest} {sport} {dport}\r\n".encode()


def v2(source, dest, sport=40000, dport=443, command=0x1, tlvs=b""):
    if ":" in source:
        fam, family = 0x21, socket.AF_INET6
    else:
        fam, family = 0x11, socket.AF_INET
    body = (socket.inet_pton(family, source) + socket.inet_pton(family, dest)
            + struct.pack("!HH", sport, dport) + tlvs)
    return V2_SIGNATURE + bytes([0x20 | command, fam]) + struct.pack("!H", len(body)) + body


def v2_local():
    return V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", 0)


def get(path, close=True):
    conn = "Connection: close\r\n" if close else ""
    return f"GET {path} HTTP/1.1\r\nHost: pp.test\r\n{conn}\r\n".encode()


def seen_headers(response):
    """The request headers the whoami upstream received, names lowercased."""
    out = {}
    for name, value in json.loads(response.body)["headers"]:
        out.setdefault(name.lower(), []).append(value)
    return out


def start(group, cfg):
    """Starts ward; a config refused as "not supported yet" fails the test
    (the harness would skip it, which would hide a broken feature)."""
    try:
        return group.ward(cfg)
    except pytest.skip.Exception as e:
        pytest.fail(f"proxy_protocol must be supported: {e}")



@pytest.fixture(scope="module")
def app(module_group):
    return module_group.whoami("app")


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return self_signed_cert(tmp_path_factory.mktemp("pp-cert"))


def pp_config(app, cert, **extra):
    crt, key = cert
    cfg = base_config({"backend": [app]}, workers=2,
                      logging={"access_log": {"path": "stdout", "format": "json"}}, **extra)
    cfg["listeners"] = [
        {"name": "web", "proxy_protocol": True},
        {"name": "secure", "proxy_protocol": True,
         "tls": {"certificates": [{"cert": str(crt), "key": str(key)}]}},
        {"name": "plain"},
    ]
    return cfg


@pytest.fixture(scope="module")
def ward(module_group, app, cert):
    return start(module_group, pp_config(app, cert))


def log_entry(ward, path):
    return wait_for(lambda: next((e for e in ward.json_log_entries() if e.get("path") == path),
                                 None), slack(5), f"access log line for {path}")


def errors(ward, listener, reason):
    return ward.metrics().value(METRIC, listener=listener, reason=reason)


def wait_errors(ward, listener, reason, at_least):
    wait_for(lambda: errors(ward, listener, reason) >= at_least, slack(5),
             f"{METRIC}{{listener={listener},reason={reason}}} >= {at_least}")


def assert_client(ward, response, path, client):
    assert response.status == 200, response
    h = seen_headers(response)
    assert h["x-forwarded-for"] == [client]
    assert h["x-real-ip"] == [client]
    assert log_entry(ward, path)["client_ip"] == client


# ---------------------------------------------------------------- the header is used

def test_v1_header_and_request_in_one_packet(ward):
    with ward.conn() as c:
        c.send(v1("203.0.113.7") + get("/v1"))  # one send: the request rides with the header
        r = c.read_response()
    assert_client(ward, r, "/v1", "203.0.113.7")


def test_v1_tcp6_header(ward):
    with ward.conn() as c:
        c.send(v1("2001:db8::7", dest="2001:db8::1") + get("/v1-tcp6"))
        r = c.read_response()
    assert_client(ward, r, "/v1-tcp6", "2001:db8::7")


@pytest.mark.parametrize("source,dest", [("198.51.100.20", "198.51.100.1"),
                                         ("2001:db8::20", "2001:db8::1")],
                         ids=["tcp4", "tcp6"])
def test_v2_header(ward, source, dest):
    path = f"/v2-{source}"
    with ward.conn() as c:
        c.send(v2(source, dest) + get(path))
        r = c.read_response()
    assert_client(ward, r, path, source)


def test_v2_header_with_tlvs(ward):
    # PP2_TYPE_AUTHORITY and PP2_TYPE_UNIQUE_ID, as balancers send them: skipped.
    tlvs = b"\x02" + struct.pack("!H", 7) + b"pp.test" + b"\x05" + struct.pack("!H", 4) + b"abcd"
    with ward.conn() as c:
        c.send(v2("198.51.100.21", "198.51.100.1", tlvs=tlvs) + get("/v2-tlv"))
        r = c.read_response()
    assert_client(ward, r, "/v2-tlv", "198.51.100.21")


def test_header_dripped_a_byte_at_a_time_then_keep_alive(ward):
    header = v1("203.0.113.8")
    with ward.conn() as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(header)):
            c.send(header[i:i + 1])
            time.sleep(0.002)  # pacing, so the header arrives in many segments
        c.send(get("/drip-1", close=False))
        first = c.read_response()
        c.send(get("/drip-2"))
        second = c.read_response()
    assert_client(ward, first, "/drip-1", "203.0.113.8")
    assert_client(ward, second, "/drip-2", "203.0.113.8")  # the whole connection


def test_client_xff_is_appended_to_not_believed(ward):
    # The PROXY source (not in trusted_proxies, which is empty) sent its own
    # X-Forwarded-For: it is kept in the list, but the client is the source.
    req = b"GET /xff HTTP/1.1\r\nHost: pp.test\r\nX-Forwarded-For: 192.0.2.99\r\n" \
          b"Connection: close\r\n\r\n"
    with ward.conn() as c:
        c.send(v1("203.0.113.9") + req)
        r = c.read_response()
    h = seen_headers(r)
    assert h["x-forwarded-for"] == ["192.0.2.99, 203.0.113.9"]
    assert h["x-real-ip"] == ["203.0.113.9"]
    assert log_entry(ward, "/xff")["client_ip"] == "203.0.113.9"


@pytest.mark.parametrize("header", [v2_local(), b"PROXY UNKNOWN\r\n",
                                    b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"],
                         ids=["v2-local", "v1-unknown", "v1-unknown-with-addresses"])
def test_local_or_unknown_keeps_the_socket_peer(ward, header):
    path = f"/local-{len(header)}"
    with ward.conn() as c:
        c.send(header + get(path))
        r = c.read_response()
    assert_client(ward, r, path, "127.0.0.1")


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_header_then_tls(ward, cert, version):
    crt, _ = cert
    port = ward.listener_ports["secure"]
    header = v1("203.0.113.30") if version == "v1" else v2("203.0.113.30", "127.0.0.1")
    path = f"/tls-{version}"
    raw = socket.create_connection((HOST, port), timeout=5)
    try:
        raw.sendall(header)
        ctx = ssl.create_default_context(cafile=str(crt))
        tls = ctx.wrap_socket(raw, server_hostname="localhost")
        c = Conn.__new__(Conn)
        c.sock, c.buf, c.timeout = tls, b"", 5.0
        c.send(get(path))
        r = c.read_response()
        tls.close()
    finally:
        raw.close()
    assert_client(ward, r, path, "203.0.113.30")
    assert seen_headers(r)["x-forwarded-proto"] == ["https"]
    assert log_entry(ward, path)["tls_version"] in ("TLSv1.3", "TLSv1.2")


def test_header_and_client_hello_in_one_packet(ward, cert):
    # The ClientHello made in memory first, then sent in the same send() as
    # the header: the TLS stream must get every byte after the header.
    crt, _ = cert
    path = "/tls-one-packet"
    ctx = ssl.create_default_context(cafile=str(crt))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    assert hello[:1] == b"\x16", hello[:10]
    with socket.create_connection((HOST, ward.listener_ports["secure"]), timeout=5) as raw:
        raw.sendall(v2("203.0.113.31", "127.0.0.1") + hello)

        def pump(step):
            deadline = time.monotonic() + slack(5)
            while True:
                try:
                    result = step()
                    raw.sendall(outgoing.read())
                    return result
                except ssl.SSLWantReadError:
                    raw.sendall(outgoing.read())
                    assert time.monotonic() < deadline, "TLS exchange timed out"
                    data = raw.recv(1 << 16)
                    if not data:
                        incoming.write_eof()
                    else:
                        incoming.write(data)

        pump(tls.do_handshake)
        pump(lambda: tls.write(get(path)))
        reply = b""
        while True:
            try:
                chunk = pump(lambda: tls.read(1 << 16))
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break
            if not chunk:
                break
            reply += chunk
    responses = parse_responses(reply)
    assert len(responses) == 1, reply[:300]
    assert_client(ward, responses[0], path, "203.0.113.31")


def test_listener_without_the_option_is_unchanged(ward):
    # Only listeners that opt in expect a header: elsewhere it is a bad request.
    with ward.conn(listener="plain") as c:
        c.send(v1("203.0.113.7") + get("/plain"))
        raw = c.read_until_close(slack(5))
    assert raw.startswith(b"HTTP/1.1 4"), raw[:200]
    with ward.conn(listener="plain") as c:
        c.send(get("/plain-ok"))
        r = c.read_response()
    assert_client(ward, r, "/plain-ok", "127.0.0.1")


# ---------------------------------------------------------------- refused

def assert_closed_silently(ward, data, listener="web"):
    with ward.conn(listener=listener) as c:
        c.send(data)
        raw = c.read_until_close(slack(5))
    assert raw == b"", raw[:200]


@pytest.mark.parametrize("data", [
    b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 443\n" + get("/lf"),      # LF without CR
    b"PROXY TCP9 203.0.113.7 127.0.0.1 40000 443\r\n" + get("/proto"),
    b"PROXY TCP4 203.0.113.7 127.0.0.1 040000 443\r\n" + get("/zero"),  # leading zero
    b"PROXY TCP4 2001:db8::1 127.0.0.1 40000 443\r\n" + get("/fam"),
    b"PROXY  TCP4 203.0.113.7 127.0.0.1 40000 443\r\n",                 # two spaces
    V2_SIGNATURE + bytes([0x31, 0x11]) + struct.pack("!H", 12) + bytes(12),  # version 3
    V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", 4) + bytes(4),   # short addresses
], ids=["v1-lf", "v1-proto", "v1-leading-zero", "v1-family", "v1-spaces", "v2-version",
        "v2-short"])
def test_malformed_header_closes_without_a_response(ward, app, data):
    before = errors(ward, "web", "malformed")
    upstream_before = app.count()
    assert_closed_silently(ward, data)
    wait_errors(ward, "web", "malformed", before + 1)
    assert app.count() == upstream_before


def test_request_without_a_header_is_closed(ward, app):
    before = errors(ward, "web", "not_proxy")
    upstream_before = app.count()
    assert_closed_silently(ward, get("/no-header"))
    wait_errors(ward, "web", "not_proxy", before + 1)
    assert app.count() == upstream_before


def test_tls_without_a_header_is_closed(ward, cert):
    crt, _ = cert
    before = errors(ward, "secure", "not_proxy")
    ctx = ssl.create_default_context(cafile=str(crt))
    with socket.create_connection((HOST, ward.listener_ports["secure"]), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(get("/tls-no-header"))
                if not tls.recv(1):
                    raise ConnectionError("closed")
    wait_errors(ward, "secure", "not_proxy", before + 1)


def test_too_large_headers_are_refused(ward):
    before = errors(ward, "web", "too_large")
    assert_closed_silently(ward, b"PROXY TCP4 " + b"1" * 200 + b"\r\n")
    # A v2 header announcing 60000 bytes is refused from its 16 fixed bytes.
    assert_closed_silently(ward, V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", 60000))
    wait_errors(ward, "web", "too_large", before + 2)


def test_connection_closed_mid_header_is_counted(ward):
    before = errors(ward, "web", "closed")
    with ward.conn() as c:
        c.send(b"PROXY TCP4 203.0.113.7")
        c.sock.shutdown(socket.SHUT_WR)
        assert c.read_until_close(slack(5)) == b""
    wait_errors(ward, "web", "closed", before + 1)


def test_connect_and_close_is_not_an_error(ward):
    # Balancers' TCP health checks connect and close without a byte.
    before = ward.metrics().value(METRIC)
    not_proxy = errors(ward, "web", "not_proxy")
    for _ in range(3):
        socket.create_connection((HOST, ward.port), timeout=5).close()
    # A later error is counted alone: nothing was counted for the three.
    assert_closed_silently(ward, get("/after-probes"))
    wait_errors(ward, "web", "not_proxy", not_proxy + 1)
    assert ward.metrics().value(METRIC) == before + 1


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_stalled_header_is_closed_after_header_timeout(group, app, cert):
    ward = start(group, pp_config(app, cert, limits={"header_timeout": "1s"}))
    with ward.conn(timeout=slack(10)) as c:
        cpu_before = cpu_seconds(ward.pid)
        start_time = time.monotonic()
        # A valid prefix, then nothing: ward must neither wait forever nor spin.
        c.send(b"PROXY TCP4 203.0.113.7 ")
        assert c.read_until_close(slack(6)) == b""
        elapsed = time.monotonic() - start_time
        cpu = cpu_seconds(ward.pid) - cpu_before
    assert elapsed >= 0.9, elapsed
    assert cpu < 0.25 * elapsed, f"ward used {cpu:.2f}s of CPU in {elapsed:.2f}s: spinning?"
    wait_errors(ward, "web", "timeout", 1)
    # The same on the TLS listener, where the handshake has not started yet.
    with ward.conn(listener="secure", timeout=slack(10)) as c:
        c.send(V2_SIGNATURE + bytes([0x21, 0x11]))
        assert c.read_until_close(slack(6)) == b""
    wait_errors(ward, "secure", "timeout", 1)


# ---------------------------------------------------------------- trusted_proxies

def test_untrusted_socket_peer_header_is_ignored(group, app, cert):
    # 127.0.0.1 is not in trusted_proxies: the header is read (and must be
    # valid) but its address is not believed.
    ward = start(group, pp_config(app, cert, trusted_proxies=["10.0.0.0/8"]))
    with ward.conn() as c:
        c.send(v1("203.0.113.7") + get("/untrusted"))
        r = c.read_response()
    assert_client(ward, r, "/untrusted", "127.0.0.1")
    assert_closed_silently(ward, b"PROXY TCP9 x\r\n" + get("/untrusted-bad"))
    wait_errors(ward, "web", "malformed", 1)


def test_trusted_socket_peer_header_is_believed(group, app, cert):
    ward = start(group, pp_config(app, cert, trusted_proxies=["127.0.0.0/8"]))
    with ward.conn() as c:
        c.send(v2("203.0.113.40", "127.0.0.1") + get("/trusted"))
        r = c.read_response()
    assert_client(ward, r, "/trusted", "203.0.113.40")
