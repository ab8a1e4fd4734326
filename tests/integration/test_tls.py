"""TLS termination through the real binary, driven by openssl s_client and
curl: SNI picks the certificate (exact, wildcard, default), only TLS 1.2 and
1.3, ALPN, session resumption across connections and workers, mTLS, HSTS,
redirect_https, metrics, and certificate reload on SIGHUP without dropping
open connections. Certificates are made per run with the openssl CLI."""

import signal
import subprocess

import pytest

from harness import HOST, base_config, curl, slack, wait_for


def openssl(*args, input_bytes=None, timeout=20):
    return subprocess.run(["openssl", *args], capture_output=True, input=input_bytes,
                          timeout=timeout)


class Pki:
    """A throwaway CA and leaf certificates signed by it."""

    def __init__(self, root):
        self.root = root
        self.ca_key = root / "ca.key"
        self.ca = root / "ca.crt"
        r = openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", str(self.ca_key), "-out", str(self.ca), "-days", "2",
                    "-subj", "/CN=ward test CA")
        assert r.returncode == 0, r.stderr

    def leaf(self, name, sans, key="ec", client=False):
        key_path = self.root / f"{name}.key"
        csr = self.root / f"{name}.csr"
        crt = self.root / f"{name}.crt"
        ext = self.root / f"{name}.ext"
        usage = "clientAuth" if client else "serverAuth"
        san = ",".join(sans)
        ext.write_text(f"subjectAltName={san}\nextendedKeyUsage={usage}\n" if san else
                       f"extendedKeyUsage={usage}\n")
        keyopt = (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if key == "ec"
                  else ["-newkey", "rsa:2048"])
        r = openssl("req", "-new", *keyopt, "-nodes", "-keyout", str(key_path), "-out", str(csr),
                    "-subj", f"/CN={name}")
        assert r.returncode == 0, r.stderr
        r = openssl("x509", "-req", "-in", str(csr), "-CA", str(self.ca), "-CAkey",
                    str(self.ca_key), "-CAcreateserial", "-out", str(crt), "-days", "2",
                    "-extfile", str(ext))
        assert r.returncode == 0, r.stderr
        return crt, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    p = Pki(tmp_path_factory.mktemp("pki"))
    p.default = p.leaf("default.test", ["DNS:default.test", "IP:127.0.0.1"])
    p.exact = p.leaf("a.test", ["DNS:a.test"], key="rsa")
    p.wild = p.leaf("b.test", ["DNS:*.b.test"])
    p.client = p.leaf("client-1", [], client=True)
    return p


def tls_listener(pki, **tls):
    block = {"certificates": [{"cert": str(c), "key": str(k)}
                              for c, k in (pki.default, pki.exact, pki.wild)]}
    block.update(tls)
    return {"name": "secure", "tls": block}


@pytest.fixture(scope="module")
def app(module_group):
    return module_group.whoami("app")


@pytest.fixture(scope="module")
def ward(module_group, app, pki):
    cfg = base_config({"backend": [app]}, workers=2, limits={"max_body_size": "64MiB"},
                      filters=[{"security_headers": {}}])
    cfg["listeners"] = [{"name": "web"}, tls_listener(pki)]
    return module_group.ward(cfg)


def s_client(port, *args, input_bytes=b"", timeout=20):
    r = openssl("s_client", "-connect", f"{HOST}:{port}", *args,
                input_bytes=input_bytes, timeout=timeout)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


def served_subject(port, *args):
    _, out = s_client(port, "-brief", *args)
    for line in out.splitlines():
        if "Peer certificate:" in line or line.startswith("subject="):
            return line
    return out


def test_sni_picks_exact_wildcard_and_default(ward):
    port = ward.listener_ports["secure"]
    assert "CN = a.test" in served_subject(port, "-servername", "a.test")
    assert "CN = b.test" in served_subject(port, "-servername", "x.b.test")
    # A wildcard covers one label only: deeper names get the default.
    assert "CN = default.test" in served_subject(port, "-servername", "y.x.b.test")
    assert "CN = default.test" in served_subject(port, "-servername", "unknown.test")
    assert "CN = default.test" in served_subject(port, "-noservername")


@pytest.mark.parametrize("version", ["--http1.1", "--http2"])
def test_https_request_with_curl_verifies_and_forwards_proto(ward, pki, version):
    port = ward.listener_ports["secure"]
    r = curl(version, "--cacert", str(pki.ca), "--resolve", f"a.test:{port}:{HOST}",
             "-D", "-", f"https://a.test:{port}/tls?x=1")
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    expected = b"HTTP/1.1 200" if version == "--http1.1" else b"HTTP/2 200"
    assert head.startswith(expected), head
    assert b"strict-transport-security: max-age=31536000; includesubdomains" in head.lower()
    seen = {n.lower(): v for n, v in __import__("json").loads(body)["headers"]}
    assert seen["x-forwarded-proto"] == "https"


