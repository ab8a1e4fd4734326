"""A small HTTP/2 client for the integration tests, on python-h2 (Debian
python3-h2), plus raw-frame helpers for clients that misbehave on purpose."""

import socket
import ssl
import time

import h2.config
import h2.connection
import h2.events

from harness import HOST


class H2Client:
    """A blocking HTTP/2 client on python-h2, plain (h2c) or TLS (ALPN h2)."""

    def __init__(self, port, tls=False, timeout=10.0, auto_ack=True):
        sock = socket.create_connection((HOST, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["h2"])
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
            assert sock.selected_alpn_protocol() == "h2"
        self.sock = sock
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.flush()
        self.responses = {}  # stream id -> {"status", "headers", "body", "done", "reset"}
        self.terminated = None  # ConnectionTerminated event
        self.closed = False
        self.unacked = []
        self.auto_ack = auto_ack  # False: received DATA is not acknowledged (window stays shut)

    def close(self):
        self.sock.close()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path, method="GET", headers=(), body=None, authority="localhost",
                more=False):
        """Opens a stream; `more`: the body follows by send_body()."""
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", "https"), (":authority", authority),
                (":path", path), *headers]
        self.conn.send_headers(sid, hdrs, end_stream=body is None and not more)
        self.responses[sid] = {"status": None, "headers": [], "body": bytearray(),
                               "done": False, "reset": None, "interim": []}
        if body is not None:
            self.send_body(sid, body)
        self.flush()
        return sid

    def send_body(self, sid, body, deadline=30.0):
        """Sends all of `body` as the flow-control windows allow."""
        view = memoryview(body)
        end = time.monotonic() + deadline
        while view:
            window = min(self.conn.local_flow_control_window(sid),
                         self.conn.max_outbound_frame_size)
            if window <= 0:
                assert time.monotonic() < end, "send window stayed shut"
                self.pump(0.5)
                continue
            n = min(window, len(view))
            self.conn.send_data(sid, bytes(view[:n]))
            view = view[n:]
            self.flush()
        self.conn.end_stream(sid)
        self.flush()

    def pump(self, timeout):
        """Reads once (up to `timeout`) and handles the events."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            return
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.closed = True
            return
        for ev in self.conn.receive_data(data):
            r = self.responses.get(getattr(ev, "stream_id", None))
            if isinstance(ev, h2.events.ResponseReceived):
                r["headers"] = ev.headers
                r["status"] = int(dict(ev.headers)[":status"])
            elif isinstance(ev, h2.events.InformationalResponseReceived):
                r["interim"].append(int(dict(ev.headers)[":status"]))
            elif isinstance(ev, h2.events.DataReceived):
                if r is not None:
                    r["body"] += ev.data
                if self.auto_ack:
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                else:
                    self.unacked.append((ev.flow_controlled_length, ev.stream_id))
            elif isinstance(ev, h2.events.StreamEnded):
                r["done"] = True
            elif isinstance(ev, h2.events.StreamReset):
                if r is not None:
                    r["reset"] = ev.error_code
                    r["done"] = True
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.terminated = ev
        try:
            self.flush()
        except OSError:
            self.closed = True

    def wait(self, predicate, timeout, what):
        end = time.monotonic() + timeout
        while not predicate():
            if self.closed:
                break
            assert time.monotonic() < end, f"timed out waiting for {what}"
            self.pump(min(0.5, max(0.01, end - time.monotonic())))
        return predicate()

    def response(self, sid, timeout=10.0):
        self.wait(lambda: self.responses[sid]["done"], timeout, f"stream {sid}")
        return self.responses[sid]

    def get(self, path, **kw):
        return self.response(self.request(path, **kw))

    def ack_all(self):
        """Acknowledges what auto_ack=False held back, and from now on all."""
        self.auto_ack = True
        for n, sid in self.unacked:
            self.conn.acknowledge_received_data(n, sid)
        self.unacked.clear()
        self.flush()


def raw_h2c(port):
    """A plain socket that has sent the preface and an empty SETTINGS."""
    s = socket.create_connection((HOST, port), timeout=10)
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b""))
    return s


def frame(ftype, flags, sid, payload):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + \
        payload


def closed_within(s, timeout):
    """True when the peer closes `s` within `timeout` (data read meanwhile is dropped)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        s.settimeout(max(0.05, end - time.monotonic()))
        try:
            if not s.recv(65536):
                return True
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False
