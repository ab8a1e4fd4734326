"""The admin listener: /healthz, /readyz, /config, /upstreams, /metrics."""

import json
import socket
import time

import pytest

from harness import base_config, wait_for


@pytest.fixture(scope="module")
def app(module_group):
    return module_group.whoami("app")


@pytest.fixture(scope="module")
def ward(module_group, app):
    routes = [{"name": "api", "match": {"path_prefix": "/"}, "upstream": "backend"}]
    return module_group.ward(base_config({"backend": [app]}, routes=routes))


def test_healthz(ward):
    r = ward.admin("/healthz")
    assert r.status == 200
    j = r.json()
    assert j["status"] == "healthy"
    assert isinstance(j["version"], str) and j["version"]


def test_readyz_when_serving(ward):
    assert ward.admin("/readyz").status == 200


def test_unknown_admin_path_is_404(ward):
    assert ward.admin("/nope").status == 404


def test_admin_is_not_on_the_proxy_listener(ward):
    r = ward.get("/healthz")
    assert r.header("X-Whoami") == "app"  # proxied like any other path


def test_config_is_json_with_generation_1(ward, app):
    r = ward.admin("/config")
    assert r.status == 200
    j = r.json()
    assert j["generation"] == 1
    assert app.address in json.dumps(j)


def test_config_redacts_secrets(group):
    app = group.whoami("app")
    routes = [{"name": "api", "match": {"path_prefix": "/"}, "upstream": "backend",
               "filters": [{"api_key": {"header": "X-API-Key", "keys": ["${WARD_TEST_KEY}"]}}]}]
    ward = group.ward(base_config({"backend": [app]}, routes=routes),
                      env={"WARD_TEST_KEY": "s3cr3t-0123456789"})
    text = ward.admin("/config").body.decode()
    assert "s3cr3t-0123456789" not in text
    assert json.loads(text)["generation"] == 1


def test_upstreams_lists_every_server(ward, app):
    r = ward.admin("/upstreams")
    assert r.status == 200
    text = json.dumps(r.json())
    assert "backend" in text
    assert app.address in text


def test_metrics_content_type(ward):
    r = ward.admin("/metrics")
    assert r.status == 200
    assert r.header("Content-Type", "").startswith("text/plain")


def test_request_metrics_count_each_request(ward, app):
    before = ward.metrics()
    for i in range(7):
        assert ward.get(f"/m{i}").status == 200
    ward.get("/?status=404")
    # A request is counted just after its response is written: wait until
    # the last one is in (its counters are all updated together).
    target = before.value("ward_request_duration_seconds_count", route="api") + 8

    def all_counted():
        m = ward.metrics()
        return m if m.value("ward_request_duration_seconds_count", route="api") >= target else None
    after = wait_for(all_counted, 5, "the last request counted")

    def delta(name, **labels):
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta("ward_requests_total", route="api", upstream="backend", code="200") == 7
    assert delta("ward_requests_total", route="api", upstream="backend", code="404") == 1
    assert delta("ward_upstream_requests_total", upstream="backend", server=app.address,
                 code="200") == 7
    assert delta("ward_request_duration_seconds_count", route="api") == 8
    assert delta("ward_request_duration_seconds_bucket", route="api", le="+Inf") == 8
    assert after.has("ward_request_duration_seconds_sum", route="api")


def test_duration_histogram_buckets_are_cumulative(ward):
    ward.get("/")
    m = ward.metrics()
    buckets = sorted(
        ((float(dict(ls)["le"]), v) for (n, ls), v in m.items()
         if n == "ward_request_duration_seconds_bucket" and dict(ls).get("route") == "api"),
        key=lambda b: b[0])
    assert len(buckets) >= 5
    counts = [v for _, v in buckets]
    assert counts == sorted(counts)
    assert buckets[-1][0] == float("inf")


def test_connections_active_counts_open_connections(ward):
    with ward.conn() as c:
        c.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert c.read_response().status == 200
        assert ward.metrics().value("ward_connections_active", listener="web") >= 1


def test_every_metric_has_help_and_type(ward):
    text = ward.admin("/metrics").body.decode()
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    for name in ["ward_requests_total", "ward_request_duration_seconds",
                 "ward_upstream_requests_total", "ward_connections_active",
                 "ward_upstream_connections_reused_total",
                 "ward_upstream_connections_created_total"]:
        assert name in families, name


def test_heap_is_trimmed_once_after_a_burst_of_connections(group):
    """After a burst of connections (over 1,024 opens + closes) has died
    down, ward hands the freed heap back to the kernel, once; steady
    keep-alive traffic adds no churn and no further trim. The workers'
    churn is summed: two workers here."""
    app = group.whoami("app")
    ward = group.ward(base_config({"backend": [app]}, workers=2))
    assert ward.metrics().value("ward_heap_trims_total") == 0
    for _ in range(700):
        socket.create_connection(("127.0.0.1", ward.port), timeout=5).close()
    wait_for(lambda: ward.metrics().value("ward_connections_total", listener="web") >= 700,
             10, "700 connections accepted")
    wait_for(lambda: ward.metrics().value("ward_heap_trims_total") == 1, 10, "a heap trim")
    # A second of keep-alive requests (several trim ticks): no new trim.
    with ward.conn() as c:
        until = time.monotonic() + 1.0
        while time.monotonic() < until:
            c.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            assert c.read_response().status == 200
    assert ward.metrics().value("ward_heap_trims_total") == 1
