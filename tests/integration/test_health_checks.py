"""Health-checked upstreams (CONFIG.md upstreams.*.health_check and passive):
active checks take a failing server out of balancing and bring it back,
over TLS too, once per process whatever the worker count; passive ejection
takes out a server whose live traffic fails, for ejection_time, and
/upstreams, /metrics and the error log say so."""

import collections
import re

from harness import HOST, base_config, free_port, wait_for
from test_tls import Pki
from test_upstreams import ClosingUpstream

# A generous timeout: no test here waits for one, and a loaded CI machine
# must not fail a check that would pass.
FAST_CHECK = {"path": "/health", "interval": "100ms", "timeout": "5s",
              "healthy_threshold": 2, "unhealthy_threshold": 2}


def served_by(ward, n):
    out = []
    for _ in range(n):
        r = ward.get("/")
        assert r.status == 200, r
        out.append(r.header("X-Whoami"))
    return collections.Counter(out)


def server_json(ward, address):
    for u in ward.admin("/upstreams").json()["upstreams"]:
        for s in u["servers"]:
            if s["address"] == address:
                return s
    raise AssertionError(f"{address} not in /upstreams")


def test_a_failing_server_leaves_and_returns(group, tmp_path):
    flag = tmp_path / "sick"
    a = group.whoami("a", unhealthy_file=flag)
    b = group.whoami("b")
    ward = group.ward(base_config({"app": {"servers": [a.address, b.address],
                                           "health_check": FAST_CHECK}}, workers=2))
    assert set(served_by(ward, 10)) == {"a", "b"}  # two workers, each going round
    assert server_json(ward, a.address)["health_check"] == "healthy"

    flag.write_text("")
    wait_for(lambda: server_json(ward, a.address)["health_check"] == "unhealthy", 10,
             "a to fail its checks")
    before = a.requests()
    assert served_by(ward, 10) == {"b": 10}
    assert a.requests() == before  # not even tried
    s = server_json(ward, a.address)
    assert (s["healthy"], s["health_check"]) == (False, "unhealthy")
    m = ward.metrics()
    assert m.value("ward_upstream_server_healthy", upstream="app", server=a.address) == 0
    assert m.value("ward_upstream_server_healthy", upstream="app", server=b.address) == 1
    assert m.value("ward_upstream_health_checks_total", upstream="app", server=a.address,
                   result="fail") >= 2
    assert re.search(rf"upstream app: server {re.escape(a.address)} is unhealthy after 2 failed "
                     r"checks in a row: status 503 \(expected 200-399\)", ward.stderr_text())
    assert ward.admin("/readyz").status == 200  # b still serves

    flag.unlink()
    wait_for(lambda: server_json(ward, a.address)["health_check"] == "healthy", 10,
             "a to pass its checks again")
    assert set(served_by(ward, 10)) == {"a", "b"}
    assert f"server {a.address} is healthy again (2 checks passed in a row)" in ward.stderr_text()


def test_a_server_a_reload_removes_leaves_the_health_metric(group):
    """Prometheus alerts on ward_upstream_server_healthy == 0: a server taken
    out of the file (here one that was failing) must not stay at 0 forever."""
    from test_reload import hup_and_wait, write_config
    a = group.whoami("a")
    gone = f"{HOST}:{free_port()}"  # refused: unhealthy
    cfg = base_config({"app": {"servers": [a.address, gone], "health_check": FAST_CHECK},
                       "other": {"servers": [a.address], "health_check": FAST_CHECK}})
    ward = group.ward(cfg)
    wait_for(lambda: ward.metrics().value("ward_upstream_server_healthy", upstream="app",
                                          server=gone) == 0 and
             ward.metrics().has("ward_upstream_server_healthy", upstream="app", server=gone),
             10, "the refused server to count unhealthy")

    def exported():
        return {(dict(ls)["upstream"], dict(ls)["server"]): v for (n, ls), v
                in ward.metrics().items() if n == "ward_upstream_server_healthy"}
    cfg["upstreams"]["app"]["servers"] = [a.address]
    del cfg["upstreams"]["other"]["health_check"]  # checks turned off: no verdict to show
    write_config(ward, cfg)
    hup_and_wait(ward, 1)
    assert exported() == {("app", a.address): 1}


