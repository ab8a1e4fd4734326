"""SIGHUP reloads the config file (CONFIG.md): new requests use the new
config, open connections and requests in flight keep working, a bad file
or one that changes what needs a restart keeps the running config, and
/config, the metrics and the error log say what happened."""

import json
import re
import signal

from harness import base_config, free_port, wait_for


def reloads(ward):
    m = ward.metrics()
    return (m.value("ward_config_reloads_total"), m.value("ward_config_reload_failures_total"))


def write_config(ward, cfg):
    """Rewrites ward's file with `cfg` (a base_config dict), keeping the
    admin and listener addresses it was started with."""
    cfg = dict(cfg)
    cfg["admin"] = ward.config["admin"]
    cfg["listeners"] = ward.config["listeners"]
    ward.config_path.write_text(json.dumps(cfg, indent=2) + "\n")


def hup_and_wait(ward, want_reloads, want_failures=0):
    ward.signal(signal.SIGHUP)
    wait_for(lambda: reloads(ward) == (want_reloads, want_failures), 10,
             f"{want_reloads} reload(s), {want_failures} failure(s)")


def test_new_requests_use_the_new_config_and_open_connections_keep_working(group):
    a, b = group.whoami("a"), group.whoami("b")
    ward = group.ward(base_config({"app": [a]}))
    conn = ward.conn()
    conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert conn.read_response().header("X-Whoami") == "a"
    slow = ward.conn()  # a request in flight across the reload
    slow.send(b"GET /?delay=700 HTTP/1.1\r\nHost: x\r\n\r\n")
    # In flight means forwarded: under ThreadSanitizer ward may read the
    # request only after the reload unless the test waits for it to reach a.
    wait_for(lambda: a.requests() == 2, 5, "the slow request to reach a")

    write_config(ward, base_config({"app": [b]}, limits={"request_timeout": "5s"}))
    hup_and_wait(ward, 1)

    assert ward.get("/").header("X-Whoami") == "b"
    r = slow.read_response()
    assert (r.status, r.header("X-Whoami")) == (200, "a")  # finished on its old snapshot
    conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # the same keep-alive connection
    assert conn.read_response().header("X-Whoami") == "b"
    j = ward.admin("/config").json()
    assert j["generation"] == 2
    assert j["limits"]["request_timeout"] == "5s"
    assert re.search(r"SIGHUP: configuration reloaded from \S+ \(generation 2\)",
                     ward.stderr_text())


