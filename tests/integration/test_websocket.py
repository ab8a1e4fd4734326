"""WebSocket through ward: the HTTP/1.1 Upgrade handshake is forwarded, the
101 comes back, and then frames flow both ways as bytes until a close, with
idle_timeout bounding a silent tunnel. The client here is a minimal RFC 6455
client on a raw socket, so every byte on the wire is the test's own."""

import base64
import hashlib
import os
import socket
import struct

import pytest

from harness import HOST, base_config, slack, wait_for

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 1.3


class WsClient:
    def __init__(self, port, path="/ws", timeout=10.0, ssl_context=None):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        if ssl_context is not None:
            self.sock = ssl_context.wrap_socket(self.sock, server_hostname="a.test")
        self.buf = b""
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = self._read_until(b"\r\n\r\n").decode("latin-1")
        self.status_line, *lines = head.split("\r\n")
        self.headers = {}
        for line in lines:
            if line:
                name, _, value = line.partition(":")
                self.headers[name.strip().lower()] = value.strip()
        expected = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        self.accept_ok = self.headers.get("sec-websocket-accept") == expected

    def _recv(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        self.buf += data

    def _read_until(self, marker):
        while marker not in self.buf:
            self._recv()
        head, _, self.buf = self.buf.partition(marker)
        return head

    def _read_exact(self, n):
        while len(self.buf) < n:
            self._recv()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, payload, opcode=0x1):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def recv_frame(self):
        """One server frame: (fin, opcode, payload)."""
        b0, b1 = self._read_exact(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._read_exact(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._read_exact(8))
        assert not b1 & 0x80, "server frames are never masked"
        return bool(b0 & 0x80), b0 & 0x0F, self._read_exact(n)

    def recv(self):
        """One whole message, fragments joined (RFC 6455 5.4): (opcode, payload)."""
        fin, opcode, payload = self.recv_frame()
        while not fin:
            fin, cont, more = self.recv_frame()
            assert cont == 0x0, "a fragmented message continues with opcode 0"
            payload += more
        return opcode, payload

    def closed_within(self, seconds):
        self.sock.settimeout(seconds)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except (socket.timeout, TimeoutError):
            return False
        except ConnectionError:
            return True

    def close(self):
        self.sock.close()


@pytest.fixture
def app(group):
    return group.whoami("app")


def test_echo_both_ways_then_close_handshake(group, app):
    ward = group.ward(base_config({"backend": [app]}))
    ws = WsClient(ward.port)
    try:
        assert ws.status_line.startswith("HTTP/1.1 101"), ws.status_line
        assert ws.accept_ok, ws.headers
        assert ws.headers.get("upgrade", "").lower() == "websocket"
        ws.send(b"hello")
        assert ws.recv() == (0x1, b"app:hello")
        # Bigger than every buffer on the way, binary.
        big = os.urandom(300_000)
        ws.send(big, opcode=0x2)
        opcode, payload = ws.recv()
        assert opcode == 0x2 and payload == b"app:" + big
        m = ward.metrics()
        assert m.value("ward_websocket_upgrades_total", route="main") == 1
        assert m.value("ward_websocket_connections_active", route="main") == 1
        ws.send(struct.pack("!H", 1000), opcode=0x8)
        opcode, payload = ws.recv()
        assert opcode == 0x8
        assert ws.closed_within(slack(5)), "ward closes once both sides have closed"
    finally:
        ws.close()
    wait_for(lambda: ward.metrics().value("ward_websocket_connections_active", route="main") == 0,
             slack(5), "the tunnel gauge back to 0")
    # The access log line says 101 and the route; plain requests still work.
    assert ward.get("/after").status == 200


def test_silent_tunnel_is_closed_after_idle_timeout(group, app):
    ward = group.ward(base_config({"backend": [app]}, limits={"idle_timeout": "1s"}))
    ws = WsClient(ward.port)
    try:
        assert ws.status_line.startswith("HTTP/1.1 101")
        ws.send(b"ping")
        assert ws.recv() == (0x1, b"app:ping")
        assert ws.closed_within(slack(4)), "a tunnel with no traffic must not live forever"
    finally:
        ws.close()


def test_upgrade_refused_by_upstream_is_a_normal_response(group, app):
    ward = group.ward(base_config({"backend": [app]}))
    # whoami answers a WebSocket handshake on any path but /ws as plain HTTP.
    ws = WsClient(ward.port, path="/not-ws")
    try:
        assert ws.status_line.startswith("HTTP/1.1 200"), ws.status_line
        assert "upgrade" not in ws.headers
    finally:
        ws.close()