def test_checks_are_made_once_per_process_not_per_worker(group):
    up = ClosingUpstream(answer=b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    try:
        check = dict(FAST_CHECK, interval="200ms")
        ward = group.ward(base_config({"app": {"servers": [up.address], "health_check": check}},
                                      workers=4))

        def checks():
            return ward.metrics().value("ward_upstream_health_checks_total", upstream="app",
                                        server=up.address, result="pass") or 0
        wait_for(lambda: checks() >= 3, 10, "three checks")
        # Every check the server answered is one the metric counts (a check
        # per worker would give four times as many requests as checks). The
        # one in flight while the metrics are read may be answered but not yet
        # counted, and more may come after.
        answered_before = up.answered
        n = checks()
        answered_after = up.answered
        assert answered_before <= n + 1 and n <= answered_after, \
            (answered_before, n, answered_after)
    finally:
        up.close()


def test_a_refused_server_fails_its_checks_and_every_request_avoids_it(group):
    b = group.whoami("b")
    dead = f"127.0.0.1:{free_port()}"
    ward = group.ward(base_config({"app": {"servers": [dead, b.address], "retries": 0,
                                           "health_check": FAST_CHECK}}))
    wait_for(lambda: server_json(ward, dead)["health_check"] == "unhealthy", 10,
             "the dead server to fail its checks")
    # retries: 0, so a pick of the dead server would be a 502.
    assert served_by(ward, 10) == {"b": 10}
    assert re.search(rf"server {re.escape(dead)} is unhealthy after 2 failed checks in a row: "
                     r"connect failed: ", ward.stderr_text())


def test_checks_speak_tls_to_a_tls_upstream_and_verify_it(group, tmp_path):
    (tmp_path / "pki").mkdir()
    (tmp_path / "other").mkdir()
    pki = Pki(tmp_path / "pki")
    cert = pki.leaf("upstream.test", ["DNS:upstream.test", "IP:127.0.0.1"])
    app = group.whoami("tls-app", tls=cert)
    other = Pki(tmp_path / "other")  # a CA that did not sign it
    ward = group.ward(base_config({
        "good": {"servers": [app.address], "tls": True, "tls_ca": str(pki.ca),
                 "health_check": FAST_CHECK},
        "bad": {"servers": [app.address], "tls": True, "tls_ca": str(other.ca),
                "health_check": FAST_CHECK}},
        routes=[{"match": {"path_prefix": "/bad"}, "upstream": "bad"},
                {"match": {"path_prefix": "/"}, "upstream": "good"}]))

    def check_count(upstream, result):
        return ward.metrics().value("ward_upstream_health_checks_total", upstream=upstream,
                                    server=app.address, result=result) or 0
    wait_for(lambda: check_count("good", "pass") >= 2 and check_count("bad", "fail") >= 2, 10,
             "checks over TLS: passing with the right CA, failing with the wrong one")
    assert check_count("good", "fail") == 0
    assert ward.get("/").status == 200
    assert ward.get("/bad").status == 503  # its only server is out
    assert re.search(r"server 127\.0\.0\.1:\d+ is unhealthy after 2 failed checks in a row: "
                     r"TLS handshake failed: certificate verify failed", ward.stderr_text())


def test_passive_ejection_takes_out_a_server_whose_traffic_fails(group):
    bad = ClosingUpstream(answer=b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                 b"Connection: close\r\n\r\n")
    try:
        b = group.whoami("b")
        ward = group.ward(base_config({"app": {
            "servers": [bad.address, b.address], "retries": 0,
            "passive": {"consecutive_failures": 2, "ejection_time": "2s"}}}))
        statuses = [ward.get("/").status for _ in range(4)]  # round robin: bad, b, bad, b
        assert collections.Counter(statuses) == {503: 2, 200: 2}, statuses
        assert bad.answered == 2
        # The worker counts a failure once the exchange is over, which may be
        # just after the client has its 503.
        def ejected():
            s = server_json(ward, bad.address)
            return s if s["ejected_ms"] > 0 else None
        s = wait_for(ejected, 5, "the second failure to eject the server")
        assert s["healthy"] is False and 0 < s["ejected_ms"] <= 2000, s
        assert s["health_check"] == "off"
        assert ward.metrics().value("ward_upstream_ejections_total", upstream="app",
                                    server=bad.address) == 1
        assert f"server {bad.address} ejected for 2000 ms after 2 failures in a row" in \
            ward.stderr_text()
        assert served_by(ward, 6) == {"b": 6}
        assert bad.answered == 2  # out: not tried

        # Back after ejection_time; failing again, it is out for twice as long.
        wait_for(lambda: ward.get("/").header("X-Whoami") is None, 10,
                 "the ejected server to get traffic again")
        for _ in range(4):
            if server_json(ward, bad.address)["ejected_ms"] > 0:
                break
            ward.get("/")
        s = wait_for(ejected, 5, "the second ejection")
        assert 2000 < s["ejected_ms"] <= 4000, s
        assert f"server {bad.address} ejected for 4000 ms after 2 failures in a row" in \
            ward.stderr_text()
    finally:
        bad.close()


def test_a_good_answer_ends_a_run_of_failures(group):
    a, b = group.whoami("a"), group.whoami("b")
    # ip_hash: every request from this client goes to the same server while
    # it is in service; the other one stays in service beside it.
    ward = group.ward(base_config({"app": {
        "servers": [a.address, b.address], "balance": "ip_hash",
        "passive": {"consecutive_failures": 3, "ejection_time": "30s"}}}))
    first = ward.get("/").header("X-Whoami")
    target = a if first == "a" else b
    # Two 503s, a 200, two 503s: never three in a row.
    for status in (503, 503, 200, 503, 503):
        assert ward.get(f"/?status={status}").status == status
    assert server_json(ward, target.address)["ejected_ms"] == 0
    assert ward.get("/?status=504").status == 504  # the third in a row
    # Counted once the response has gone out, so the client may read first.
    wait_for(lambda: server_json(ward, target.address)["ejected_ms"] > 0, 10, "the ejection")
    assert ward.get("/").header("X-Whoami") != first  # the other server now


def test_the_last_server_in_service_is_not_ejected(group):
    a = group.whoami("a")
    ward = group.ward(base_config({"app": {
        "servers": [a.address], "passive": {"consecutive_failures": 2, "ejection_time": "30s"}}}))
    for _ in range(4):
        assert ward.get("/?status=503").status == 503
    assert server_json(ward, a.address)["ejected_ms"] == 0
    assert ward.get("/").status == 200  # still served, not a 503 of ward's own
    assert f"server {a.address} failed 2 times in a row, not ejected: no other server in " \
        "service" in ward.stderr_text()


def test_without_passive_failures_eject_nothing(group):
    b = group.whoami("b")
    ward = group.ward(base_config({"app": [b]}))
    for _ in range(10):
        assert ward.get("/?status=503").status == 503
    assert ward.get("/").status == 200