def test_echo_streams_both_ways_over_tls(ward, pki, tmp_path):
    # HTTP/1.1 full duplex over a TLS listener: ward reads the client's body
    # and writes the echoed response on one TLS connection at once. Well
    # within body_timeout: before full duplex, this stalled until it.
    port = ward.listener_ports["secure"]
    data = __import__("os").urandom(32 * 1024 * 1024)
    src, out = tmp_path / "up.bin", tmp_path / "echo.bin"
    src.write_bytes(data)
    r = curl("--http1.1", "--cacert", str(pki.ca), "--resolve", f"a.test:{port}:{HOST}",
             "--data-binary", f"@{src}", "-H", "Content-Type: application/octet-stream",
             "-o", str(out), "-w", "%{http_code}", f"https://a.test:{port}/echo?echo=1",
             timeout=slack(20))
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"200"
    assert out.read_bytes() == data


def test_old_protocols_are_refused(ward):
    port = ward.listener_ports["secure"]
    for flag in ("-tls1", "-tls1_1"):
        _, out = s_client(port, flag, "-servername", "a.test")
        assert "Cipher is (NONE)" in out, f"{flag} was not refused:\n{out}"
    rc, out = s_client(port, "-tls1_2", "-servername", "a.test", "-brief")
    assert "TLSv1.2" in out, out
    rc, out = s_client(port, "-tls1_3", "-servername", "a.test", "-brief")
    assert "TLSv1.3" in out, out


def test_weak_ciphers_are_refused(ward):
    port = ward.listener_ports["secure"]
    for cipher in ("AES128-SHA", "ECDHE-RSA-AES128-SHA", "AES128-GCM-SHA256"):
        _, out = s_client(port, "-tls1_2", "-cipher", cipher, "-servername", "a.test")
        assert "Cipher is (NONE)" in out, f"{cipher} was accepted:\n{out}"
    _, out = s_client(port, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256",
                      "-servername", "a.test")
    assert "ECDHE-RSA-AES128-GCM-SHA256" in out and "Cipher is (NONE)" not in out, out


def test_alpn_offers_http11(ward):
    port = ward.listener_ports["secure"]
    _, out = s_client(port, "-alpn", "http/1.1", "-servername", "a.test")
    assert "ALPN protocol: http/1.1" in out, out


