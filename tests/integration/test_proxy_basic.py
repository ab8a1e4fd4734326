"""A plain request through ward: what reaches the upstream, what comes back."""

import pytest

from harness import Conn, base_config, curl, request, sha256_hex

HOP_BY_HOP = ["connection", "keep-alive", "proxy-connection", "te", "trailer",
              "transfer-encoding", "upgrade"]


@pytest.fixture(scope="module")
def app(module_group):
    return module_group.whoami("app")


@pytest.fixture(scope="module")
def ward(module_group, app):
    return module_group.ward(base_config({"app": [app]}))


def upstream_headers(j):
    """The headers whoami received, as {lowercase name: [values]}."""
    out = {}
    for name, value in j["headers"]:
        out.setdefault(name.lower(), []).append(value)
    return out


def test_get_reaches_upstream_with_host_kept(ward):
    r = ward.get("/hello/world?x=1&y=2", headers={"Host": "shop.example.test"})
    assert r.status == 200
    assert r.header("X-Whoami") == "app"
    j = r.json()
    assert j["method"] == "GET"
    assert j["target"] == "/hello/world?x=1&y=2"
    assert upstream_headers(j)["host"] == ["shop.example.test"]


def test_forwarding_headers_are_set(ward):
    j = ward.get("/", headers={"Host": "shop.example.test:8080"}).json()
    h = upstream_headers(j)
    assert h["x-forwarded-for"] == ["127.0.0.1"]
    assert h["x-forwarded-proto"] == ["http"]
    assert h["x-forwarded-host"] == ["shop.example.test:8080"]
    assert h["x-real-ip"] == ["127.0.0.1"]


def test_client_is_appended_to_existing_x_forwarded_for(ward):
    j = ward.get("/", headers={"X-Forwarded-For": "203.0.113.7",
                               "X-Real-IP": "203.0.113.9"}).json()
    h = upstream_headers(j)
    xff = ", ".join(h["x-forwarded-for"])
    assert [p.strip() for p in xff.split(",")] == ["203.0.113.7", "127.0.0.1"]
    # 127.0.0.1 is not a trusted proxy, so the client is the socket peer.
    assert h["x-real-ip"] == ["127.0.0.1"]


def test_trusted_proxy_lets_x_forwarded_for_name_the_client(group):
    app = group.whoami("app")
    ward = group.ward(base_config({"app": [app]}, trusted_proxies=["127.0.0.0/8"]))
    j = ward.get("/", headers={"X-Forwarded-For": "203.0.113.7"}).json()
    h = upstream_headers(j)
    assert h["x-real-ip"] == ["203.0.113.7"]
    xff = ", ".join(h["x-forwarded-for"])
    assert [p.strip() for p in xff.split(",")] == ["203.0.113.7", "127.0.0.1"]


def test_hop_by_hop_request_headers_are_removed(ward):
    with ward.conn() as c:
        c.send("GET /hop HTTP/1.1\r\nHost: h\r\n"
               "Connection: keep-alive, X-Private-Hop\r\n"
               "X-Private-Hop: secret\r\n"
               "Keep-Alive: timeout=5\r\n"
               "Proxy-Connection: keep-alive\r\n"
               "TE: trailers\r\n"
               "Trailer: X-Checksum\r\n"
               "Upgrade: not-a-websocket\r\n"
               "X-End-To-End: kept\r\n\r\n")
        r = c.read_response()
    assert r.status == 200
    h = upstream_headers(r.json())
    for name in HOP_BY_HOP + ["x-private-hop"]:
        if name == "connection":
            # ward may open its own keep-alive upstream; never the client's list
            assert "x-private-hop" not in " ".join(h.get(name, [])).lower()
            continue
        assert name not in h, f"{name} reached the upstream: {h[name]}"
    assert h["x-end-to-end"] == ["kept"]


def test_hop_by_hop_response_headers_are_removed(ward):
    r = ward.get("/?header=Connection:X-Up-Hop&header=X-Up-Hop:1&header=Keep-Alive:timeout%3D9"
                 "&header=Proxy-Connection:keep-alive&header=Trailer:X-Sum&header=Upgrade:foo"
                 "&header=TE:trailers&header=X-End-To-End:kept")
    assert r.status == 200
    for name in ["x-up-hop", "keep-alive", "proxy-connection", "trailer", "upgrade", "te"]:
        assert not r.has_header(name), f"{name} reached the client: {r.headers}"
    assert "x-up-hop" not in (r.header("Connection") or "").lower()
    assert r.header("X-End-To-End") == "kept"


def test_status_and_headers_are_relayed(ward):
    r = ward.get("/?status=201&header=X-Custom:yes")
    assert r.status == 201
    assert r.header("X-Custom") == "yes"
    assert r.header("X-Whoami") == "app"


def test_error_status_from_upstream_is_relayed_not_replaced(ward):
    r = ward.get("/?status=503")
    assert r.status == 503
    assert r.json()["name"] == "app"  # whoami's body, not a proxy error


def test_post_body_reaches_upstream_intact(ward):
    body = bytes(range(256)) * 777
    r = ward.request("POST", "/upload", body=body, headers={"Content-Type": "application/x-raw"})
    j = r.json()
    assert j["method"] == "POST"
    assert j["body_bytes"] == len(body)
    assert j["body_sha256"] == sha256_hex(body)
    assert upstream_headers(j)["content-type"] == ["application/x-raw"]


def test_methods_pass_through(ward):
    for method in ["PUT", "DELETE", "PATCH", "OPTIONS"]:
        r = ward.request(method, "/m")
        assert r.status == 200, method
        assert r.json()["method"] == method


def test_curl_get(ward):
    res = curl("-i", ward.url("/via-curl"))
    assert res.returncode == 0, res.stderr
    assert b"HTTP/1.1 200" in res.stdout
    assert b'"target":"/via-curl"' in res.stdout


def test_many_sequential_requests_on_fresh_connections(ward):
    for i in range(30):
        r = request(ward.port, "GET", f"/n{i}", timeout=5)
        assert r.status == 200
        assert r.json()["target"] == f"/n{i}"


def test_raw_conn_helper_sees_ward_answers(ward):
    with Conn(ward.port) as c:
        c.send("GET /raw HTTP/1.1\r\nHost: h\r\n\r\n")
        assert c.read_response().json()["target"] == "/raw"