def test_a_request_retrying_across_a_reload_that_removes_its_upstream_keeps_its_servers(group):
    """A request whose first try is in flight when a reload removes its
    upstream still gets its retry, on the servers of the config it started
    with; the reload drops the worker's balancer of that upstream, so the
    retry must not use the one it had before the wait (ASan: use after
    free)."""
    a, b, c = group.whoami("a"), group.whoami("b"), group.whoami("c")
    old = {"servers": [a.address, b.address], "retries": 1}
    limits = {"request_timeout": "20s"}
    ward = group.ward(base_config({"old": old}, limits=limits))
    slow = ward.conn(timeout=15)
    # Each server waits, then closes without answering: a failure before any
    # response byte, which a GET is retried on.
    slow.send(b"GET /?delay=1500&close=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_for(lambda: a.requests() + b.requests() == 1, 5, "the first try to reach a or b")

    write_config(ward, base_config({"new": [c]}, limits=limits))
    hup_and_wait(ward, 1)
    assert ward.get("/").header("X-Whoami") == "c"  # the worker runs the new config

    r = slow.read_response()
    assert r.status == 502  # both old servers tried, both failed
    assert (a.requests(), b.requests(), c.requests()) == (1, 1, 1)


def test_a_bad_file_keeps_the_running_config(group):
    a = group.whoami("a")
    ward = group.ward(base_config({"app": [a]}))
    ward.config_path.write_text(ward.config_path.read_text().replace('"upstreams"', '"upstreamz"'))
    hup_and_wait(ward, 0, 1)
    assert ward.get("/").header("X-Whoami") == "a"
    assert ward.admin("/config").json()["generation"] == 1
    err = ward.stderr_text()
    assert re.search(r"ward\.yaml:\d+:\d+: ", err), err
    assert "running configuration kept (generation 1)" in err


def test_a_change_that_needs_a_restart_is_refused_and_named(group):
    a = group.whoami("a")
    ward = group.ward(base_config({"app": [a]}))
    cfg = base_config({"app": [a]}, workers=2)
    write_config(ward, cfg)
    hup_and_wait(ward, 0, 1)
    err = ward.stderr_text()
    assert "SIGHUP: workers: 1 -> 2" in err
    assert "these settings need a restart of ward" in err
    assert ward.get("/").status == 200


def test_health_checks_follow_the_reloaded_config(group, tmp_path):
    flag = tmp_path / "sick"
    flag.write_text("")
    a = group.whoami("a", unhealthy_file=flag)
    b = group.whoami("b")
    ward = group.ward(base_config({"app": [a, b]}))
    assert {ward.get("/").header("X-Whoami") for _ in range(4)} == {"a", "b"}

    check = {"path": "/health", "interval": "100ms", "timeout": "1s",
             "healthy_threshold": 1, "unhealthy_threshold": 1}
    write_config(ward, base_config({"app": {"servers": [a.address, b.address],
                                            "health_check": check}}))
    hup_and_wait(ward, 1)
    wait_for(lambda: {ward.get("/").header("X-Whoami") for _ in range(4)} == {"b"}, 10,
             "a out of service once checked")

    # Checks off again: every server back in service.
    write_config(ward, base_config({"app": [a, b]}))
    hup_and_wait(ward, 2)
    assert {ward.get("/").header("X-Whoami") for _ in range(4)} == {"a", "b"}


def test_rate_limit_buckets_survive_a_reload(group):
    a = group.whoami("a")
    routes = [{"match": {"path_prefix": "/"}, "upstream": "app",
               "filters": [{"rate_limit": {"rate": "1/minute", "burst": 2}}]}]
    ward = group.ward(base_config({"app": [a]}, routes=routes))
    assert [ward.get("/").status for _ in range(3)] == [200, 200, 429]
    write_config(ward, base_config({"app": [a]}, routes=routes, limits={"body_timeout": "9s"}))
    hup_and_wait(ward, 1)
    assert ward.get("/").status == 429  # the bucket is still empty


def test_a_server_a_reload_removes_leaves_the_per_server_counters(group):
    """With DNS discovery or a deploy that renames servers, every server that
    ever existed would keep its ward_upstream_requests_total series until
    restart: a slow leak in ward and in every Prometheus that scrapes it."""
    a, b = group.whoami("a"), group.whoami("b")
    dead = f"127.0.0.1:{free_port()}"  # refused: counts connect failures
    app = {"servers": [a.address, b.address, dead], "retries": 2}
    ward = group.ward(base_config({"app": app}, workers=2))
    for _ in range(6):  # new connections: both workers get some
        conn = ward.conn()
        for _ in range(3):
            conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert conn.read_response().status == 200
        conn.close()
    per_server = ("ward_upstream_requests_total", "ward_upstream_connect_failures_total")

    def servers():
        return {dict(ls)["server"] for (n, ls) in ward.metrics() if n in per_server}
    assert servers() == {a.address, b.address, dead}
    served_by_a = ward.metrics().value("ward_upstream_requests_total", server=a.address)

    app["servers"] = [a.address]
    write_config(ward, base_config({"app": app}, workers=2))
    hup_and_wait(ward, 1)
    wait_for(lambda: servers() == {a.address}, 10, "only a's series left")
    assert ward.metrics().value("ward_upstream_requests_total", server=a.address) == served_by_a
