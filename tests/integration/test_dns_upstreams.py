"""DNS names as upstream servers (CONFIG.md: re-resolved every dns_refresh,
every A/AAAA record a server), with the system resolver: `localhost` comes
from /etc/hosts, and names under `.invalid` never resolve (RFC 6761).

ctest runs this file in a network namespace of its own (tests/CMakeLists.txt),
so a lookup that /etc/hosts cannot answer fails at once and never reaches a
DNS server off the machine."""

import re
import signal
import socket
import subprocess
import time

import pytest

from harness import WARD_BIN, base_config, wait_for


@pytest.fixture(autouse=True)
def own_network_namespace():
    # /proc/net/dev is this process's network namespace (/sys/class/net may
    # be the host's mount).
    with open("/proc/net/dev") as f:
        interfaces = sorted(line.split(":")[0].strip() for line in f.readlines()[2:])
    assert interfaces == ["lo"], (
        f"network interfaces {interfaces}: run this file through ctest, which gives it a network "
        "namespace of its own (unshare --net), so its DNS lookups stay on this machine")


def server_names(ward, upstream="app"):
    for u in ward.admin("/upstreams").json()["upstreams"]:
        if u["name"] == upstream:
            return [s["address"] for s in u["servers"]]
    raise AssertionError(f"no upstream {upstream}")


def test_a_name_is_resolved_and_its_address_serves(group):
    a = group.whoami("a")
    ward = group.ward(base_config({"app": {"servers": [f"localhost:{a.port}"],
                                           "dns_refresh": "200ms"}}))
    wait_for(lambda: f"127.0.0.1:{a.port}" in server_names(ward), 10, "localhost to resolve")
    assert ward.metrics().value("ward_upstream_dns_lookups_total", upstream="app",
                                host="localhost", result="ok") >= 1
    r = ward.get("/")
    assert (r.status, r.header("X-Whoami")) == (200, "a")
    assert re.search(r"upstream app: localhost resolves to [^\n]*127\.0\.0\.1", ward.stderr_text())
    m = ward.metrics()
    assert m.value("ward_upstream_requests_total", upstream="app", server=f"127.0.0.1:{a.port}",
                   code="200") == 1


def test_a_name_that_does_not_resolve_leaves_the_other_servers_serving(group):
    a = group.whoami("a")
    ward = group.ward(base_config({"app": {"servers": ["no-such-app.invalid:8000", a.address],
                                           "dns_refresh": "200ms"}}))
    wait_for(lambda: "cannot resolve no-such-app.invalid" in ward.stderr_text(), 10,
             "the failed lookup to be logged")
    for _ in range(5):
        assert ward.get("/").header("X-Whoami") == "a"
    assert server_names(ward) == [a.address]
    assert ward.admin("/readyz").status == 200
    # Logged once for a run of the same failure, not every dns_refresh.
    wait_for(lambda: ward.metrics().value("ward_upstream_dns_lookups_total", upstream="app",
                                          host="no-such-app.invalid", result="fail") >= 3, 10,
             "three failed lookups")
    text = ward.stderr_text()
    assert text.count("cannot resolve no-such-app.invalid") == 1, text


def test_an_upstream_whose_only_name_never_resolved_is_503_and_not_ready(group):
    ward = group.ward(base_config({"app": {"servers": ["no-such-app.invalid:8000"]}}))
    wait_for(lambda: "cannot resolve no-such-app.invalid" in ward.stderr_text(), 10,
             "the failed lookup to be logged")
    assert "no server from it yet" in ward.stderr_text()
    r = ward.get("/")
    assert r.status == 503
    assert r.json() == {"error": "service_unavailable", "status": 503}
    ready = ward.admin("/readyz")
    assert ready.status == 503
    assert "upstream app has no healthy server" in ready.body.decode()


def test_check_accepts_a_name_without_looking_it_up(tmp_path):
    cfg = tmp_path / "ward.yaml"
    cfg.write_text("listeners: [{name: web, address: 127.0.0.1:8080}]\n"
                   "routes: [{match: {path_prefix: /}, upstream: app}]\n"
                   "upstreams: {app: {servers: [no-such-app.invalid:8000], dns_refresh: 2s}}\n")
    r = subprocess.run([WARD_BIN, "check", "-c", str(cfg)], capture_output=True, text=True,
                       timeout=30)
    assert (r.returncode, r.stdout.strip()) == (0, "configuration ok"), r.stderr


def test_sigterm_does_not_wait_for_a_lookup_the_name_server_never_answers(group, tmp_path):
    """An unreachable name server holds a lookup for resolv.conf's timeout
    (here 30 s). Stopping ward (a deploy, a pod eviction) must not wait for
    it: ward exits at once, as it does without DNS upstreams."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 53))  # this namespace's name server: reads, never answers
    silent.settimeout(10)
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:30 attempts:1\n")
    a = group.whoami("a")
    # ward sees that resolv.conf in a mount namespace of its own.
    own_resolv = ("unshare", "--mount", "sh", "-c",
                  f'mount --bind {resolv} /etc/resolv.conf && exec "$@"', "sh")
    ward = group.ward(base_config({"app": {"servers": [a.address, "app.example:8000"]}}),
                      prefix=own_resolv)
    try:
        query, _ = silent.recvfrom(512)  # the lookup is under way
        assert b"\x03app\x07example" in query
        assert ward.get("/").header("X-Whoami") == "a"  # it does not hold up requests either
        started = time.monotonic()
        ward.signal(signal.SIGTERM)
        assert ward.wait_exit(10) == 0
        assert time.monotonic() - started < 5
    finally:
        silent.close()


def test_a_server_the_name_no_longer_resolves_to_leaves_the_per_server_counters(group, tmp_path):
    """In Kubernetes a headless service's name answers with the pods there
    are now: each pod that goes away must take its series with it, or
    /metrics grows with every deploy until ward restarts."""
    a = group.whoami("a")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 app.test\n127.0.0.2 app.test\n")  # nothing listens on .2
    own_hosts = ("unshare", "--mount", "sh", "-c",
                 f'mount --bind {hosts} /etc/hosts && exec "$@"', "sh")
    ward = group.ward(base_config({"app": {"servers": [f"app.test:{a.port}"], "retries": 1,
                                           "dns_refresh": "200ms"}}), prefix=own_hosts)
    gone = f"127.0.0.2:{a.port}"
    wait_for(lambda: gone in server_names(ward), 10, "app.test to resolve to both addresses")
    for _ in range(4):  # round robin: some try .2 first, fail to connect, retry on .1
        assert ward.get("/").header("X-Whoami") == "a"
    assert ward.metrics().value("ward_upstream_connect_failures_total", server=gone) >= 1

    hosts.write_text("127.0.0.1 app.test\n")  # the same file: the bind mount sees it
    wait_for(lambda: server_names(ward) == [f"127.0.0.1:{a.port}"], 10, "the .2 server to go")
    wait_for(lambda: not ward.metrics().has("ward_upstream_connect_failures_total", server=gone),
             10, "its series to leave /metrics")
    assert ward.metrics().value("ward_upstream_requests_total", server=f"127.0.0.1:{a.port}") == 4
