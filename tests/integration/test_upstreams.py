"""Balancing, retries, 502/503, and upstream keep-alive reuse."""

import collections
import socket
import struct
import threading

import pytest

from harness import Conn, base_config, free_port, slack, wait_for


def names(ward, n, path="/"):
    out = []
    for _ in range(n):
        r = ward.get(path)
        assert r.status == 200, r
        out.append(r.header("X-Whoami"))
    return out


def test_round_robin_alternates(group):
    a, b = group.whoami("a"), group.whoami("b")
    ward = group.ward(base_config({"app": [a, b]}))
    seq = names(ward, 10)
    assert collections.Counter(seq) == {"a": 5, "b": 5}
    assert all(x != y for x, y in zip(seq, seq[1:])), seq


def test_weights_are_honoured_smoothly(group):
    a, b = group.whoami("a"), group.whoami("b")
    app = {"servers": [{"address": a.address, "weight": 2}, {"address": b.address}]}
    ward = group.ward(base_config({"app": app}))
    seq = names(ward, 30)
    assert collections.Counter(seq) == {"a": 20, "b": 10}
    # smooth weighted round robin never sends three in a row to a 2:1 server
    assert "a,a,a" not in ",".join(seq), seq


def test_connect_failure_is_retried_on_another_server(group):
    a = group.whoami("a")
    dead = f"127.0.0.1:{free_port()}"
    app = {"servers": [dead, a.address], "retries": 1, "connect_timeout": "1s"}
    ward = group.ward(base_config({"app": app}))
    assert names(ward, 10) == ["a"] * 10


