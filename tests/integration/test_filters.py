"""The filter chain through the real binary: rate limiting, security headers,
CORS, ip_access, api_key, request_id, headers and compress, each driven by
real clients (http.client from chosen loopback source addresses, curl)."""

import gzip
import http.client
import re
import subprocess

import pytest

from harness import HOST, Response, base_config, curl, pattern_bytes, run_ward, wait_for

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def request_from(source_ip, port, method="GET", path="/", headers=None, body=None):
    """One request from `source_ip` (any 127.0.0.0/8 address works on Linux
    loopback), so a test can be two different clients."""
    conn = http.client.HTTPConnection(HOST, port, timeout=10, source_address=(source_ip, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return Response(f"HTTP/{r.version / 10:.1f}", r.status, r.reason, list(r.getheaders()),
                        data)
    finally:
        conn.close()


def upstream_headers(response):
    """The request headers whoami received, as a dict of lower-case names."""
    return {n.lower(): v for n, v in response.json()["headers"]}


@pytest.fixture(scope="module")
def app(module_group):
    return module_group.whoami("app")


# ---------------------------------------------------------------- rate_limit

@pytest.fixture(scope="module")
def limited(module_group, app):
    routes = [
        {"name": "byip", "match": {"path_prefix": "/ip/"}, "upstream": "backend",
         "filters": [{"rate_limit": {"rate": "30/minute", "burst": 10}}]},
        {"name": "byheader", "match": {"path_prefix": "/hdr/"}, "upstream": "backend",
         "filters": [{"rate_limit": {"key": "header:X-Client", "rate": "30/minute",
                                     "burst": 2}}]},
        {"name": "dry", "match": {"path_prefix": "/dry/"}, "upstream": "backend",
         "filters": [{"rate_limit": {"rate": "1/hour", "burst": 1, "dry_run": True}}]},
        {"name": "rest", "match": {"path_prefix": "/"}, "upstream": "backend"},
    ]
    cfg = base_config({"backend": [app]}, routes=routes,
                      filters=[{"request_id": {}}, {"security_headers": {}}])
    return module_group.ward(cfg)


def test_burst_of_ten_passes_then_429_with_retry_after(limited, app):
    before = app.count()
    statuses = []
    remaining = []
    for _ in range(10):
        r = request_from("127.0.0.10", limited.port, path="/ip/x")
        statuses.append(r.status)
        remaining.append(r.header("RateLimit-Remaining"))
        assert r.header("RateLimit-Limit") == "10"
        assert r.header("RateLimit-Policy") == "10;w=20"
    assert statuses == [200] * 10
    assert remaining == [str(n) for n in range(9, -1, -1)]
    r = request_from("127.0.0.10", limited.port, path="/ip/x")
    assert r.status == 429
    assert r.json() == {"error": "rate_limited", "status": 429}
    # 30/minute: the next token is at most 2 s away.
    assert 1 <= int(r.header("Retry-After")) <= 2
    assert r.header("RateLimit-Remaining") == "0"
    assert 1 <= int(r.header("RateLimit-Reset")) <= 2
    # The 429 is ward's own reply and still gets the global chain's headers.
    assert r.header("X-Content-Type-Options") == "nosniff"
    assert r.header("X-Frame-Options") == "SAMEORIGIN"
    assert UUID_RE.match(r.header("X-Request-ID", ""))
    assert app.count() - before == 10, "the limited request must not reach the upstream"
    m = limited.metrics()
    assert m.value("ward_ratelimit_requests_total", filter="byip.rate_limit",
                   result="allowed") >= 10
    assert m.value("ward_ratelimit_requests_total", filter="byip.rate_limit",
                   result="limited") >= 1


def test_two_clients_have_separate_buckets(limited):
    for _ in range(10):
        assert request_from("127.0.0.11", limited.port, path="/ip/y").status == 200
    assert request_from("127.0.0.11", limited.port, path="/ip/y").status == 429
    # Another address starts with a full bucket of its own.
    r = request_from("127.0.0.12", limited.port, path="/ip/y")
    assert r.status == 200
    assert r.header("RateLimit-Remaining") == "9"


def test_header_key_buckets_and_fallback_to_client_ip(limited):
    def get(client=None, source="127.0.0.20"):
        headers = {"X-Client": client} if client else {}
        return request_from(source, limited.port, path="/hdr/", headers=headers).status

    assert [get("alice"), get("alice"), get("alice")] == [200, 200, 429]
    assert [get("bob"), get("bob")] == [200, 200]
    # Without the header the client IP is the key: its own bucket of 2.
    assert [get(), get(), get()] == [200, 200, 429]
    # A header value equal to that IP is not the IP's bucket.
    assert get("127.0.0.20") == 200


def test_dry_run_counts_but_lets_everything_through(limited):
    statuses = [request_from("127.0.0.30", limited.port, path="/dry/").status
                for _ in range(3)]
    assert statuses == [200, 200, 200]
    m = limited.metrics()
    assert m.value("ward_ratelimit_requests_total", filter="dry.rate_limit",
                   result="dry_run") >= 2


def test_unrouted_request_gets_security_headers_and_id(group, app):
    routes = [{"match": {"host": "only.example", "path_prefix": "/"}, "upstream": "backend"}]
    ward = group.ward(base_config({"backend": [app]}, routes=routes,
                                  filters=[{"request_id": {}}, {"security_headers": {}}]))
    r = ward.get("/", headers={"Host": "other.example"})
    assert r.status == 404
    assert r.header("X-Frame-Options") == "SAMEORIGIN"
    assert r.header("Referrer-Policy") == "strict-origin-when-cross-origin"
    assert r.header("Strict-Transport-Security") is None, "HSTS only on TLS listeners"
    assert UUID_RE.match(r.header("X-Request-ID", ""))


# ---------------------------------------------------------------- the catalogue

@pytest.fixture(scope="module")
def gateway(module_group, app):
    routes = [
        {"name": "cors", "match": {"path_prefix": "/cors/"}, "upstream": "backend",
         "filters": [{"cors": {"allow_origins": ["https://app.example"],
                               "allow_methods": ["GET", "PUT"], "max_age": "5m"}}]},
        {"name": "private", "match": {"path_prefix": "/private/"}, "upstream": "backend",
         "filters": [{"ip_access": {"allow": ["127.0.0.0/8"], "deny": ["127.0.0.66/32"]}}]},
        {"name": "keyed", "match": {"path_prefix": "/keyed/"}, "upstream": "backend",
         "filters": [{"api_key": {"keys": ["${API_KEY}", "second-key"]}}]},
        {"name": "edit", "match": {"path_prefix": "/edit/"}, "upstream": "backend",
         "filters": [{"headers": {"request_set": {"X-Tenant": "blue"},
                                  "request_remove": ["X-Drop-Me"],
                                  "response_set": {"Cache-Control": "no-store"},
                                  "response_remove": ["X-Whoami"]}}]},
        {"name": "zip", "match": {"path_prefix": "/zip/"}, "upstream": "backend",
         "filters": [{"compress": {}}]},
        {"name": "rest", "match": {"path_prefix": "/"}, "upstream": "backend"},
    ]
    cfg = base_config({"backend": [app]}, routes=routes,
                      filters=[{"request_id": {}},
                               {"security_headers": {"hide_server": True,
                                                     "X-Frame-Options": "DENY"}}],
                      logging={"access_log": {"path": "stdout", "format": "json"}})
    return module_group.ward(cfg, env={"API_KEY": "k-7f3a9c"})


def test_security_headers_options_apply_to_upstream_answers(gateway):
    r = gateway.get("/plain")
    assert r.status == 200
    assert r.header("X-Frame-Options") == "DENY"
    assert r.header("X-Content-Type-Options") == "nosniff"
    assert r.header("Server") is None, "hide_server removes the upstream's Server"


def test_cors_preflight_is_answered_by_ward(gateway, app):
    before = app.count()
    r = gateway.request("OPTIONS", "/cors/item", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "content-type"})
    assert r.status == 204
    assert r.header("Access-Control-Allow-Origin") == "https://app.example"
    assert "PUT" in r.header("Access-Control-Allow-Methods", "")
    assert r.header("Access-Control-Max-Age") == "300"
    assert "origin" in r.header("Vary", "").lower()
    assert app.count() == before, "a preflight never reaches the upstream"


def test_cors_actual_request_and_disallowed_origin(gateway):
    ok = gateway.get("/cors/item", headers={"Origin": "https://app.example"})
    assert ok.status == 200
    assert ok.header("Access-Control-Allow-Origin") == "https://app.example"
    bad = gateway.get("/cors/item", headers={"Origin": "https://evil.example"})
    assert bad.status == 200
    assert not any(n.lower().startswith("access-control-") for n, _ in bad.headers)


def test_ip_access_denies_with_403(gateway, app):
    assert request_from("127.0.0.65", gateway.port, path="/private/").status == 200
    before = app.count()
    r = request_from("127.0.0.66", gateway.port, path="/private/")
    assert r.status == 403
    assert r.json() == {"error": "forbidden", "status": 403}
    assert r.header("X-Frame-Options") == "DENY"
    assert app.count() == before


def test_api_key_required_and_stripped(gateway, app):
    before = app.count()
    assert gateway.get("/keyed/").status == 401
    wrong = gateway.get("/keyed/", headers={"X-API-Key": "k-7f3a9d"})
    assert wrong.status == 401
    assert wrong.json() == {"error": "unauthorized", "status": 401}
    assert app.count() == before
    for key in ("k-7f3a9c", "second-key"):
        r = gateway.get("/keyed/", headers={"X-API-Key": key})
        assert r.status == 200
        assert "x-api-key" not in upstream_headers(r), "the key must not reach the upstream"


def test_request_id_made_kept_forwarded_and_logged(gateway):
    r = gateway.get("/rid/made")
    made = r.header("X-Request-ID")
    assert UUID_RE.match(made)
    assert upstream_headers(r)["x-request-id"] == made
    kept = gateway.get("/rid/kept", headers={"X-Request-ID": "abc.DEF:123-x_y"})
    assert kept.header("X-Request-ID") == "abc.DEF:123-x_y"
    bad = gateway.get("/rid/bad", headers={"X-Request-ID": "has space"})
    assert UUID_RE.match(bad.header("X-Request-ID"))
    second = gateway.get("/rid/made")
    assert second.header("X-Request-ID") != made

    def logged(path):
        return next((e for e in gateway.json_log_entries() if e.get("path") == path), None)
    entry = wait_for(lambda: logged("/rid/made"), 5, "the access log line")
    assert entry["request_id"] == made


def test_headers_filter_edits_both_directions(gateway):
    r = gateway.get("/edit/", headers={"X-Drop-Me": "1"})
    seen = upstream_headers(r)
    assert seen["x-tenant"] == "blue"
    assert "x-drop-me" not in seen
    assert r.header("Cache-Control") == "no-store"
    assert r.header("X-Whoami") is None


def test_compress_round_trip_with_curl(gateway):
    url = gateway.url("/zip/?size=200000&type=text/plain")
    out = curl("--compressed", "-D", "-", "-o", "-", url)
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    head_text = head.decode().lower()
    assert "content-encoding: br" in head_text
    assert "vary: accept-encoding" in head_text
    assert body == pattern_bytes(200000)


def test_compress_gzip_when_only_gzip_is_accepted(gateway):
    r = gateway.get("/zip/?size=50000&type=application/json",
                    headers={"Accept-Encoding": "gzip;q=0.8, br;q=0"})
    assert r.header("Content-Encoding") == "gzip"
    assert r.header("Content-Length") is None or int(r.header("Content-Length")) < 50000
    assert gzip.decompress(r.body) == pattern_bytes(50000)


def test_compress_skips_small_binary_and_head(gateway):
    small = gateway.get("/zip/?size=100&type=text/plain", headers={"Accept-Encoding": "gzip"})
    assert small.header("Content-Encoding") is None
    assert small.body == pattern_bytes(100)
    binary = gateway.get("/zip/?size=50000", headers={"Accept-Encoding": "gzip"})
    assert binary.header("Content-Encoding") is None
    assert len(binary.body) == 50000
    head = gateway.request("HEAD", "/zip/?size=50000&type=text/plain",
                           headers={"Accept-Encoding": "gzip"})
    assert head.status == 200
    assert head.body == b""


def test_compress_streams_a_dripping_response(gateway):
    # 4 pieces of 16 KiB, 300 ms apart: the first compressed bytes must reach
    # the client long before the upstream finishes (flush on every wait).
    url = gateway.url("/zip/?size=65536&drip=300&chunked=1&type=text/plain")
    proc = subprocess.Popen(["curl", "-sS", "-N", "--max-time", "20", "-H",
                             "Accept-Encoding: gzip", url], stdout=subprocess.PIPE)
    try:
        first = proc.stdout.read1(65536)
        assert first[:2] == b"\x1f\x8b", "a gzip stream starts before the body ends"
        rest = proc.stdout.read()
    finally:
        proc.kill()
        proc.wait()
    assert gzip.decompress(first + rest) == pattern_bytes(65536)


# ---------------------------------------------------------------- configuration

def test_filter_option_errors_are_reported_with_positions(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("""listeners: [{name: web, address: "127.0.0.1:1"}]
filters:
  - security_headers: {X-Bad: "a\\nb"}
routes:
  - upstream: app
    filters:
      - rate_limit: {rate: fast}
      - ip_access: {allow: [10.0.0.0/33]}
upstreams: {app: {servers: ["127.0.0.1:2"]}}
""")
    r = run_ward("check", "-c", str(bad))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert any(line.startswith(f"{bad}:3:") for line in lines), lines
    assert any(line.startswith(f"{bad}:7:") and "rate" in line for line in lines), lines
    assert any(line.startswith(f"{bad}:8:") for line in lines), lines


def test_api_key_without_env_is_a_config_error(tmp_path):
    cfg = tmp_path / "k.yaml"
    cfg.write_text("""listeners: [{name: web, address: "127.0.0.1:1"}]
routes:
  - upstream: app
    filters:
      - api_key: {keys: ["${WARD_TEST_UNSET_KEY}"]}
upstreams: {app: {servers: ["127.0.0.1:2"]}}
""")
    r = run_ward("check", "-c", str(cfg))
    assert r.returncode == 1
    assert "WARD_TEST_UNSET_KEY" in r.stderr

