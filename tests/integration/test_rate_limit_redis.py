"""rate_limit with `store: redis://...`: two ward processes count against one
Redis server, so a burst is shared between them; a Redis that goes away lets
requests pass (fail open) and says so in the log and the metrics; when it
comes back the limit holds again. A real redis-server on a loopback port of
the test's own, with no persistence."""

import shutil
import socket
import subprocess

import pytest

from harness import HOST, base_config, free_port, port_accepts, wait_for

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


class Redis:
    def __init__(self, group, port=None):
        self.group = group
        self.port = port or free_port()
        self.dir = group.new_dir("redis")
        self.proc = None
        self.start()

    def start(self):
        self.proc = self.group.track(subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", HOST, "--save", "",
             "--appendonly", "no", "--dir", str(self.dir), "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for(lambda: port_accepts(self.port), 10, f"redis-server on port {self.port}")

    def stop(self):
        self.proc.kill()
        self.proc.wait(timeout=10)

    def command(self, *args):
        """One command over a raw socket; the reply's first line."""
        out = f"*{len(args)}\r\n".encode()
        for a in args:
            a = str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        with socket.create_connection((HOST, self.port), timeout=5) as s:
            s.sendall(out)
            data = b""
            while not data.endswith(b"\r\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        return data.decode().split("\r\n")[0]


def limited_config(app, redis_port, host=HOST, **options):
    rl = {"rate": "1/minute", "burst": 3, "store": f"redis://{host}:{redis_port}"}
    rl.update(options)
    routes = [
        {"name": "api", "match": {"path_prefix": "/"}, "upstream": "backend",
         "filters": [{"rate_limit": rl}]},
    ]
    return base_config({"backend": [app]}, routes=routes)


@pytest.fixture
def app(group):
    return group.whoami("app")


def statuses(ward, n, headers=None):
    return [ward.get("/", headers=headers or {}).status for _ in range(n)]


def test_two_instances_share_one_burst(group, app):
    redis = Redis(group)
    a = group.ward(limited_config(app, redis.port))
    # The other by name: looked up (getaddrinfo, /etc/hosts) off the worker's loop.
    b = group.ward(limited_config(app, redis.port, host="localhost"))
    first = a.get("/")
    assert first.status == 200
    assert first.header("RateLimit-Limit") == "3"
    assert first.header("RateLimit-Remaining") == "2"
    assert first.header("RateLimit-Policy") == "3;w=180"
    # The other two tokens are taken through the other process.
    assert statuses(b, 2) == [200, 200]
    refused = a.get("/")
    assert refused.status == 429
    assert refused.json() == {"error": "rate_limited", "status": 429}
    assert refused.header("RateLimit-Remaining") == "0"
    # 1/minute: the next token is at most a minute away.
    assert 1 <= int(refused.header("Retry-After")) <= 60
    assert b.get("/").status == 429
    assert a.metrics().value("ward_ratelimit_requests_total", result="limited") == 1
    assert b.metrics().value("ward_ratelimit_requests_total", result="allowed") == 2
    # a's calls: EVALSHA, NOSCRIPT, so EVAL (the first on this server), and
    # EVALSHA for the refusal.
    store = f"redis://{HOST}:{redis.port}/0"
    assert a.metrics().value("ward_store_calls_total", store=store, result="ok") == 3
    assert a.metrics().value("ward_store_call_duration_seconds_count", store=store) == 3
    # The bucket lives on the server, under the filter's label.
    assert redis.command("EXISTS", f"ward:rl:api.rate_limit:ip:{HOST}") == ":1"


def test_http2_streams_wait_on_the_store_too(group, app):
    # h2c with prior knowledge: three requests on one connection, one token.
    # (h2load, not curl: Debian's curl 7.88 cannot add a request to an open
    # h2c connection, curl issue 10634.)
    redis = Redis(group)
    w = group.ward(limited_config(app, redis.port, burst=1))
    r = subprocess.run(["h2load", "-n", "3", "-c", "1", "-m", "1", w.url("/")],
                       capture_output=True, timeout=30)
    out = r.stdout.decode()
    assert "status codes: 1 2xx, 0 3xx, 2 4xx, 0 5xx" in out, out
    assert w.metrics().value("ward_ratelimit_requests_total", result="limited") == 2


def test_keys_by_header_are_separate_buckets(group, app):
    redis = Redis(group)
    w = group.ward(limited_config(app, redis.port, key="header:X-User", burst=1))
    assert statuses(w, 2, {"X-User": "alice"}) == [200, 429]
    assert statuses(w, 2, {"X-User": "bob"}) == [200, 429]
    # A long value is stored under its digest, not as itself.
    long_user = "u" * 500
    assert statuses(w, 2, {"X-User": long_user}) == [200, 429]
    assert redis.command("EXISTS", "ward:rl:api.rate_limit:h:x-user:alice") == ":1"


def test_script_is_sent_again_after_a_flush(group, app):
    redis = Redis(group)
    w = group.ward(limited_config(app, redis.port, burst=2))
    assert w.get("/").status == 200
    # The server forgets the script (a restart or a failover does the
    # same): ward gets NOSCRIPT and sends it whole; the count goes on.
    assert redis.command("SCRIPT", "FLUSH") == "+OK"
    assert statuses(w, 2) == [200, 429]
    assert w.metrics().value("ward_ratelimit_requests_total", result="store_error") == 0


def test_redis_down_fails_open_then_limits_again(group, app):
    redis = Redis(group)
    w = group.ward(limited_config(app, redis.port, burst=1))
    assert statuses(w, 2) == [200, 429]
    redis.stop()
    # Without its store the filter lets requests through, without
    # RateLimit fields (it knows nothing to put in them).
    r = w.get("/")
    assert r.status == 200
    assert not r.has_header("RateLimit-Remaining")
    assert statuses(w, 3) == [200, 200, 200]
    m = w.metrics()
    assert m.value("ward_ratelimit_requests_total", result="store_error") >= 4
    assert m.value("ward_store_calls_total", result="unavailable") >= 4
    wait_for(lambda: f"store redis://{HOST}:{redis.port}/0:" in w.stderr_text(), 10,
             "the store failure in the log")
    # Back (empty, as after a restart without persistence): limiting
    # resumes once ward's retry pause is over.
    redis.start()
    wait_for(lambda: w.get("/").status == 429, 15, "limiting to resume")
    assert "answering again" in w.stderr_text()


def test_unreachable_store_answers_within_the_timeout(group, app):
    # A port that accepts and never answers: every request still completes,
    # each within store_timeout and then unlimited.
    silent = socket.socket()
    silent.bind((HOST, 0))
    silent.listen(16)
    try:
        port = silent.getsockname()[1]
        w = group.ward(limited_config(app, port, store_timeout="200ms"))
        for _ in range(3):
            r = w.get("/", timeout=5)
            assert r.status == 200
        m = w.metrics()
        assert m.value("ward_ratelimit_requests_total", result="store_error") == 3
        assert m.value("ward_store_calls_total", result="timeout") == 3
    finally:
        silent.close()