def test_all_servers_dead_is_502(group):
    app = {"servers": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"], "retries": 1}
    ward = group.ward(base_config({"app": app}))
    r = ward.get("/")
    assert r.status == 502
    assert r.json() == {"error": "bad_gateway", "status": 502}


def test_without_retries_a_dead_server_gives_502(group):
    a = group.whoami("a")
    app = {"servers": [f"127.0.0.1:{free_port()}", a.address], "retries": 0}
    ward = group.ward(base_config({"app": app}))
    statuses = [ward.get("/").status for _ in range(4)]
    assert 502 in statuses and 200 in statuses, statuses


def test_idempotent_request_retried_when_upstream_closes_before_answering(group):
    a, b = group.whoami("a"), group.whoami("b")
    ward = group.ward(base_config({"app": {"servers": [a.address, b.address], "retries": 1}}))
    r = ward.get("/?close=1")
    assert r.status == 502
    assert (a.count(), b.count()) == (1, 1)  # tried once on each server


def test_non_idempotent_request_is_not_retried_after_sending(group):
    a, b = group.whoami("a"), group.whoami("b")
    ward = group.ward(base_config({"app": {"servers": [a.address, b.address], "retries": 1}}))
    r = ward.request("POST", "/?close=1", body=b"once")
    assert r.status == 502
    assert a.count() + b.count() == 1


def test_upstream_connections_are_reused(group):
    a = group.whoami("a")
    ward = group.ward(base_config({"app": {"servers": [a.address], "keepalive": 8}}))
    for i in range(50):
        assert ward.get(f"/{i}").status == 200  # a fresh downstream connection each time
    m = ward.metrics()
    reused = m.value("ward_upstream_connections_reused_total", upstream="app")
    created = m.value("ward_upstream_connections_created_total", upstream="app")
    assert created <= 3, (created, reused)
    assert reused >= 47, (created, reused)
    assert a.connections() <= 4  # what whoami saw agrees (+1 for /__count itself)


def test_upstream_close_is_not_reused(group):
    # whoami says Connection: close when asked to close; ward must not reuse it.
    a = group.whoami("a")
    ward = group.ward(base_config({"app": [a]}))
    for i in range(5):
        assert ward.get(f"/?header=Connection:close&i={i}").status == 200
        assert ward.get(f"/after{i}").status == 200


def test_all_servers_unhealthy_is_503(group, tmp_path):
    flag = tmp_path / "sick"
    a = group.whoami("a", unhealthy_file=flag)
    app = {"servers": [a.address],
           "health_check": {"path": "/health", "interval": "200ms", "timeout": "1s",
                            "healthy_threshold": 1, "unhealthy_threshold": 1}}
    ward = group.ward(base_config({"app": app}))
    assert ward.get("/").status == 200
    flag.write_text("")
    r = wait_for(lambda: (lambda r: r if r.status == 503 else None)(ward.get("/")), 10,
                 "503 once the only server fails its checks")
    assert r.json() == {"error": "service_unavailable", "status": 503}
    assert ward.admin("/readyz").status == 503
    flag.unlink()
    wait_for(lambda: ward.get("/").status == 200, 10, "the server to return to service")
    wait_for(lambda: ward.admin("/readyz").status == 200, 10, "/readyz 200 again")


class ClosingUpstream:
    """An HTTP/1.1 server that answers one request per connection and then
    closes it without saying so (no "Connection: close"): what a server does
    when its keep-alive timeout fires, compressed to no time at all. Counts
    the connections it accepted and the requests it answered; `closed` is set
    each time it has closed one."""

    OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    def __init__(self, answer=OK, reset=False):
        self.answer = answer
        self.reset = reset  # close with a reset (SO_LINGER 0), not a FIN
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.accepted = 0
        self.answered = 0
        self.closed = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            with conn:
                conn.settimeout(5)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    head, _, body = data.partition(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    while len(body) < length:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        body += chunk
                    if b"\r\n\r\n" in data:
                        # Counted before the send: the client may read the
                        # answer and check the count before this thread runs on.
                        self.answered += 1
                        conn.sendall(self.answer)
                        if self.reset:
                            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                            struct.pack("ii", 1, 0))
                except OSError:
                    pass
            self.closed.set()

    def close(self):
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def closing_upstream():
    up = ClosingUpstream()
    yield up
    up.close()


def test_keepalive_race_is_retried_on_a_new_connection_without_retries(group, closing_upstream):
    # The pooled connection is dead by the time it is reused (and, reused
    # within a second, taken without a look). A GET may be sent again, so it
    # goes out once more on a new connection, even with retries: 0: the
    # failure was the pool's, not the server's.
    up = closing_upstream
    ward = group.ward(base_config({"app": {"servers": [up.address], "retries": 0,
                                           "keepalive": 8}}))
    for i in range(5):
        up.closed.clear()
        r = ward.get(f"/{i}")
        assert r.status == 200, (i, r)
        assert r.body == b"ok"
    assert up.answered == 5
    m = ward.metrics()
    # Every request after the first found the pooled connection dead, paid
    # one failed attempt, and was answered on a new connection.
    assert m.value("ward_upstream_connections_created_total", upstream="app") == 5
    assert m.value("ward_upstream_connections_reused_total", upstream="app") == 4


def test_request_with_body_never_goes_out_on_a_connection_the_server_closed(
        group, closing_upstream):
    # A POST cannot be replayed, so the pool looks before reusing: the
    # server's FIN has arrived (we wait for it), the connection is dropped,
    # and the POST goes out on a new one. Without the look it would be 502.
    up = closing_upstream
    ward = group.ward(base_config({"app": {"servers": [up.address], "retries": 0,
                                           "keepalive": 8}}))
    for i in range(5):
        up.closed.clear()
        r = ward.request("POST", f"/{i}", body=b"payload-%d" % i)
        assert r.status == 200, (i, r)
        assert up.closed.wait(5), "the upstream never closed its connection"
    assert up.answered == 5
    m = ward.metrics()
    assert m.value("ward_upstream_connections_created_total", upstream="app") == 5
    assert (m.value("ward_upstream_connections_reused_total", upstream="app") or 0) == 0


def test_a_response_cut_short_by_an_upstream_reset_ends_at_once(group):
    # A response delimited by the close, whose server resets the connection
    # right after its last bytes (a crash, or a close with a request unread):
    # the bytes and the reset often reach ward in one report from the kernel,
    # which then says nothing is left to read. ward must pass the bytes on
    # and end the client's response as failed at once, not wait body_timeout
    # for bytes that cannot come.
    up = ClosingUpstream(answer=b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npartial",
                         reset=True)
    try:
        ward = group.ward(base_config({"app": {"servers": [up.address], "retries": 0}},
                                      limits={"body_timeout": "60s"}))
        for i in range(10):
            with Conn(ward.port, timeout=slack(5)) as c:
                c.send(f"GET /{i} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
                head = c.read_head()
                assert head.status == 200, (i, head)
                assert head.header("Transfer-Encoding") == "chunked", head
                # The bytes that came, then the end of the connection without
                # the last chunk: the client can tell the body is cut short.
                rest = c.read_until_close(slack(5))
                assert rest.startswith(b"7\r\npartial\r\n"), (i, rest)
                assert b"0\r\n\r\n" not in rest, (i, rest)
        assert up.answered == 10
    finally:
        up.close()


def close_wait_to(port):
    """Sockets on this machine in CLOSE_WAIT towards 127.0.0.1:`port`: the
    peer closed, the owner has not."""
    with open("/proc/net/tcp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return sum(1 for r in rows if r[2] == "0100007F:%04X" % port and r[3] == "08")


def test_a_pooled_connection_the_server_closed_is_closed_before_any_request_needs_it(group):
    """A server's keep-alive timeout closes its end of an idle pooled
    connection. ward must close its end too, not hold the descriptor in
    CLOSE_WAIT until a request for that server comes: for a server that
    left (a pod gone from a DNS answer) none ever does."""
    up = ClosingUpstream()
    try:
        ward = group.ward(base_config({"app": [up.address]}))
        assert ward.get("/").status == 200
        port = int(up.address.rsplit(":", 1)[1])
        wait_for(lambda: close_wait_to(port) == 1, 5, "ward's pooled connection in CLOSE_WAIT")
        wait_for(lambda: close_wait_to(port) == 0, slack(15), "ward to close it unasked")
        assert ward.get("/").status == 200  # a new connection, no error
    finally:
        up.close()
