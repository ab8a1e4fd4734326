"""SIGTERM / SIGINT graceful drain, the second SIGINT, and SIGHUP."""

import signal
import time

import pytest

from harness import base_config, port_refuses, slack, wait_for


def start(group, drain_timeout="5s"):
    app = group.whoami("app")
    ward = group.ward(base_config({"app": [app]}, limits={"drain_timeout": drain_timeout}))
    return app, ward


def start_slow_request(ward, app, delay_ms):
    """Sends a request that whoami answers after delay_ms; returns its socket
    once whoami has the whole request (so it is surely in flight)."""
    before = app.count()
    c = ward.conn(timeout=15)
    c.send(f"GET /slow?delay={delay_ms} HTTP/1.1\r\nHost: h\r\n\r\n")
    wait_for(lambda: app.count() == before + 1, 5, "the slow request to reach the upstream")
    return c


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_drain_finishes_in_flight_and_refuses_new(group, sig):
    app, ward = start(group)
    slow = start_slow_request(ward, app, 3000)
    with slow:
        ward.signal(sig)
        wait_for(lambda: port_refuses(ward.port), slack(2), "the listener to close")
        wait_for(lambda: ward.admin("/readyz", timeout=1).status == 503, slack(1),
                 "/readyz 503 while draining")
        r = slow.read_response()
        assert r.status == 200
        assert r.json()["target"] == "/slow?delay=3000"
    assert ward.wait_exit(slack(5)) == 0


@pytest.mark.slow
def test_drain_closes_idle_keep_alive_and_exits_early(group):
    app, ward = start(group, drain_timeout="20s")
    with ward.conn(timeout=10) as idle:
        idle.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert idle.read_response().status == 200
        start_time = time.monotonic()
        ward.signal(signal.SIGTERM)
        assert idle.closed_within(slack(3)), "an idle keep-alive connection stayed open"
    assert ward.wait_exit(slack(5)) == 0
    assert time.monotonic() - start_time < slack(5)  # did not wait out drain_timeout


@pytest.mark.slow
def test_drain_timeout_bounds_the_wait(group):
    app, ward = start(group, drain_timeout="1s")
    with start_slow_request(ward, app, 20000):
        start_time = time.monotonic()
        ward.signal(signal.SIGTERM)
        assert ward.wait_exit(slack(6)) == 0
        assert time.monotonic() - start_time < slack(4)


@pytest.mark.slow
def test_second_sigint_exits_at_once(group):
    app, ward = start(group, drain_timeout="30s")
    with start_slow_request(ward, app, 20000):
        ward.signal(signal.SIGINT)
        wait_for(lambda: port_refuses(ward.port), slack(2), "the drain to start")
        start_time = time.monotonic()
        ward.signal(signal.SIGINT)
        ward.wait_exit(slack(5))
        assert time.monotonic() - start_time < slack(3)


def test_sighup_keeps_serving(group):
    app, ward = start(group)
    assert ward.get("/").status == 200
    ward.signal(signal.SIGHUP)
    wait_for(lambda: ward.get("/").status == 200, 5, "ward serving after SIGHUP")
    assert ward.running()
    assert ward.admin("/readyz").status == 200