def test_session_resumption_across_connections(ward, tmp_path):
    port = ward.listener_ports["secure"]
    sess = tmp_path / "sess.pem"
    # -ign_eof: read the answer, so the TLS 1.3 tickets sent after the
    # handshake arrive before the client leaves.
    _, out = s_client(port, "-tls1_3", "-servername", "a.test", "-ign_eof", "-sess_out",
                      str(sess), input_bytes=b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
    assert sess.exists() and sess.stat().st_size > 0, out
    # Two workers: whichever one takes the reconnect must resume (shared keys).
    reused = 0
    for _ in range(6):
        _, out = s_client(port, "-tls1_3", "-servername", "a.test", "-sess_in", str(sess))
        reused += "Reused, TLSv1.3" in out
    assert reused == 6, out


def test_metrics_count_handshakes_errors_and_expiry(ward, pki):
    port = ward.listener_ports["secure"]
    s_client(port, "-tls1_1")
    r = curl("--cacert", str(pki.ca), "--resolve", f"a.test:{port}:{HOST}",
             f"https://a.test:{port}/")
    assert r.returncode == 0, r.stderr

    def counted():
        m = ward.metrics()
        ok = sum(v for (n, ls), v in m.items() if n == "ward_tls_handshakes_total"
                 and dict(ls).get("listener") == "secure")
        errors = m.value("ward_tls_handshake_errors_total", listener="secure",
                         reason="unsupported_protocol")
        return m if ok >= 1 and errors >= 1 else None
    m = wait_for(counted, 5, "handshake metrics")
    expiry = [v for (n, ls), v in m.items() if n == "ward_tls_certificate_expiry_seconds"
              and dict(ls).get("listener") == "secure"]
    assert len(expiry) == 3 and all(v > 0 for v in expiry), expiry


def test_plain_http_on_tls_port_is_closed(ward):
    port = ward.listener_ports["secure"]
    import socket
    with socket.create_connection((HOST, port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(5)
        data = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    assert not data.startswith(b"HTTP/1.1 200"), data


def test_mutual_tls_accepts_signed_client_and_rejects_others(group, app, pki):
    cfg = base_config({"backend": [app]},
                      logging={"access_log": {"path": "stdout", "format": "json"}})
    cfg["listeners"] = [tls_listener(pki, client_ca=str(pki.ca))]
    ward = group.ward(cfg)
    port = ward.port
    url = f"https://a.test:{port}/mtls"
    common = ("--cacert", str(pki.ca), "--resolve", f"a.test:{port}:{HOST}")
    denied = curl(*common, url)
    assert denied.returncode != 0, "no client certificate must fail the handshake"
    cert, key = pki.client
    ok = curl(*common, "--http1.1", "--cert", str(cert), "--key", str(key), "-o", "/dev/null",
              "-w", "%{http_code}", url)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == b"200"
    # The verified subject reaches the access log, over HTTP/1.1 and HTTP/2.
    ok = curl(*common, "--http2", "--cert", str(cert), "--key", str(key), "-o", "/dev/null",
              "-w", "%{http_code}", url + "2")
    assert ok.stdout == b"200"

    def logged():
        lines = [__import__("json").loads(line) for line in
                 ward.stdout_path.read_text().splitlines() if line.startswith("{")]
        subjects = {e["protocol"]: e.get("tls_client_subject") for e in lines
                    if e["path"] in ("/mtls", "/mtls2")}
        return subjects == {"HTTP/1.1": "CN=client-1", "HTTP/2.0": "CN=client-1"}
    wait_for(logged, 5, "both requests logged with the client subject")


def test_redirect_https_listener_answers_308(group, app, pki):
    cfg = base_config({"backend": [app]})
    cfg["listeners"] = [{"name": "web", "redirect_https": 8443}, tls_listener(pki)]
    ward = group.ward(cfg)
    r = ward.get("/some/path?q=1", headers={"Host": "shop.example:8080"})
    assert r.status == 308
    assert r.header("Location") == "https://shop.example:8443/some/path?q=1"


def test_sighup_reloads_certificates_without_dropping_connections(group, app, pki, tmp_path):
    crt = tmp_path / "live.crt"
    key = tmp_path / "live.key"
    first_crt, first_key = pki.leaf("first.test", ["DNS:first.test", "IP:127.0.0.1"])
    second_crt, second_key = pki.leaf("second.test", ["DNS:first.test", "IP:127.0.0.1"])
    crt.write_bytes(first_crt.read_bytes())
    key.write_bytes(first_key.read_bytes())
    cfg = base_config({"backend": [app]})
    cfg["listeners"] = [{"name": "secure", "tls": {"certificates": [
        {"cert": str(crt), "key": str(key)}]}}]
    ward = group.ward(cfg)
    port = ward.port
    # An open TLS keep-alive connection across the reload.
    held = subprocess.Popen(["openssl", "s_client", "-connect", f"{HOST}:{port}", "-quiet",
                             "-servername", "first.test"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        held.stdin.write(b"GET /one HTTP/1.1\r\nHost: first.test\r\n\r\n")
        held.stdin.flush()
        assert held.stdout.readline().startswith(b"HTTP/1.1 200")
        assert "CN = first.test" in served_subject(port, "-servername", "first.test")
        crt.write_bytes(second_crt.read_bytes())
        key.write_bytes(second_key.read_bytes())
        ward.signal(signal.SIGHUP)
        wait_for(lambda: "CN = second.test" in served_subject(port, "-servername", "first.test"),
                 10, "new handshakes to get the new certificate")
        held.stdin.write(b"GET /two HTTP/1.1\r\nHost: first.test\r\nConnection: close\r\n\r\n")
        held.stdin.flush()
        rest = held.stdout.read()
        assert b"HTTP/1.1 200" in rest, "the connection opened before the reload still works"
    finally:
        held.kill()
        held.wait()
    assert ward.running()


def test_a_certificate_replaced_by_a_reload_leaves_the_expiry_metric(group, app, pki):
    """An alert on ward_tls_certificate_expiry_seconds must clear once the
    expiring certificate is no longer served: its series goes."""
    from test_reload import hup_and_wait, write_config
    old_crt, old_key = pki.leaf("old.test", ["DNS:old.test"])
    new_crt, new_key = pki.leaf("new.test", ["DNS:new.test"])
    cfg = base_config({"backend": [app]})
    cfg["listeners"] = [{"name": "secure", "tls": {"certificates": [
        {"cert": str(old_crt), "key": str(old_key)}]}}]
    ward = group.ward(cfg)

    def served():
        return {dict(ls)["cert"] for (n, ls) in ward.metrics()
                if n == "ward_tls_certificate_expiry_seconds"}
    assert served() == {str(old_crt)}
    # write_config keeps the listeners ward started with (their ports).
    ward.config["listeners"][0]["tls"]["certificates"] = [
        {"cert": str(new_crt), "key": str(new_key)}]
    write_config(ward, cfg)
    hup_and_wait(ward, 1)
    assert "CN = new.test" in served_subject(ward.port, "-servername", "new.test")
    assert served() == {str(new_crt)}


def test_websocket_over_tls(ward, pki):
    import ssl

    from test_websocket import WsClient
    context = ssl.create_default_context(cafile=str(pki.ca))
    ws = WsClient(ward.listener_ports["secure"], ssl_context=context)
    try:
        assert ws.status_line.startswith("HTTP/1.1 101"), ws.status_line
        assert ws.accept_ok
        ws.send(b"over tls")
        assert ws.recv() == (0x1, b"app:over tls")
        big = bytes(range(256)) * 1000
        ws.send(big, opcode=0x2)
        assert ws.recv() == (0x2, b"app:" + big)
    finally:
        ws.close()
