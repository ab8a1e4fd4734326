"""Several worker threads (also run under ThreadSanitizer): every connection
is served, whichever worker accepts it, and the metrics add up across them."""

import concurrent.futures
import contextlib

import pytest

from harness import base_config, request, sha256_hex, wait_for

THREADS = 4
PER_THREAD = 50


@pytest.fixture(scope="module")
def servers(module_group):
    return [module_group.whoami("a", threads=2), module_group.whoami("b", threads=2)]


@pytest.fixture(scope="module")
def ward(module_group, servers):
    return module_group.ward(base_config({"app": servers}, workers=2))


def run_clients(fn):
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(fn, t) for t in range(THREADS)]
        return [f.result(timeout=120) for f in futures]


def test_fresh_connections_all_succeed(ward):
    before = ward.metrics().value("ward_requests_total", code="200")

    def client(t):
        statuses = []
        for i in range(PER_THREAD):
            r = request(ward.port, "GET", f"/t{t}/{i}", timeout=15)
            assert r.json()["target"] == f"/t{t}/{i}"
            statuses.append(r.status)
        return statuses

    results = run_clients(client)
    assert all(s == 200 for statuses in results for s in statuses)
    # A request is counted just after its response is written, so the last
    # few may still be on their way into the counter when the client is done.
    expected = before + THREADS * PER_THREAD
    wait_for(lambda: ward.metrics().value("ward_requests_total", code="200") >= expected, 5,
             "every request counted")
    assert ward.metrics().value("ward_requests_total", code="200") == expected


def test_keep_alive_connections_in_parallel(ward):
    def client(t):
        with ward.conn(timeout=15) as c:
            for i in range(PER_THREAD):
                c.send(f"GET /k{t}/{i} HTTP/1.1\r\nHost: h\r\n\r\n")
                assert c.read_response().json()["target"] == f"/k{t}/{i}"
        return True

    assert all(run_clients(client))


def test_bodies_in_parallel(ward):
    def client(t):
        body = bytes([t]) * (200_000 + t)
        for _ in range(10):
            r = request(ward.port, "POST", "/b", body=body, timeout=15)
            assert r.json()["body_sha256"] == sha256_hex(body)
        return True

    assert all(run_clients(client))


def test_both_upstreams_used(ward):
    names = {ward.get("/").header("X-Whoami") for _ in range(10)}
    assert names == {"a", "b"}


def test_upstream_pools_reuse_connections_per_worker(ward, servers):
    for _ in range(40):
        assert ward.get("/").status == 200
    m = ward.metrics()
    assert m.value("ward_upstream_connections_reused_total", upstream="app") > 0


def worker_connections(ward):
    m = ward.metrics()
    return [m.value("ward_worker_connections", worker=str(w)) for w in range(2)]


def test_connections_are_spread_evenly_over_workers(ward):
    """The kernel's SO_REUSEPORT hash alone splits connections unevenly; a
    worker that accepts one while the other has fewer hands it over, so
    connections opened one after another stay within one of even."""
    wait_for(lambda: worker_connections(ward) == [0, 0], 10, "earlier tests' connections closed")
    with contextlib.ExitStack() as stack:
        conns = []
        for i in range(30):
            c = stack.enter_context(ward.conn(timeout=15))
            c.send(f"GET /spread/{i} HTTP/1.1\r\nHost: h\r\n\r\n")
            assert c.read_response().json()["target"] == f"/spread/{i}"
            conns.append(c)
            counts = worker_connections(ward)
            assert sum(counts) == i + 1, counts
            assert abs(counts[0] - counts[1]) <= 1, (i, counts)
        # Every connection, handed over or not, keeps working.
        for i, c in enumerate(conns):
            c.send(f"GET /again/{i} HTTP/1.1\r\nHost: h\r\n\r\n")
            assert c.read_response().json()["target"] == f"/again/{i}"
    wait_for(lambda: worker_connections(ward) == [0, 0], 10, "every connection closed")
